/* pool.h — the session pool, shared by every mode (pool.c). */
#ifndef PGRACE_POOL_H
#define PGRACE_POOL_H

#include "conn.h"
#include "results.h"

typedef struct pgr_pool pgr_pool;
typedef struct pgr_pool_opts {
    int sessions;
    pgr_isolation iso;
    bool realtime;                   /* try SCHED_FIFO for the sessions */
    const pgr_gate_ops *gate;        /* scheduler at the seam; NULL = run at once */
    const pgr_fault *fault;          /* inject this fault where trials arm it; NULL none */
    double step_timeout_s;           /* the watchdog: a step stuck longer is cancelled and
                                      * reported as a harness error (0: 30 s) */
    const struct pgr_target *target; /* what serves the requests; NULL: the variant's C handler */
    volatile int *interrupted;
} pgr_pool_opts;

/* Connect, set up the variant's schema, start the session threads. NULL + res->error. */
pgr_pool *pgr_pool_open(const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                        const pgr_pool_opts *o, pgr_result *res);
/* Stop the threads, close connections, add statement counts to res, drop own schema. */
void pgr_pool_close(pgr_pool *pool, pgr_result *res);
pgr_session *pgr_pool_session(pgr_pool *pool, int i);
/* The run's schema (the sessions' search_path). */
const char *pgr_pool_schema(const pgr_pool *pool);
/* The most eligible fault sites one request has passed so far (stress picks among them). */
int pgr_pool_fault_sites(pgr_pool *pool);
/* Set up trials first..first+n-1 (n <= PGR_MAX_BATCH) and insert their rows.
 * force_case >= 0 gives every trial that case; PGR_CASES_IN_TURN gives trial i case
 * i % ncases (the fuzzer: each input picks its own); else the scenario's weights decide. */
#define PGR_CASES_IN_TURN (-2)
int pgr_pool_prepare(pgr_pool *pool, long long first, int n, int force_case, pgr_batch *b, pgr_result *res);
/* Release every session into trial t (returns at once). */
void pgr_pool_start(pgr_pool *pool, pgr_trial *t);
/* Wait until every session answered; -1 + res->error on a harness fault. */
int pgr_pool_finish(pgr_pool *pool, pgr_result *res);
/* Check the first `ran` trials of the batch; -1 + res->error. */
int pgr_pool_check(pgr_pool *pool, pgr_batch *b, int ran, pgr_result *res);
/* Fold a finished trial's statuses, SQLSTATEs, latency and skew into res. */
void pgr_account_trial(pgr_result *res, const pgr_trial *t);

#endif
