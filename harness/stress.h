/* stress.h — the synchronized stress runner (stress.c). */
#ifndef PGRACE_STRESS_H
#define PGRACE_STRESS_H

#include "pool.h"

typedef struct pgr_stress_opts {
    int sessions;
    long long trials;                /* 0: use seconds */
    double seconds;
    int64_t deadline_ns;             /* > 0: stop there whatever trials or seconds say */
    long long min_trials;            /* stopped by the deadline below this: budget_short */
    pgr_isolation iso;
    double progress_s;               /* 0: none */
    bool quiet;
    int force_case;                  /* >= 0: every trial is this case; -1: the scenario's weights */
    pgr_fault fault;                 /* kind NONE: no faults */
    unsigned long long seed;         /* which requests get the fault, and where */
    double step_timeout_s;           /* 0: 30 s */
    volatile int *interrupted;
} pgr_stress_opts;

/* Run one variant under stress. 0 done (result filled), -1 harness error (result->error;
 * what finished is still in the result). */
int pgr_stress(const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
               const pgr_stress_opts *o, pgr_result *res);

#endif
