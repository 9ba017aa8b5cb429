/*
 * seam.h — the statement seam as executors see it: begin and end around one statement.
 *
 * Every statement of every door passes here: a C handler's through pgr_exec (the libpq
 * executor, exec_libpq.c), a forwarded one through whatever executor forwards it. begin
 * records the step, waits at the scheduler's gate and decides the fault; the executor
 * does what begin says (send, send the injected error instead, kill the backend, or fail
 * unsent) and fills the step's outcome; end records the rest and tells the gate.
 */
#ifndef PGRACE_SEAM_H
#define PGRACE_SEAM_H

#include "pgrace.h"

typedef enum {
    PGR_SEAM_SEND,          /* send call->sql with call->params */
    PGR_SEAM_SEND_ERROR,    /* error-at: call->sql is now the injected server error */
    PGR_SEAM_KILL,          /* kill-backend: terminate the backend, then fail unsent (call->why) */
    PGR_SEAM_FAIL,          /* fail unsent: the connection is (now) gone (call->why) */
    PGR_SEAM_SKIP,          /* the harness lost its server: fail at once, nothing sent */
} pgr_seam_action;

typedef struct pgr_seam_call {
    pgr_step *st;                    /* the step being recorded (a scratch one past PGR_MAX_STEPS) */
    pgr_step scratch;
    pgr_seam_action action;
    pgr_fault_kind fault;            /* the fault that fires at this step; NONE */
    bool answer_lost;                /* timeout-retry, applied lost-commit: the statement runs,
                                      * then its answer is lost with the connection */
    const char *sql;                 /* what to send */
    int nparams;
    const char *const *params;
    const char *why;                 /* FAIL, KILL: the step's message */
    char injected[96];               /* SEND_ERROR: the injected error's text ($1) */
    const char *injected_params[1];
} pgr_seam_call;

/* Record the step, wait for the gate, decide the fault; the action is in call. */
void pgr_seam_begin(pgr_session *s, const char *label, const char *sql, int nparams,
                    const char *const *params, pgr_seam_call *call);
/* The executor is about to send: the step's send time (and the trial's first). */
void pgr_seam_sent(pgr_session *s, pgr_seam_call *call);
/* The step's outcome is in call->st (sqlstate, rows, values, constraint, message, done
 * time); in_tx says whether the connection is now inside a transaction. Tells the gate. */
void pgr_seam_end(pgr_session *s, pgr_seam_call *call, bool in_tx);

/* The session's interned copy of text (a statement or a label; see intern.h). */
const char *pgr_stmt_text(pgr_session *s, const char *text);
/* Forget the connection's prepared statements (it was closed). */
void pgr_stmt_cache_free(pgr_session *s);

/* The harness lost its server (not a race): the run stops with a harness error. */
void pgr_seam_infra(pgr_session *s, const char *what, const char *msg);
/* SQLSTATEs that mean the server is gone, not that the pattern misbehaved. */
bool pgr_infra_sqlstate(const char *sqlstate);

#endif
