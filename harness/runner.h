/* runner.h — connections, per-variant schemas, the stress runner and its results. */
#ifndef PGRACE_RUNNER_H
#define PGRACE_RUNNER_H

#include "pgrace.h"
#include <stdio.h>

#define PGR_MAX_INV 16
#define PGR_MAX_CASES 16
#define PGR_MAX_CEX 3
#define PGR_MAX_SQLSTATES 48

/* ---- connections and schemas (conn.c) ---- */

/* Check a DSN's syntax. 0, or -1 with err ("bad DSN '...': ...", passwords hidden). */
int pgr_dsn_check(const char *dsn, char *err, size_t errlen);
/* Copy text to out (one line, at most cap bytes) with every trace of a password in dsn as
 * "***"; text NULL shows the DSN itself. For any DSN, well-formed or not, and any message
 * about it (libpq's quote parts of it). Every DSN or libpq message shown goes through this. */
void pgr_dsn_redact(const char *dsn, const char *text, char *out, size_t cap);
/* Connect (connect_timeout 10 s unless the DSN says otherwise). NULL + err on failure. */
PGconn *pgr_connect(const char *dsn, char *err, size_t errlen);
/* Server version string ("PostgreSQL 15.18"). */
void pgr_server_version(PGconn *c, char *out, size_t len);

/* A variant's own schema, "pgrace_<scenario>_<variant>", created idempotently (under an
 * advisory lock) with the scenario's and the variant's DDL. Holds a shared advisory lock
 * for the run so that a concurrent pgrace never drops it underneath another. */
typedef struct pgr_schema {
    char name[64];
    bool created;              /* this process created it, so may drop it */
    long long run_id;          /* from the schema's run sequence: keys never collide */
    char seed_sql_error[256];  /* the variant's ddl_as_written failed: "SQLSTATE message" */
} pgr_schema;

int pgr_schema_setup(PGconn *admin, const pgr_scenario *sc, const pgr_variant *v,
                     pgr_schema *out, char *err, size_t errlen);
/* Drop the schema if this process created it and no other pgrace holds it. */
void pgr_schema_release(PGconn *admin, const pgr_schema *schema);
/* A digest of every table of the connection's schema (row counts and an order-free hash of
 * the rows): equal digests, nothing written. malloc'd; NULL + err on error. */
char *pgr_schema_digest(PGconn *c, char *err, size_t errlen);
/* Point a connection at the schema, set isolation; returns 0 or -1+err. */
int pgr_session_setup(PGconn *c, const pgr_schema *schema, pgr_isolation iso, int *backend_pid,
                      char *err, size_t errlen);

/* ---- results ---- */

typedef struct pgr_counterexample {
    long long trial_no;
    int kase;
    int invariant;
    char why[320];
    int nsessions;
    pgr_response resp[PGR_MAX_SESSIONS];
    int nsteps[PGR_MAX_SESSIONS];
    pgr_step *steps;           /* [nsessions][PGR_MAX_STEPS], owned */
    short fault_step[PGR_MAX_SESSIONS];     /* step a fault fired at; -1 none */
    short fault_status[PGR_MAX_SESSIONS];   /* the faulted attempt's answer; 0 none arrived */
    bool fault_retried[PGR_MAX_SESSIONS];
} pgr_counterexample;

typedef struct pgr_tally {
    long long inv[PGR_MAX_INV];          /* violations per invariant */
    long long violated_trials;
    long long statuses[600];
    struct { char code[6]; long long n; } sqlstates[PGR_MAX_SQLSTATES];
    int nsqlstates;
    long long case_trials[PGR_MAX_CASES];
    /* faults */
    long long faults_armed;              /* requests given a fault to fire */
    long long faults_fired;              /* ... that reached its site */
    long long faults_indeterminate;      /* lost commits: outcome unknown to the client */
    long long faults_retried;            /* requests the client sent again after the fault */
    long long retry_failed;              /* retries that still answered 5xx */
    long long half_committed;            /* failed (5xx) faulted attempts that left changes */
    long long unjudged;                  /* answer-invariant checks skipped: an answer was lost */
    pgr_counterexample cex[PGR_MAX_CEX];
    int ncex;
} pgr_tally;

typedef struct pgr_dist {            /* samples in microseconds */
    double *v;
    long n, cap;
} pgr_dist;

typedef struct pgr_explore_stats {  /* mode "explore" only */
    const char *strategy;            /* exhaustive | random | pct */
    long long schedules;             /* schedules run (== trials) */
    long long pruned;                /* exhaustive: interleavings skipped as equivalent (sleep sets) */
    long long first_violation;       /* 1-based schedule that first broke an invariant; 0 none */
    bool complete;                   /* exhaustive: the whole space was explored */
    unsigned long long seed;
    int depth;                       /* pct: bug depth d */
    int max_steps;                   /* k: most statements seen in one schedule */
    double pct_bound;                /* pct: 1/(n*k^(d-1)) per schedule */
    int nsaved;
    char saved[8][320];              /* minimized failing schedules written */
    char minimal[8192];              /* the first failure, minimized: table and explanation */
    int minimal_sessions, minimal_steps, minimal_switches;
} pgr_explore_stats;

typedef struct pgr_result {
    const pgr_scenario *sc;
    const pgr_variant *v;
    pgr_isolation iso;
    int sessions;
    const char *mode;                /* "stress" */
    const char *release;             /* "realtime" (SCHED_FIFO sessions) or "normal" */
    long long trials;
    double seconds;
    long long statements;
    pgr_tally tally;
    pgr_dist latency;                /* per request, handler start to answer */
    pgr_dist skew;                   /* per trial, first send spread across sessions */
    pgr_verdict verdict;
    pgr_verdict expected;
    char error[PGR_ERRLEN];          /* harness error: the result is incomplete */
    char seed_sql_error[256];        /* the seed's SQL as written was rejected: "SQLSTATE message" */
    pgr_explore_stats ex;
    pgr_fault fault;                 /* the injected fault; kind NONE = none */
} pgr_result;

void pgr_result_free(pgr_result *r);
/* The steps of a counterexample in the order they were sent: (session, step) pairs.
 * Returns how many (at most PGR_MAX_SESSIONS * PGR_MAX_STEPS). */
int pgr_cex_order(const pgr_counterexample *c, int *session, int *step);
/* Put trial t (a minimized counterexample) first among res's counterexamples. */
void pgr_result_lead_counterexample(pgr_result *res, const pgr_trial *t);
double pgr_dist_pct(pgr_dist *d, double p);     /* sorts in place */
void pgr_tally_sqlstate(pgr_tally *t, const char *code, long long n);

void pgr_result_init(pgr_result *res, const pgr_scenario *sc, const pgr_variant *v,
                     pgr_isolation iso, int sessions, const char *mode);

/* ---- the session pool (pool.c), shared by every mode ---- */

typedef struct pgr_pool pgr_pool;
typedef struct pgr_pool_opts {
    int sessions;
    pgr_isolation iso;
    bool realtime;                   /* try SCHED_FIFO for the sessions */
    const pgr_gate_ops *gate;        /* scheduler at the seam; NULL = run at once */
    const pgr_fault *fault;          /* inject this fault where trials arm it; NULL none */
    double step_timeout_s;           /* the watchdog: a step stuck longer is cancelled and
                                      * reported as a harness error (0: 30 s) */
    bool thread_per_trial;           /* create the session threads per trial, join them after
                                      * (the fuzzer: no thread outlives an input) */
    volatile int *interrupted;
} pgr_pool_opts;

/* Connect, set up the variant's schema, start the session threads. NULL + res->error. */
pgr_pool *pgr_pool_open(const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                        const pgr_pool_opts *o, pgr_result *res);
/* Stop the threads, close connections, add statement counts to res, drop own schema. */
void pgr_pool_close(pgr_pool *pool, pgr_result *res);
pgr_session *pgr_pool_session(pgr_pool *pool, int i);
/* The most eligible fault sites one request has passed so far (stress picks among them). */
int pgr_pool_fault_sites(pgr_pool *pool);
/* Set up trials first..first+n-1 (n <= PGR_MAX_BATCH) and insert their rows.
 * force_case >= 0 gives every trial that case; else the scenario's weights decide. */
int pgr_pool_prepare(pgr_pool *pool, long long first, int n, int force_case, pgr_batch *b, pgr_result *res);
/* Release every session into trial t (returns at once). -1 + res->error if threads fail. */
int pgr_pool_start(pgr_pool *pool, pgr_trial *t, pgr_result *res);
/* Wait until every session answered; -1 + res->error on a harness fault. */
int pgr_pool_finish(pgr_pool *pool, pgr_result *res);
/* Check the first `ran` trials of the batch; -1 + res->error. */
int pgr_pool_check(pgr_pool *pool, pgr_batch *b, int ran, pgr_result *res);
/* Fold a finished trial's statuses, SQLSTATEs, latency and skew into res. */
void pgr_account_trial(pgr_result *res, const pgr_trial *t);

/* ---- stress (stress.c) ---- */

typedef struct pgr_stress_opts {
    int sessions;
    long long trials;                /* 0: use seconds */
    double seconds;
    long long min_trials;            /* with seconds: run at least this many trials */
    pgr_isolation iso;
    double progress_s;               /* 0: none */
    bool quiet;
    int force_case;                  /* >= 0: every trial is this case; -1: the scenario's weights */
    pgr_fault fault;                 /* kind NONE: no faults */
    unsigned long long seed;         /* which requests get the fault, and where */
    double step_timeout_s;           /* 0: 30 s */
    volatile int *interrupted;
} pgr_stress_opts;

/* Arm trial t's requests with fault f: each with probability f->rate, at a site chosen
 * among `sites` (a pure function of seed, trial number and session). */
void pgr_fault_plan(pgr_trial *t, const pgr_fault *f, unsigned long long seed, int sites);

/* Run one variant under stress. 0 done (result filled), -1 harness error (result->error;
 * what finished is still in the result). */
int pgr_stress(const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
               const pgr_stress_opts *o, pgr_result *res);

/* ---- output (output.c) ---- */

void pgr_print_result(FILE *f, pgr_result *r);
/* Write {"pgrace_version", "server", "results": [...], "error"} to path. 0 or -1+err. */
int pgr_write_json(const char *path, const char *server, pgr_result *rs, int n,
                   const char *error, char *err, size_t errlen);
struct json_t;
/* Write {"pgrace_version", "server", key: items (stolen), "error"} to path. 0 or -1+err. */
int pgr_write_json_document(const char *path, const char *server, const char *key, struct json_t *items,
                            const char *error, char *err, size_t errlen);

#endif
