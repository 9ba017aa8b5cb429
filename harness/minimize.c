/*
 * minimize.c — shrinking a failing schedule: the shortest forced prefix that still breaks
 * the same invariant, and the same schedule on one session fewer.
 */
#include "scheduler.h"

#include <stdlib.h>

/* Shrink a failing schedule: the shortest forced prefix that, run on without preemption,
 * still breaks the same invariant. Fills best (the run) and returns its trial. */
pgr_trial *pgr_sched_minimize(explorer *x, const sched_run *failing, int kase, int inv, long long *trial_no,
                              pgr_result *res, sched_run *best)
{
    pgr_trial *t = NULL;
    for (int prefix = 0; prefix <= failing->n; prefix++) {
        if (pgr_sched_run_forced(x, failing->grants, prefix, kase, (*trial_no)++, res, &t, best) != 0) return NULL;
        if (t->violated && t->first_invariant == inv) return t;
    }
    return NULL;
}

/* Try the failing schedule with each session left out, on a pool one session smaller.
 * Returns that pool's explorer (failing rewritten to its schedule) when the same invariant
 * still breaks, else NULL. */
explorer *pgr_sched_fewer_sessions(explorer *x, const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                                   pgr_isolation iso, sched_run *failing, int kase, int inv, long long *trial_no)
{
    pgr_result sink;
    pgr_result_init(&sink, sc, v, iso, x->n - 1, PGR_MODE_EXPLORE);
    explorer *y = pgr_explorer_new(x->interrupted);
    if (!y || pgr_explorer_open(y, dsn, sc, v, x->n - 1, iso, NULL, &sink) != 0) {
        if (y) { pgr_explorer_close(y, &sink); pgr_explorer_free(y); }
        pgr_result_free(&sink);
        return NULL;
    }
    for (int drop = x->n - 1; drop >= 0; drop--) {
        int grants[PGR_MAX_GRANTS], n = 0;
        for (int g = 0; g < failing->n; g++)
            if (failing->grants[g] != drop) grants[n++] = failing->grants[g] - (failing->grants[g] > drop);
        pgr_trial *t;
        sched_run *sr = calloc(1, sizeof *sr);
        if (!sr) break;
        if (pgr_sched_run_forced(y, grants, n, kase, (*trial_no)++, &sink, &t, sr) != 0) { free(sr); break; }
        if (t->violated && t->first_invariant == inv) {
            *failing = *sr;
            free(sr);
            pgr_result_free(&sink);
            return y;
        }
        free(sr);
    }
    pgr_explorer_close(y, &sink);
    pgr_explorer_free(y);
    pgr_result_free(&sink);
    return NULL;
}
