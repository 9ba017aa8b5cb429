/*
 * seam.c — pgr_exec, the one function every scenario statement passes through.
 *
 * How it works: a handler calls pgr_exec(s, label, SQL, params). The seam
 *   1. asks the gate (the scheduler, in explore/fuzz/replay) for permission; in stress
 *      there is no gate and the statement goes at once;
 *   2. prepares the SQL once per connection (statements are static constants, so the
 *      pointer is the cache key) and sends it with PQsendQueryPrepared;
 *   3. waits on the socket with poll(), a step timeout and the interrupt flag, so a
 *      statement waiting on a lock never stalls anything but its own session, and a
 *      stuck one becomes a harness error instead of a hang;
 *   4. records the step (label, SQL, params, SQLSTATE, constraint, rows, timing).
 * A lost connection or a server shutting down marks s->infra_error: the runner then
 * reports a harness error (exit 2), never a race.
 *
 * Faults (--fault) fire here too, once per request at the site the runner armed: a step
 * whose answer is lost (timeout-retry), a backend terminated before a step (kill-backend),
 * a real server error instead of a named step (error-at), a connection dropped around a
 * commit (lost-commit). A connection taken by a fault is the application's problem, not
 * the harness's: its steps fail with 08006 until the runner reconnects the session.
 */
#include "pgrace.h"

#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STMT_CACHE 64

typedef struct pgr_stmt_cache {
    const char *sql[STMT_CACHE];
    int n;
} pgr_stmt_cache;

int64_t pgr_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void pgr_fmt_ll(char *buf, long long v)
{
    snprintf(buf, 24, "%lld", v);
}

static void copy_trunc(char *dst, size_t cap, const char *src)
{
    if (!src) src = "";
    size_t n = strlen(src);
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* SQLSTATEs that mean the harness lost its server, not that the pattern misbehaved:
 * class 08 (connection exception), 57P01-57P03 (admin/crash shutdown, cannot connect). */
static bool infra_sqlstate(const char *st)
{
    return strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 ||
           strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0;
}

static void mark_infra(pgr_session *s, const char *what, const char *msg)
{
    if (s->infra_error) return;
    s->infra_error = true;
    char first[256];
    copy_trunc(first, sizeof first, msg ? msg : "");
    char *nl = strchr(first, '\n');
    if (nl) *nl = '\0';
    snprintf(s->infra_msg, sizeof s->infra_msg, "session S%d: %s: %s", s->index + 1, what, first);
}

/* Wait for the result of the statement in flight; poll() so that timeouts and Ctrl-C
 * are honoured. Returns the last PGresult (others drained), or NULL on a harness fault. */
static PGresult *await_result(pgr_session *s, int64_t deadline)
{
    PGconn *c = s->conn;
    int fd = PQsocket(c);
    while (PQisBusy(c)) {
        int64_t now = pgr_now_ns();
        if (s->interrupted && *s->interrupted) {
            PGcancel *cn = PQgetCancel(c);
            char eb[64];
            if (cn) { PQcancel(cn, eb, sizeof eb); PQfreeCancel(cn); }
            mark_infra(s, "interrupted", "run interrupted by signal");
            return NULL;
        }
        if (s->step_timeout_ns > 0 && now > deadline) {
            PGcancel *cn = PQgetCancel(c);
            char eb[64];
            if (cn) { PQcancel(cn, eb, sizeof eb); PQfreeCancel(cn); }
            char why[160];
            snprintf(why, sizeof why, "stuck for %.1f s, cancelled by the watchdog (--step-timeout)",
                     (double)(now - deadline + s->step_timeout_ns) / 1e9);
            mark_infra(s, s->trace && s->nsteps > 0 && s->nsteps <= PGR_MAX_STEPS ? s->trace[s->nsteps - 1].label
                       : "step", why);
            return NULL;
        }
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, 100);
        if (r < 0 && errno != EINTR) {
            mark_infra(s, "poll failed", strerror(errno));
            return NULL;
        }
        if (r > 0 && !PQconsumeInput(c)) {
            mark_infra(s, "connection lost", PQerrorMessage(c));
            return NULL;
        }
    }
    PGresult *last = NULL, *r;
    while ((r = PQgetResult(c)) != NULL) {
        if (last) PQclear(last);
        last = r;
    }
    return last;
}

/* Make sure `sql` is prepared on this connection; its name is "p<index>". -1 on error,
 * with the failed PGresult in *fail (the SQL did not parse: kept as the step's error). */
static int ensure_prepared(pgr_session *s, const char *sql, int nparams, PGresult **fail)
{
    pgr_stmt_cache *sc = s->stmts;
    if (!sc) sc = s->stmts = calloc(1, sizeof *sc);
    if (!sc) return -2;
    for (int i = 0; i < sc->n; i++)
        if (sc->sql[i] == sql) return i;
    if (sc->n == STMT_CACHE) return -2;
    char name[16];
    snprintf(name, sizeof name, "p%d", sc->n);
    if (!PQsendPrepare(s->conn, name, sql, nparams, NULL)) {
        mark_infra(s, "send failed", PQerrorMessage(s->conn));
        return -2;
    }
    PGresult *r = await_result(s, pgr_now_ns() + (s->step_timeout_ns > 0 ? s->step_timeout_ns : 0));
    if (!r) return -2;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        *fail = r;
        return -1;
    }
    PQclear(r);
    sc->sql[sc->n] = sql;
    return sc->n++;
}

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
            if (!st_code || infra_sqlstate(st_code) || PQstatus(s->conn) == CONNECTION_BAD)
                mark_infra(s, "server error", PQresultErrorMessage(r));
        }
    }
    if (!st) return;
    copy_trunc(st->sqlstate, sizeof st->sqlstate, out->sqlstate);
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
        copy_trunc(st->constraint, sizeof st->constraint,
                   PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME));
        copy_trunc(st->message, sizeof st->message,
                   PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY));
    }
}

int pgr_sql_kind(const char *sql)
{
    while (*sql && isspace((unsigned char)*sql)) sql++;
    if (strncasecmp(sql, "BEGIN", 5) == 0) return PGR_SQL_NOOP;
    if (strncasecmp(sql, "SELECT", 6) != 0) return PGR_SQL_WRITE;
    static const char *const not_plain[] = { " FOR ", "nextval", "setval", "lock", "INSERT", "UPDATE", "DELETE" };
    for (size_t i = 0; i < sizeof not_plain / sizeof not_plain[0]; i++)
        if (strcasestr(sql, not_plain[i])) return PGR_SQL_WRITE;
    return PGR_SQL_READ;
}

static const char SQL_ROLLBACK[] = "ROLLBACK";
static const char SQL_COMMIT[] = "COMMIT";
/* pgrace_raise is created in every variant's schema (conn.c). */
static const char SQL_INJECTED_ERROR[] = "SELECT pgrace_raise($1)";
static const char SQL_TERMINATE_SELF[] = "SELECT pg_terminate_backend(pg_backend_pid())";

/* Is this step an eligible site for the armed fault? Counts the sites; true at the armed one. */
static bool fault_fires_here(pgr_session *s, const char *label, const char *sql)
{
    const pgr_fault *f = s->fault;
    if (!f || sql == SQL_ROLLBACK) return false;
    bool eligible = false;
    switch (f->kind) {
    case PGR_FAULT_TIMEOUT: eligible = true; break;
    case PGR_FAULT_KILL: eligible = s->nsteps - 1 > s->send_first_step; break;   /* between two steps */
    case PGR_FAULT_ERROR: eligible = !f->step[0] || pgr_fault_step_is(f->step, label); break;
    case PGR_FAULT_LOST_COMMIT:                                           /* a statement that commits */
        eligible = sql == SQL_COMMIT || (!s->in_tx && pgr_sql_kind(sql) == PGR_SQL_WRITE);
        break;
    default: break;
    }
    if (!eligible) return false;
    int site = s->fault_sites++;      /* counted on every request: the runner learns how many */
    return s->fault_site >= 0 && s->fault_fired_at < 0 && site == s->fault_site;
}

/* The fault took the connection: close it (the server rolls back an open transaction) and
 * fail this step as the application's driver would see it. */
static void drop_connection(pgr_session *s, pgr_step *st, const char *why)
{
    PQfinish(s->conn);
    s->conn = NULL;
    s->conn_lost = true;
    s->in_tx = false;
    fill_res(s, NULL, st);
    copy_trunc(st->message, sizeof st->message, why);
}

/* A step the fault fails before it reaches the server: no connection (any more). */
static pgr_res *fail_unsent(pgr_session *s, pgr_step *st, const char *why)
{
    st->t_send_ns = st->t_done_ns = pgr_now_ns();
    drop_connection(s, st, why);
    if (s->gate) s->gate->after(s->gate->ctx, s, st);
    return &s->res;
}

pgr_res *pgr_exec(pgr_session *s, const char *label, const char *sql,
                  int nparams, const char *const *params)
{
    if (s->res.pg) { PQclear(s->res.pg); s->res.pg = NULL; }

    pgr_step scratch, *st = &scratch;
    if (s->trace && s->nsteps < PGR_MAX_STEPS) st = &s->trace[s->nsteps];
    memset(st, 0, sizeof *st);
    st->label = label;
    st->sql = sql;
    st->session = (short)s->index;
    st->attempt = (short)s->attempt;
    size_t off = 0;
    for (int i = 0; i < nparams && off + 1 < sizeof st->params; i++) {
        int w = snprintf(st->params + off, sizeof st->params - off, "%s%s",
                         i ? ", " : "", params[i] ? params[i] : "NULL");
        if (w < 0) break;
        off += (size_t)w;
    }
    if (off >= sizeof st->params) off = sizeof st->params - 1;
    s->nsteps++;

    if (s->infra_error) {            /* the connection is gone: do not pretend */
        fill_res(s, NULL, st);
        return &s->res;
    }
    if (s->gate) s->gate->before(s->gate->ctx, s, st);

    if (s->conn_lost) return fail_unsent(s, st, "no connection (lost to the fault)");
    pgr_fault_kind fault = PGR_FAULT_NONE;
    char injected[96];
    const char *injected_params[1] = { injected };
    if (fault_fires_here(s, label, sql)) {
        fault = s->fault->kind;
        s->fault_fired_at = s->nsteps - 1;
        if (fault == PGR_FAULT_KILL) {
            /* a real pg_terminate_backend: the server ends this backend (rolling back) */
            PQclear(PQexec(s->conn, SQL_TERMINATE_SELF));
            return fail_unsent(s, st, "backend terminated before this step (fault kill-backend)");
        }
        if (fault == PGR_FAULT_LOST_COMMIT && !s->fault_applies)
            return fail_unsent(s, st, "connection lost before the commit arrived (fault lost-commit): outcome unknown");
        if (fault == PGR_FAULT_ERROR) {          /* the server raises instead of running the step */
            snprintf(injected, sizeof injected, "injected error at step '%s' (fault error-at)", label);
            sql = SQL_INJECTED_ERROR;
            nparams = 1;
            params = injected_params;
        }
    }

    PGresult *prep_fail = NULL;
    int idx = ensure_prepared(s, sql, nparams, &prep_fail);
    int64_t t0 = pgr_now_ns();
    st->t_send_ns = t0;
    if (s->first_send_ns == 0) s->first_send_ns = t0;
    PGresult *r = NULL;
    if (idx >= 0) {
        char name[16];
        snprintf(name, sizeof name, "p%d", idx);
        if (PQsendQueryPrepared(s->conn, name, nparams, params, NULL, NULL, 0))
            r = await_result(s, t0 + s->step_timeout_ns);
        else
            mark_infra(s, "send failed", PQerrorMessage(s->conn));
    } else if (idx == -1) {
        r = prep_fail;           /* the SQL itself is rejected by the server */
    } else if (!s->infra_error) {
        mark_infra(s, "statement cache", "too many distinct statements on one connection");
    }
    st->t_done_ns = pgr_now_ns();
    s->statements++;
    fill_res(s, r, st);

    if (fault == PGR_FAULT_TIMEOUT || fault == PGR_FAULT_LOST_COMMIT) {
        /* the statement ran (and committed, if it commits); its answer never arrives */
        char ran[96];
        snprintf(ran, sizeof ran, "%s %s, answer lost (fault %s)", s->res.ok ? "ran" : "failed", s->res.sqlstate,
                 pgr_fault_name(fault));
        if (s->res.pg) { PQclear(s->res.pg); s->res.pg = NULL; }
        long rows = st->rows;             /* what the server did; the handler sees 08006 */
        drop_connection(s, st, ran);
        st->rows = rows;
        if (s->gate) s->gate->after(s->gate->ctx, s, st);
        return &s->res;
    }

    /* Transaction state as the server sees it, so rollback-on-error is exact. */
    PGTransactionStatusType ts = PQtransactionStatus(s->conn);
    s->in_tx = (ts == PQTRANS_INTRANS || ts == PQTRANS_INERROR);

    if (s->gate) s->gate->after(s->gate->ctx, s, st);
    return &s->res;
}

static const char SQL_BEGIN[] = "BEGIN";

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
    copy_trunc(st, sizeof st, r->sqlstate);
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
