/*
 * exec_wire.c — the wire executor: one proxied step through the seam, as exec_libpq.c is
 * one handler statement through it.
 *
 * A step is what the client sent up to a point where the server answers ReadyForQuery: a
 * simple Query, or extended messages (Parse/Bind/Describe/Execute/Close/Flush) up to their
 * Sync. pgr_wire_exec gives it to pgr_seam_begin (label: the program's pgrace:NAME comment,
 * else the statement's first words; SQL: the Query's text or the batch's Parse text), then
 * does what begin decided:
 *   SEND        forward the batch, relay the server's answer as it comes, up to
 *               ReadyForQuery, reading the outcome from it on the way (SQLSTATE of the first
 *               ErrorResponse, rows of the last CommandComplete, the first DataRow through
 *               its RowDescription, the constraint and message); with answer_lost
 *               (timeout-retry, a lost commit that commits) nothing is relayed and the
 *               connection is closed after the answer, so the client never learns it;
 *   SEND_ERROR  (error-at) the batch is not forwarded: the server runs a DO block that
 *               raises P0001 instead, so an open transaction is aborted as by a real error,
 *               and its ErrorResponse and ReadyForQuery are what the client gets;
 *   KILL        pg_terminate_backend of this connection's backend over the proxy's admin
 *               connection; the client gets what the dying backend sends, then the close;
 *   FAIL, SKIP  close both sides, nothing forwarded (a lost commit that never arrived, a
 *               connection already lost, the harness without its server);
 * then pgr_seam_end with in_tx from ReadyForQuery's status byte.
 *
 * While a step is in flight the client's next messages are read and kept (pipelining),
 * except those the step itself needs: the rest of a flushed batch up to its Sync, and the
 * copy data of a COPY FROM STDIN (a COPY is one step). A client that leaves mid-step leaves
 * as it would leave the server: its side is shut, the server finishes the statement, sees
 * the end and exits; nothing is kept open.
 */
#include "proxy_link.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum fwd {
    FWD_NONE,        /* the client's messages wait for the next step */
    FWD_SYNC,        /* a flushed batch: forward the client's messages up to its Sync */
    FWD_COPY,        /* COPY FROM STDIN: forward up to CopyDone or CopyFail */
    FWD_SWALLOW,     /* error-at in a flushed batch: drop them up to the Sync, then answer */
};

typedef struct relay {
    pgr_wire_outcome o;
    int fwd;
    bool ready;      /* ReadyForQuery came */
    bool to_client;  /* relay the answer (not when it is lost, nor to a client gone) */
    bool hold_ready; /* FWD_SWALLOW: ReadyForQuery goes to the client after its Sync */
    bool synced;     /* FWD_SWALLOW: the client's Sync came */
    bool lost;       /* the answer is lost: a COPY FROM STDIN is refused for the client */
    bool extended;   /* the step came through the extended protocol: a COPY in it ends at
                      * the client's Sync after its CopyDone */
    int64_t deadline;/* the watchdog; 0 none */
} relay;

static void set_why(pgr_wire_link *l, const char *why)
{
    if (!l->why[0]) snprintf(l->why, sizeof l->why, "%s", why);
}

/* The label of the batch's step. */
static void batch_label(const pgr_wire_batch *b, char *out, size_t cap)
{
    if (b->kind == 'F') snprintf(out, cap, "function call");
    else if (b->sql && b->sql[0]) pgr_wire_label(b->sql, out, cap);
    else snprintf(out, cap, b->extended ? "extended" : "sync");
}

/* The server closed this connection mid-step (or sent what it cannot have sent). */
static int server_lost(pgr_wire_link *l, relay *r, const char *why)
{
    pgr_step *st = r->o.st;
    if (!r->o.have_error) {
        snprintf(st->sqlstate, sizeof st->sqlstate, "08006");
        snprintf(st->message, sizeof st->message, "%s", why);
    }
    if (!pgr_proxy_server_alive(l->px, why)) pgr_seam_infra(l->s, "the server is gone", why);
    set_why(l, why);
    return -1;
}

/* Handle the client's messages the step needs now (r->fwd). 0, or -1 to close. */
static int forward_client(pgr_wire_link *l, relay *r)
{
    while (r->fwd != FWD_NONE) {
        pgr_wire_msg m;
        char err[160];
        long k = pgr_wire_msg_read(pgr_at(&l->cin, l->cin.off), l->cin.len - l->cin.off, PGR_WIRE_MAX_MSG, &m, err, sizeof err);
        if (k == 0) return 0;
        if (k < 0) {
            pgr_link_fatal(l, "08P01", err);
            set_why(l, err);
            return -1;
        }
        const uint8_t *raw = pgr_at(&l->cin, l->cin.off);
        bool ends = false;
        if (r->fwd == FWD_COPY) {
            if (m.type == 'c' || m.type == 'f') {
                r->fwd = r->extended ? FWD_SYNC : FWD_NONE;
                if (pgr_link_send(l, l->sfd, raw, (size_t)k) != 0) return server_lost(l, r, "cannot write to the server");
                pgr_link_consume(&l->cin, (size_t)k);
                continue;
            }
        } else {
            pgr_fe_action a = pgr_wire_batch_add(&l->batch, &m, err, sizeof err);
            if (a == PGR_FE_BAD) {
                pgr_link_fatal(l, "08P01", err);
                set_why(l, err);
                return -1;
            }
            ends = m.type == 'S' || m.type == 'Q' || m.type == 'F';
        }
        if (r->fwd != FWD_SWALLOW && pgr_link_send(l, l->sfd, raw, (size_t)k) != 0)
            return server_lost(l, r, "cannot write to the server");
        pgr_link_consume(&l->cin, (size_t)k);
        if (ends && r->fwd == FWD_SWALLOW) r->synced = true;   /* its answer once the server's came */
        if (ends) r->fwd = FWD_NONE;
    }
    return 0;
}

/* Read what the server sent: the step's answer, relayed message by message up to
 * ReadyForQuery. 0, or -1 to close. */
static int read_server(pgr_wire_link *l, relay *r)
{
    long got = pgr_link_recv(l->sfd, &l->sin);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    size_t start = l->sin.off, pos = start, relay_end = start;
    while (!r->ready) {
        pgr_wire_msg m;
        char err[160];
        long k = pgr_wire_msg_read(pgr_at(&l->sin, pos), l->sin.len - pos, PGR_WIRE_MAX_MSG, &m, err, sizeof err);
        if (k == 0) break;
        if (k < 0) {
            pgr_seam_infra(l->s, "the server sent garbage", err);
            return server_lost(l, r, err);
        }
        pgr_be_action a = pgr_wire_outcome_add(&r->o, &m);
        if (a == PGR_BE_BAD) {
            snprintf(err, sizeof err, "an unexpected message (type '%c') from the server", m.type);
            pgr_seam_infra(l->s, "the server sent garbage", err);
            return server_lost(l, r, err);
        }
        if (a == PGR_BE_COPY_IN) {
            if (r->lost) {                  /* nobody will send the data: refuse the COPY */
                static const char fail[] = "f\0\0\0\x1f" "answer lost (pgrace fault)";
                if (pgr_link_send(l, l->sfd, fail, sizeof fail) != 0) return server_lost(l, r, "cannot write to the server");
            } else {
                r->fwd = FWD_COPY;
            }
        }
        if (a == PGR_BE_READY) {
            r->ready = true;
            if (r->hold_ready) { pos += (size_t)k; break; }   /* not relayed: the client's Sync first */
        }
        pos += (size_t)k;
        relay_end = pos;
    }
    if (r->to_client && relay_end > start && pgr_link_send(l, l->cfd, pgr_at(&l->sin, start), relay_end - start) != 0)
        r->to_client = false;                /* the client went away: read on, as the server would */
    pgr_link_consume(&l->sin, pos - start);
    if (got <= 0 && !r->ready) return server_lost(l, r, "the server closed the connection");
    if (r->ready && r->fwd == FWD_COPY) r->fwd = FWD_NONE;
    return 0;
}

/* Wait for the step's ReadyForQuery (and, swallowing, the client's Sync), relaying. */
static int await_ready(pgr_wire_link *l, relay *r)
{
    for (;;) {
        pgr_session *s = l->s;
        /* what the step needs of the client may be read already (the rest of a flushed
         * batch, copy data sent ahead) */
        if (r->fwd != FWD_NONE && forward_client(l, r) != 0) return -1;
        if (r->ready && r->hold_ready && r->synced) {      /* error-at in a flushed batch: done */
            uint8_t z[6];
            size_t n = pgr_wire_ready_build(z, sizeof z, r->o.status);
            if (r->to_client && pgr_link_send(l, l->cfd, z, n) != 0) r->to_client = false;
            break;
        }
        if (r->ready && !r->hold_ready) break;
        struct pollfd p[3];
        int n = 0, ci = -1, si = -1;
        p[n++] = (struct pollfd){ .fd = l->stop_fd, .events = POLLIN };
        bool want_client = !l->client_eof && (r->fwd != FWD_NONE || l->cin.len - l->cin.off < (1u << 20));
        if (want_client) { ci = n; p[n++] = (struct pollfd){ .fd = l->cfd, .events = POLLIN }; }
        if (!r->ready) { si = n; p[n++] = (struct pollfd){ .fd = l->sfd, .events = POLLIN }; }
        int rc = poll(p, (nfds_t)n, 200);
        if (rc < 0 && errno != EINTR) return server_lost(l, r, "poll failed");
        if (p[0].revents || (s->interrupted && *s->interrupted)) {
            set_why(l, "the proxy is stopping");
            if (!r->o.have_error) snprintf(r->o.st->sqlstate, sizeof r->o.st->sqlstate, "08006");
            return -1;
        }
        if (r->deadline && pgr_now_ns() > r->deadline) {
            pgr_proxy_cancel_backend(l->px, l->pid, l->key);
            pgr_seam_infra(s, r->o.st->label, "no answer within the step timeout, cancelled by the watchdog (--step-timeout)");
            return server_lost(l, r, "cancelled by the watchdog");
        }
        if (rc <= 0) continue;
        if (si >= 0 && p[si].revents && read_server(l, r) != 0) return -1;
        if (ci >= 0 && p[ci].revents) {
            long got = pgr_link_recv(l->cfd, &l->cin);
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                /* the client left mid-step: the server sees it leave (its side shut), finishes,
                 * and ends; its answer goes nowhere */
                l->client_eof = true;
                r->to_client = false;
                shutdown(l->sfd, SHUT_WR);
                set_why(l, "the client closed the connection mid-statement");
                if (r->fwd == FWD_SWALLOW) { r->fwd = FWD_NONE; r->synced = true; }
            } else if (got > 0 && forward_client(l, r) != 0) {
                return -1;
            }
        }
    }
    return 0;
}

/* error-at: the statement the server runs instead of the step. */
static void injected_sql(const char *msg, char *out, size_t cap)
{
    char lit[200];
    size_t k = 0;
    for (const char *p = msg; *p && k + 2 < sizeof lit; p++) {
        char c = *p;
        if (c == '\'') { lit[k++] = '\''; lit[k++] = '\''; continue; }
        lit[k++] = (c >= 0x20 && c < 0x7f && c != '\\' && c != '$') ? c : '?';
    }
    lit[k] = '\0';
    snprintf(out, cap, "DO $pgrace$BEGIN RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = '%s'; END$pgrace$", lit);
}

/* kill-backend: terminate the backend, then pass on what it said as it went. */
static void kill_backend(pgr_wire_link *l)
{
    char err[PGR_ERRLEN];
    if (pgr_proxy_kill_backend(l->px, l->pid, err, sizeof err) != 0) {
        if (pgr_proxy_server_alive(l->px, err)) pgr_seam_infra(l->s, "kill-backend", err);
        else pgr_seam_infra(l->s, "the server is gone", err);
        return;
    }
    int64_t until = pgr_now_ns() + 5000000000LL;
    while (pgr_now_ns() < until) {
        struct pollfd p = { .fd = l->sfd, .events = POLLIN };
        if (poll(&p, 1, 100) <= 0) continue;
        long got = pgr_link_recv(l->sfd, &l->sin);
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (got <= 0) break;
        pgr_link_send(l, l->cfd, pgr_at(&l->sin, l->sin.off), l->sin.len - l->sin.off);
        pgr_link_consume(&l->sin, l->sin.len - l->sin.off);
    }
}

/* A statement an application sends while its session serves no request (its start-up, a
 * pool's check between requests) is not a step of any request: it passes through on a
 * session of its own, unrecorded, with no gate and no fault. */
static int exec_outside_request(pgr_wire_link *l)
{
    if (!l->idle) {
        l->idle = calloc(1, sizeof *l->idle);
        if (!l->idle) {
            pgr_link_fatal(l, "53200", "out of memory");
            return -1;
        }
        l->idle->index = l->s->index;
        l->idle->fault_site = l->idle->fault_fired_at = -1;
        l->idle->step_timeout_ns = l->s->step_timeout_ns;
    }
    pgr_session *bound = l->s;
    l->s = l->idle;
    l->own_session = true;
    int rc = pgr_wire_exec(l);
    l->s = bound;
    l->own_session = false;
    return rc;
}

int pgr_wire_exec(pgr_wire_link *l)
{
    if (!l->own_session && __atomic_load_n(&l->s->outside_request, __ATOMIC_ACQUIRE)) return exec_outside_request(l);
    pgr_session *s = l->s;
    pgr_wire_batch *b = &l->batch;
    char label[48];
    batch_label(b, label, sizeof label);
    const char *sql = b->sql ? b->sql : "";
    size_t batch_bytes = b->bytes;
    bool open = b->kind == 'H';

    if (pgr_proxy_step_begin(l->px, l) != 0) {
        pgr_link_fatal(l, "55P03", l->why);
        pgr_wire_batch_reset(b);
        return -1;
    }
    pgr_seam_call call;
    pgr_seam_begin(s, label, sql, b->nparams, b->params, &call);
    b->sealed = true;                        /* the step's SQL is recorded: keep it as it is */
    relay r = { .to_client = !call.answer_lost, .lost = call.answer_lost, .extended = b->extended };
    pgr_wire_outcome_init(&r.o, call.st);
    if (s->step_timeout_ns > 0) r.deadline = pgr_now_ns() + s->step_timeout_ns;
    int rc = 0;

    switch (call.action) {
    case PGR_SEAM_SKIP:
        pgr_link_consume(&l->cin, batch_bytes);
        set_why(l, "the harness lost its server");
        rc = -1;
        break;
    case PGR_SEAM_KILL:
        pgr_link_consume(&l->cin, batch_bytes);
        kill_backend(l);
        set_why(l, "backend terminated (fault kill-backend)");
        rc = -1;
        break;
    case PGR_SEAM_FAIL:
        pgr_link_consume(&l->cin, batch_bytes);
        set_why(l, call.why ? call.why : "connection lost");
        rc = -1;
        break;
    case PGR_SEAM_SEND_ERROR: {
        char q[400];
        uint8_t msg[420];
        injected_sql(call.injected, q, sizeof q);
        size_t n = pgr_wire_query_build(msg, sizeof msg, q);
        pgr_link_consume(&l->cin, batch_bytes);
        if (open) { r.hold_ready = true; r.fwd = FWD_SWALLOW; }
        pgr_seam_sent(s, &call);
        if (pgr_link_send(l, l->sfd, msg, n) != 0) rc = server_lost(l, &r, "cannot write to the server");
        else rc = await_ready(l, &r);
        break;
    }
    case PGR_SEAM_SEND:
        pgr_seam_sent(s, &call);
        if (pgr_link_send(l, l->sfd, pgr_at(&l->cin, l->cin.off), batch_bytes) != 0) {
            rc = server_lost(l, &r, "cannot write to the server");
            break;
        }
        pgr_link_consume(&l->cin, batch_bytes);
        if (open) r.fwd = FWD_SYNC;
        rc = await_ready(l, &r);
        break;
    }
    call.st->t_done_ns = pgr_now_ns();
    if (!call.st->t_send_ns) call.st->t_send_ns = call.st->t_done_ns;
    if (r.ready) l->tx_status = r.o.status;
    bool in_tx = r.ready && (r.o.status == 'T' || r.o.status == 'E');
    pgr_seam_end(s, &call, in_tx);
    pgr_proxy_step_end(l->px, l, call.st);
    if (call.answer_lost) {
        set_why(l, "answer lost (fault)");
        rc = -1;
    }
    if (l->client_eof) rc = -1;
    pgr_wire_batch_reset(b);
    return rc;
}
