/* explore.h — deterministic interleaving exploration, schedule files, replay, minimization. */
#ifndef PGRACE_EXPLORE_H
#define PGRACE_EXPLORE_H

#include "runner.h"

#define PGR_MAX_GRANTS 256          /* statements in one schedule */

typedef enum { PGR_EXHAUSTIVE, PGR_RANDOM, PGR_PCT } pgr_strategy;

typedef struct pgr_explore_opts {
    int sessions;
    pgr_isolation iso;
    pgr_strategy strategy;
    long long max_schedules;        /* 0 = exhaustive: no limit but a safety cap; others 1000 */
    unsigned long long seed;
    int depth;                      /* PCT bug depth d */
    int force_case;                 /* -1 = the scenario's first case (the race the seed is about) */
    const char *save_dir;           /* write minimized failing schedules here (NULL: don't) */
    int max_saves;
    bool quiet;
    double progress_s;
    volatile int *interrupted;
} pgr_explore_opts;

/* Explore one variant. 0 done (res filled: mode "explore", trials = schedules run),
 * -1 harness error (res->error). */
int pgr_explore(const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                const pgr_explore_opts *o, pgr_result *res);

/* Replay schedule files; prints "reproduced" or where it diverged for each.
 * Returns 0 all reproduced, 1 one diverged, 2 a file unreadable/unparsable or a harness error. */
int pgr_replay(const char *dsn, char **files, int nfiles, int repeat, bool quiet, volatile int *interrupted);

#endif
