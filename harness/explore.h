/* explore.h — deterministic interleaving exploration, schedule files, replay, minimization. */
#ifndef PGRACE_EXPLORE_H
#define PGRACE_EXPLORE_H

#include "runner.h"

#define PGR_MAX_GRANTS 256          /* statements in one schedule */
#define PGR_MAX_EXPLORE_SESSIONS 8  /* sessions one explored schedule may have */
#define PGR_MAX_SAVED 8             /* failing schedules one exploration keeps */

typedef enum { PGR_EXHAUSTIVE, PGR_RANDOM, PGR_PCT } pgr_strategy;
/* The exhaustive strategy's reduction: dynamic partial-order reduction with sleep sets on
 * statements' footprints (footprint.c); sleep sets alone on the old relation (BEGIN commutes
 * with everything, two plain SELECTs commute); none (every interleaving). */
typedef enum { PGR_POR_DPOR, PGR_POR_SLEEP, PGR_POR_NONE } pgr_reduction;

/* Where one fault fires in a schedule: a choice the explorer and the fuzzer make. */
typedef struct pgr_fault_at {
    pgr_fault fault;                /* kind NONE: no fault */
    int session;                    /* 0-based */
    int site;                       /* eligible site of that session's request, 0-based */
    bool applies;                   /* lost-commit: the commit reached the server first */
} pgr_fault_at;

typedef struct pgr_explore_opts {
    int sessions;
    pgr_isolation iso;
    pgr_strategy strategy;
    pgr_reduction reduction;        /* exhaustive only (default dpor) */
    long long max_schedules;        /* 0 = exhaustive: no limit but a safety cap; others 1000 */
    unsigned long long seed;
    int depth;                      /* PCT bug depth d */
    int force_case;                 /* -1 = the scenario's first case (the race the seed is about) */
    const char *save_dir;           /* write minimized failing schedules here (NULL: don't) */
    double step_timeout_s;          /* 0: 30 s */
    pgr_fault fault;                /* kind NONE: none; else every schedule has one such fault, and
                                     * where it fires (session, site, commit outcome) is explored too */
    int max_saves;
    bool quiet;
    double progress_s;
    int64_t deadline_ns;            /* > 0: stop exploring there (res->budget_short if not complete) */
    volatile int *interrupted;
} pgr_explore_opts;

/* Explore one variant. 0 done (res filled: mode "explore", trials = schedules run),
 * -1 harness error (res->error). */
int pgr_explore(const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                const pgr_explore_opts *o, pgr_result *res);

/* Schedule files read, parsed and their scenarios found: no server is needed for that, so
 * it is done first. */
typedef struct pgr_replay_set pgr_replay_set;
/* NULL after printing one line naming the file and what is wrong (exit 2). */
pgr_replay_set *pgr_replay_load(char **files, int nfiles, bool quiet);
void pgr_replay_free(pgr_replay_set *set);
/* Replay them; prints "reproduced" or where it diverged for each.
 * Returns 0 all reproduced, 1 one diverged, 2 a harness error. */
int pgr_replay(const char *dsn, const pgr_replay_set *set, int repeat, bool quiet, volatile int *interrupted);

/* Parse a schedule file's text (the parsers fuzzer). 0, or -1 with err. */
int pgr_schedule_check(const char *data, size_t n, char *err, size_t errlen);

/* ---- fuzzing: one schedule whose every decision comes from input bytes ---- */

typedef struct pgr_fuzzer pgr_fuzzer;

typedef struct pgr_fuzz_input {
    const pgr_scenario *sc;
    const pgr_variant *v;
    pgr_isolation iso;
    int sessions, kase;
    const pgr_fault_at *fault;       /* NULL or kind NONE: none */
    const uint8_t *choices;          /* decision g picks among the ready sessions by choices[g];
                                      * past the end, by a generator seeded with a hash of
                                      * the whole input (a short input is a whole schedule) */
    size_t nchoices;
    const uint8_t *bytes;            /* the whole input, kept until it is checked */
    size_t nbytes;
    const char *save_path;           /* where its schedule file goes if it violates; NULL none */
} pgr_fuzz_input;

typedef struct pgr_fuzz_outcome {
    /* the input just run */
    uint32_t signal[PGR_MAX_GRANTS]; /* interleaving features: hashes of (step, next step of
                                      * another session, outcomes) at every context switch,
                                      * and of each step's outcome */
    int nsignal;
    /* a violation found by this call's check: of this input, or (earlier) of one run before
     * it and checked in the same batch */
    bool violated, earlier;
    long long execution;             /* the violating input's number (1-based) */
    const pgr_scenario *sc;
    const pgr_variant *v;
    pgr_isolation iso;
    int sessions, kase;
    int invariant;                   /* the first invariant broken */
    char why[400];
    char table[8192];                /* the interleaving, described */
    const uint8_t *input;            /* its bytes (valid until the next violation reported) */
    size_t ninput;
    const char *path;                /* its schedule file, written; NULL none */
} pgr_fuzz_outcome;

/* Pools are opened on first use per (variant, isolation, sessions, fault) and kept (a few). */
pgr_fuzzer *pgr_fuzzer_new(const char *dsn);
/* Inputs run before their invariants are checked together (default 64; 1: each at once). */
void pgr_fuzzer_set_batch(pgr_fuzzer *fz, int n);
/* Run one input's schedule (every session done before it returns); check the batch when it is
 * full. 0, or -1 with err (a harness error). */
int pgr_fuzz_one(pgr_fuzzer *fz, const pgr_fuzz_input *in, pgr_fuzz_outcome *out, char *err, size_t errlen);
/* Check every input run and not yet checked (before stopping). 0, or -1 with err. */
int pgr_fuzz_flush(pgr_fuzzer *fz, pgr_fuzz_outcome *out, char *err, size_t errlen);
void pgr_fuzzer_free(pgr_fuzzer *fz);

#endif
