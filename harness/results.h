/* results.h — what a run found: tallies, distributions, counterexamples (results.c). */
#ifndef PGRACE_RESULTS_H
#define PGRACE_RESULTS_H

#include "pgrace.h"

#define PGR_MAX_INV 16
#define PGR_MAX_CASES 16
#define PGR_MAX_CEX 3
#define PGR_MAX_SQLSTATES 48

/* The server's verdict on a piece of the seed's own SQL that pgrace ran as written (in a
 * savepoint, rolled back): the variant's ddl_as_written or rollback_as_written. */
#define PGR_MAX_SEED_SQL 2
typedef struct pgr_seed_sql {
    const char *which;               /* "ddl" | "rollback" */
    const char *sql;                 /* the seed's text, as the variant holds it */
    char error[256];                 /* "SQLSTATE message"; "" = it ran */
} pgr_seed_sql;
/* "DDL", "rollback plan": what a person calls that piece of the seed's SQL. */
const char *pgr_seed_sql_name(const pgr_seed_sql *q);

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

#define PGR_MAX_BODIES 12

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
    /* HTTP answers' bodies (http variants): each distinct (status, body start) and its count */
    struct { int status; char body[80]; long long n; } bodies[PGR_MAX_BODIES];
    int nbodies;
    long long bodies_other;              /* answers past the first PGR_MAX_BODIES distinct ones */
} pgr_tally;

typedef struct pgr_dist {            /* samples in microseconds */
    double *v;
    long n, cap;
} pgr_dist;

/* What produced a result. */
typedef enum { PGR_MODE_STRESS, PGR_MODE_EXPLORE, PGR_MODE_REPLAY, PGR_MODE_FUZZ, PGR_MODE_PAYLOADS, PGR_NMODES } pgr_mode;
const char *pgr_mode_name(pgr_mode m);             /* "stress", "explore", ... */

typedef struct pgr_explore_stats {  /* mode explore only */
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
    char saved[8][320];               /* PGR_MAX_SAVED */              /* minimized failing schedules written */
    char minimal[8192];              /* the first failure, minimized: table and explanation */
    int minimal_sessions, minimal_steps, minimal_switches;
} pgr_explore_stats;

typedef struct pgr_result {
    const pgr_scenario *sc;
    const pgr_variant *v;
    pgr_isolation iso;
    int sessions;
    pgr_mode mode;
    const char *release;             /* "realtime" (SCHED_FIFO sessions) or "normal" */
    long long trials;
    double seconds;
    long long statements;
    pgr_tally tally;
    pgr_dist latency;                /* per request, handler start to answer */
    pgr_dist skew;                   /* per trial, first send spread across sessions */
    pgr_dist http_spread;            /* per trial, the spread of the HTTP requests' last bytes
                                      * (http variants; empty otherwise) */
    pgr_verdict verdict;
    pgr_verdict expected;
    char error[PGR_ERRLEN];          /* harness error: the result is incomplete */
    pgr_seed_sql seed_sql[PGR_MAX_SEED_SQL];  /* the seed's SQL run as written, in order */
    int nseed_sql;
    pgr_explore_stats ex;
    pgr_fault fault;                 /* the injected fault; kind NONE = none */
    long long min_trials;            /* run's minimum for the cell (0: explore's whole space) */
    bool budget_short;               /* the run's budget ran out before that minimum */
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
                     pgr_isolation iso, int sessions, pgr_mode mode);
/* The verdict matches the expectation (PGR_EITHER: any verdict) and no harness error. */
bool pgr_result_matched(const pgr_result *r);

#endif
