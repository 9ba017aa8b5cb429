/*
 * seam.c — the statement seam: begin and end around every statement (seam.h).
 *
 * How it works: before a statement, pgr_seam_begin
 *   1. records the step (label and SQL interned, parameters, session, attempt);
 *   2. asks the gate (the scheduler, in explore/fuzz/replay) for permission; in stress
 *      there is no gate and the statement goes at once;
 *   3. decides whether the armed fault fires here, and so what the executor must do.
 * The executor (exec_libpq.c for in-process handlers) does it and fills the outcome;
 * pgr_seam_end records the rest and tells the gate the step is done. A lost connection or
 * a server shutting down marks s->infra_error: the runner then reports a harness error
 * (exit 2), never a race.
 *
 * Faults (--fault) fire here, once per request at the site the runner armed: a step whose
 * answer is lost (timeout-retry), a backend terminated before a step (kill-backend), a
 * real server error instead of a named step (error-at), a connection dropped around a
 * commit (lost-commit). A connection taken by a fault is the application's problem, not
 * the harness's: its steps fail with 08006 until the runner reconnects the session.
 */
#include "seam.h"
#include "intern.h"

#include <stdio.h>
#include <string.h>

bool pgr_infra_sqlstate(const char *st)
{
    /* class 08 (connection exception), 57P01-57P03 (admin/crash shutdown, cannot connect) */
    return strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 ||
           strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0;
}

void pgr_seam_infra(pgr_session *s, const char *what, const char *msg)
{
    if (s->infra_error) return;
    s->infra_error = true;
    char first[256];
    pgr_copy_trunc(first, sizeof first, msg ? msg : "");
    char *nl = strchr(first, '\n');
    if (nl) *nl = '\0';
    snprintf(s->infra_msg, sizeof s->infra_msg, "session S%d: %s: %s", s->index + 1, what, first);
}

/* pgrace_raise is created in every variant's schema (conn.c). */
static const char SQL_INJECTED_ERROR[] = "SELECT pgrace_raise($1)";

/* Is this step an eligible site for the armed fault? Counts the sites; true at the armed one. */
static bool fault_fires_here(pgr_session *s, const char *label, const char *sql)
{
    const pgr_fault *f = s->fault;
    if (!f || pgr_sql_is_rollback(sql)) return false;
    bool eligible = false;
    switch (f->kind) {
    case PGR_FAULT_TIMEOUT: eligible = true; break;
    case PGR_FAULT_KILL: eligible = s->nsteps - 1 > s->send_first_step; break;   /* between two steps */
    case PGR_FAULT_ERROR: eligible = !f->step[0] || pgr_fault_step_is(f->step, label); break;
    case PGR_FAULT_LOST_COMMIT:                                           /* a statement that commits */
        eligible = pgr_sql_is_commit(sql) || (!s->in_tx && pgr_sql_kind(sql) == PGR_SQL_WRITE);
        break;
    default: break;
    }
    if (!eligible) return false;
    int site = s->fault_sites++;      /* counted on every request: the runner learns how many */
    return s->fault_site >= 0 && s->fault_fired_at < 0 && site == s->fault_site;
}

/* The step fails without an answer from the server (the connection is gone). */
static void fail_step(pgr_step *st, const char *why)
{
    pgr_copy_trunc(st->sqlstate, sizeof st->sqlstate, "08006");
    st->rows = 0;
    pgr_copy_trunc(st->message, sizeof st->message, why);
}

void pgr_seam_begin(pgr_session *s, const char *label, const char *sql, int nparams,
                    const char *const *params, pgr_seam_call *call)
{
    pgr_step *st = &call->scratch;
    if (s->trace && s->nsteps < PGR_MAX_STEPS) st = &s->trace[s->nsteps];
    memset(st, 0, sizeof *st);
    call->st = st;
    call->action = PGR_SEAM_SEND;
    call->fault = PGR_FAULT_NONE;
    call->answer_lost = false;
    call->sql = sql;
    call->nparams = nparams;
    call->params = params;
    call->why = NULL;
    /* A recorded or scheduled step outlives this call: its texts are interned. A step
     * nobody keeps (the wire in pass-through, new text at every statement) points at the
     * caller's, valid until pgr_seam_end returns. */
    bool kept = s->trace || s->gate;
    st->label = kept ? pgr_stmt_text(s, label) : label;
    st->sql = kept ? pgr_stmt_text(s, sql) : sql;
    st->session = (short)s->index;
    st->attempt = (short)s->attempt;
    size_t off = 0;
    for (int i = 0; i < nparams && off + 1 < sizeof st->params; i++) {
        int w = snprintf(st->params + off, sizeof st->params - off, "%s%s",
                         i ? ", " : "", params[i] ? params[i] : "NULL");
        if (w < 0) break;
        off += (size_t)w;
    }
    s->nsteps++;

    if (s->infra_error) {            /* the connection is gone: do not pretend */
        call->action = PGR_SEAM_SKIP;
        fail_step(st, "");
        return;
    }
    if (s->gate) s->gate->before(s->gate->ctx, s, st);

    if (s->conn_lost) {
        call->action = PGR_SEAM_FAIL;
        call->why = "no connection (lost to the fault)";
        return;
    }
    if (!fault_fires_here(s, label, sql)) return;
    call->fault = s->fault->kind;
    s->fault_fired_at = s->nsteps - 1;
    switch (call->fault) {
    case PGR_FAULT_KILL:             /* a real pg_terminate_backend: the server ends this backend */
        call->action = PGR_SEAM_KILL;
        call->why = "backend terminated before this step (fault kill-backend)";
        break;
    case PGR_FAULT_LOST_COMMIT:
        if (!s->fault_applies) {
            call->action = PGR_SEAM_FAIL;
            call->why = "connection lost before the commit arrived (fault lost-commit): outcome unknown";
        } else {
            call->answer_lost = true;
        }
        break;
    case PGR_FAULT_ERROR:            /* the server raises instead of running the step */
        snprintf(call->injected, sizeof call->injected, "injected error at step '%s' (fault error-at)", label);
        call->action = PGR_SEAM_SEND_ERROR;
        call->sql = SQL_INJECTED_ERROR;
        call->nparams = 1;
        call->injected_params[0] = call->injected;
        call->params = call->injected_params;
        break;
    case PGR_FAULT_TIMEOUT:          /* the statement runs (and commits); its answer never arrives */
        call->answer_lost = true;
        break;
    default: break;
    }
}

void pgr_seam_sent(pgr_session *s, pgr_seam_call *call)
{
    int64_t t0 = pgr_now_ns();
    call->st->t_send_ns = t0;
    if (s->first_send_ns == 0) s->first_send_ns = t0;
}

void pgr_seam_end(pgr_session *s, pgr_seam_call *call, bool in_tx)
{
    pgr_step *st = call->st;
    if (call->action == PGR_SEAM_SKIP) return;          /* the harness lost its server */
    if (call->action == PGR_SEAM_FAIL || call->action == PGR_SEAM_KILL) {
        st->t_send_ns = st->t_done_ns = pgr_now_ns();
        fail_step(st, call->why);
        s->conn_lost = true;
        s->in_tx = false;
    } else {
        s->statements++;
        if (call->answer_lost) {     /* what the server did stays in the step; the handler sees 08006 */
            char ran[96];
            snprintf(ran, sizeof ran, "%s %s, answer lost (fault %s)", strcmp(st->sqlstate, "00000") == 0 ? "ran" : "failed",
                     st->sqlstate, pgr_fault_name(call->fault));
            pgr_copy_trunc(st->sqlstate, sizeof st->sqlstate, "08006");
            pgr_copy_trunc(st->message, sizeof st->message, ran);
            s->conn_lost = true;
            s->in_tx = false;
        } else {
            s->in_tx = in_tx;
        }
    }
    if (s->gate) s->gate->after(s->gate->ctx, s, st);
}
