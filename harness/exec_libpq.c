/*
 * exec_libpq.c — the in-process executor: pgr_exec, a handler's statement over libpq.
 *
 * pgr_exec is begin (seam.c), then what begin decided, then end. A statement is prepared
 * once per connection, keyed by its text (a C constant, a spec's step, anything), and sent
 * with PQsendQueryPrepared; past PGR_MAX_PREPARED distinct texts on one connection the
 * rest go unprepared. The wait is a poll() under the interrupt flag and the watchdog's
 * deadline (the step timeout, watchdog.c), so a statement waiting on a lock never stalls
 * anything but its own session, and a stuck one becomes a harness error instead of a hang.
 */
#include "conn.h"
#include "intern.h"
#include "seam.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PGR_MAX_PREPARED 1024        /* prepared statements per connection; more run unprepared */

/* The connection's statement texts: text -> its interned copy and prepared name. */
typedef struct stmt_entry {
    uint64_t hash;
    const char *text;                /* interned */
    int prepared;                    /* "p<prepared>" on this connection; -1 not prepared */
} stmt_entry;

typedef struct pgr_stmt_cache {
    stmt_entry *e;
    size_t cap, used;
    int nprepared;
} pgr_stmt_cache;

static stmt_entry *stmt_lookup(pgr_session *s, const char *text)
{
    pgr_stmt_cache *c = s->stmts;
    if (!c) c = s->stmts = calloc(1, sizeof *c);
    if (!c) return NULL;
    if ((c->used + 1) * 2 > c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        stmt_entry *ne = calloc(ncap, sizeof *ne);
        if (!ne) return NULL;
        for (size_t i = 0; i < c->cap; i++) {
            if (!c->e[i].text) continue;
            size_t j = c->e[i].hash & (ncap - 1);
            while (ne[j].text) j = (j + 1) & (ncap - 1);
            ne[j] = c->e[i];
        }
        free(c->e);
        c->e = ne;
        c->cap = ncap;
    }
    uint64_t h = pgr_text_hash(text);
    size_t j = h & (c->cap - 1);
    for (; c->e[j].text; j = (j + 1) & (c->cap - 1))
        if (c->e[j].hash == h && strcmp(c->e[j].text, text) == 0) return &c->e[j];
    const char *in = pgr_intern_hashed(text, h);
    if (!in) return NULL;
    c->e[j] = (stmt_entry){ h, in, -1 };
    c->used++;
    return &c->e[j];
}

const char *pgr_stmt_text(pgr_session *s, const char *text)
{
    stmt_entry *e = stmt_lookup(s, text ? text : "");
    return e ? e->text : "?";
}

void pgr_stmt_cache_free(pgr_session *s)
{
    if (!s->stmts) return;
    free(s->stmts->e);
    free(s->stmts);
    s->stmts = NULL;
}

/* Wait for the result of the statement in flight (begun with pgr_call_begin); poll() so
 * that Ctrl-C is honoured, the watchdog (watchdog.c) for the step timeout. Returns the last
 * PGresult (others drained), or NULL on a harness fault. */
static PGresult *await_result(pgr_session *s, const char *label)
{
    PGconn *c = s->conn;
    int fd = PQsocket(c);
    bool lost = false;
    while (!lost && PQisBusy(c)) {
        if (s->interrupted && __atomic_load_n(s->interrupted, __ATOMIC_RELAXED)) {   /* the handler's thread is not this one */
            pgr_cancel(c);
            pgr_call_end(c, NULL, 0);
            pgr_seam_infra(s, "interrupted", "run interrupted by signal");
            return NULL;
        }
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, 100);
        if (r < 0 && errno != EINTR) {
            pgr_call_end(c, NULL, 0);
            pgr_seam_infra(s, "poll failed", strerror(errno));
            return NULL;
        }
        if (r > 0 && !PQconsumeInput(c)) lost = true;
    }
    PGresult *last = NULL, *r;
    while (!lost && (r = PQgetResult(c)) != NULL) {
        if (last) PQclear(last);
        last = r;
    }
    char why[PGR_ERRLEN];
    if (pgr_call_end(c, why, sizeof why) != 0) {     /* stuck: the watchdog's doing */
        PQclear(last);
        pgr_seam_infra(s, label, why);
        return NULL;
    }
    if (lost) {
        pgr_seam_infra(s, "connection lost", PQerrorMessage(c));
        return NULL;
    }
    return last;
}

/* Make sure e is prepared on this connection (when there is room). Returns its index, -3
 * to send it unprepared, -1 with the failed PGresult in *fail (the SQL did not parse: kept
 * as the step's error), -2 on a harness fault. */
static int ensure_prepared(pgr_session *s, stmt_entry *e, int nparams, PGresult **fail, const char *label)
{
    if (e->prepared >= 0) return e->prepared;
    if (s->stmts->nprepared == PGR_MAX_PREPARED) return -3;
    char name[16];
    snprintf(name, sizeof name, "p%d", s->stmts->nprepared);
    pgr_call_begin(s->conn, (double)s->step_timeout_ns / 1e9);
    if (!PQsendPrepare(s->conn, name, e->text, nparams, NULL)) {
        pgr_call_end(s->conn, NULL, 0);
        pgr_seam_infra(s, "send failed", PQerrorMessage(s->conn));
        return -2;
    }
    PGresult *r = await_result(s, label);
    if (!r) return -2;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        *fail = r;
        return -1;
    }
    PQclear(r);
    return e->prepared = s->stmts->nprepared++;
}

/* The handler's view of result r (s->res) and the step's record of it. */
static void fill_res(pgr_session *s, PGresult *r, pgr_step *st)
{
    pgr_res *out = &s->res;
    out->pg = r;
    out->ok = false;
    out->rows = 0;
    out->sqlstate = "XX000";
    if (!r) {
        out->sqlstate = "08006";
    } else {
        ExecStatusType es = PQresultStatus(r);
        if (es == PGRES_TUPLES_OK) {
            out->ok = true;
            out->rows = PQntuples(r);
        } else if (es == PGRES_COMMAND_OK) {
            out->ok = true;
            const char *ct = PQcmdTuples(r);
            out->rows = (ct && *ct) ? atol(ct) : 0;
        }
        if (out->ok) {
            out->sqlstate = "00000";
        } else {
            const char *st_code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
            out->sqlstate = st_code ? st_code : "XX000";
            if (!st_code || pgr_infra_sqlstate(st_code) || PQstatus(s->conn) == CONNECTION_BAD)
                pgr_seam_infra(s, "server error", PQresultErrorMessage(r));
        }
    }
    pgr_copy_trunc(st->sqlstate, sizeof st->sqlstate, out->sqlstate);
    st->rows = out->rows;
    if (r && out->ok && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0) {
        size_t off = 0;
        for (int c = 0; c < PQnfields(r) && off + 1 < sizeof st->values; c++) {
            int w = snprintf(st->values + off, sizeof st->values - off, "%s%s=%s", c ? ", " : "", PQfname(r, c),
                             PQgetisnull(r, 0, c) ? "NULL" : PQgetvalue(r, 0, c));
            if (w < 0) break;
            off += (size_t)w;
        }
    }
    if (r && !out->ok) {
        pgr_copy_trunc(st->constraint, sizeof st->constraint,
                   PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME));
        pgr_copy_trunc(st->message, sizeof st->message,
                   PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
    }
}

/* Send the statement and wait for its result; NULL on a harness fault. */
static PGresult *send_and_wait(pgr_session *s, pgr_seam_call *call)
{
    PGresult *prep_fail = NULL;
    stmt_entry *e = stmt_lookup(s, call->sql);
    int idx = e ? ensure_prepared(s, e, call->nparams, &prep_fail, call->st->label) : -2;
    pgr_seam_sent(s, call);
    if (idx == -1) return prep_fail;     /* the SQL itself is rejected by the server */
    if (idx == -2) {
        if (!s->infra_error) pgr_seam_infra(s, "statement cache", "out of memory");
        return NULL;
    }
    int sent;
    pgr_call_begin(s->conn, (double)s->step_timeout_ns / 1e9);
    if (idx >= 0) {
        char name[16];
        snprintf(name, sizeof name, "p%d", idx);
        sent = PQsendQueryPrepared(s->conn, name, call->nparams, call->params, NULL, NULL, 0);
    } else {
        sent = PQsendQueryParams(s->conn, e->text, call->nparams, NULL, call->params, NULL, NULL, 0);
    }
    if (!sent) {
        pgr_call_end(s->conn, NULL, 0);
        pgr_seam_infra(s, "send failed", PQerrorMessage(s->conn));
        return NULL;
    }
    return await_result(s, call->st->label);
}

/* The fault took the connection: close it (the server rolls back an open transaction). */
static void drop_connection(pgr_session *s)
{
    pgr_disconnect(s->conn);
    s->conn = NULL;
}

static const char SQL_TERMINATE_SELF[] = "SELECT pg_terminate_backend(pg_backend_pid())";

pgr_res *pgr_exec(pgr_session *s, const char *label, const char *sql,
                  int nparams, const char *const *params)
{
    if (s->res.pg) { PQclear(s->res.pg); s->res.pg = NULL; }
    pgr_seam_call call;
    pgr_seam_begin(s, label, sql, nparams, params, &call);
    bool in_tx = false;
    switch (call.action) {
    case PGR_SEAM_SKIP:
        fill_res(s, NULL, call.st);
        return &s->res;
    case PGR_SEAM_KILL:              /* a real pg_terminate_backend: the server ends this backend */
        {
            char err[PGR_ERRLEN];       /* it fails: the server ends the backend */
            PQclear(pgr_query(s->conn, SQL_TERMINATE_SELF, 0, NULL, err, sizeof err));
        }
        /* fall through */
    case PGR_SEAM_FAIL:
        drop_connection(s);
        fill_res(s, NULL, call.st);
        break;
    case PGR_SEAM_SEND:
    case PGR_SEAM_SEND_ERROR: {
        PGresult *r = send_and_wait(s, &call);
        call.st->t_done_ns = pgr_now_ns();
        fill_res(s, r, call.st);
        if (call.answer_lost) {      /* it ran (and committed, if it commits); the answer is lost */
            if (s->res.pg) { PQclear(s->res.pg); s->res.pg = NULL; }
            drop_connection(s);
            s->res.ok = false;
            s->res.rows = 0;
            s->res.sqlstate = "08006";
        } else {
            /* transaction state as the server sees it, so rollback-on-error is exact */
            PGTransactionStatusType ts = PQtransactionStatus(s->conn);
            in_tx = ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR;
        }
        break;
    }
    }
    pgr_seam_end(s, &call, in_tx);
    return &s->res;
}

static const char SQL_BEGIN[] = "BEGIN";
static const char SQL_COMMIT[] = "COMMIT";
static const char SQL_ROLLBACK[] = "ROLLBACK";

pgr_res *pgr_begin(pgr_session *s) { return PGR_SQL0(s, "begin", SQL_BEGIN); }

pgr_res *pgr_commit(pgr_session *s)
{
    pgr_res *r = PGR_SQL0(s, "commit", SQL_COMMIT);
    /* COMMIT of an aborted transaction "succeeds" as ROLLBACK: that is not a commit. */
    if (r->ok && r->pg && strcmp(PQcmdStatus(r->pg), "ROLLBACK") == 0) {
        r->ok = false;
        r->sqlstate = "25P02";
    }
    return r;
}

void pgr_rollback(pgr_session *s)
{
    if (s->in_tx && !s->infra_error && !s->conn_lost) PGR_SQL0(s, "rollback", SQL_ROLLBACK);
}

int pgr_uncaught(pgr_session *s, const pgr_res *r, pgr_response *resp)
{
    char st[6];
    pgr_copy_trunc(st, sizeof st, r->sqlstate);
    pgr_rollback(s);
    resp->status = 500;
    resp->id = -1;
    memcpy(resp->sqlstate, st, sizeof st);
    return 500;
}

bool pgr_is(const pgr_res *r, const char *sqlstate)
{
    return !r->ok && strcmp(r->sqlstate, sqlstate) == 0;
}

bool pgr_retryable(const pgr_res *r)
{
    return pgr_is(r, "40001") || pgr_is(r, "40P01");
}

const char *pgr_val(const pgr_res *r, int row, int col)
{
    if (!r->ok || !r->pg || row >= PQntuples(r->pg) || col >= PQnfields(r->pg)) return NULL;
    if (PQgetisnull(r->pg, row, col)) return NULL;
    return PQgetvalue(r->pg, row, col);
}

long long pgr_int(const pgr_res *r, int row, int col)
{
    const char *v = pgr_val(r, row, col);
    return v ? atoll(v) : -1;
}

bool pgr_isnull(const pgr_res *r, int row, int col)
{
    return pgr_val(r, row, col) == NULL;
}
