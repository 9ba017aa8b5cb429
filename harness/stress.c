/*
 * stress.c — the synchronized stress runner.
 *
 * Each trial, every session of the pool (pool.c) is released at once and runs its
 * request with no scheduler: statements go to the server as fast as the sessions send
 * them. Batches of trials are prepared and checked together.
 */
#include "runner.h"

#include <stdlib.h>
#include <string.h>

static void progress(const pgr_result *res, double elapsed, bool final)
{
    fprintf(stderr, "\r%s/%s %s c=%d: %lld trials, %.0f/s, %lld violating%s",
            res->sc->name, res->v->name, pgr_isolation_name(res->iso), res->sessions,
            res->trials, elapsed > 0 ? (double)res->trials / elapsed : 0.0,
            res->tally.violated_trials, final ? "\n" : "   ");
}

int pgr_stress(const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
               const pgr_stress_opts *o, pgr_result *res)
{
    pgr_result_init(res, sc, v, o->iso, o->sessions, PGR_MODE_STRESS);
    res->fault = o->fault;
    if (o->fault.kind != PGR_FAULT_NONE) {  /* concurrency's verdict (from 2 sessions on) or the fault's */
        if (o->sessions < 2) res->expected = PGR_SAFE;
        if (v->fault_expect[o->fault.kind] == PGR_RACE) res->expected = PGR_RACE;
    }
    pgr_pool_opts po = { .sessions = o->sessions, .iso = o->iso, .realtime = true,
                         .fault = &o->fault, .step_timeout_s = o->step_timeout_s, .interrupted = o->interrupted };
    int64_t t_open = pgr_now_ns();
    pgr_pool *pool = pgr_pool_open(dsn, sc, v, &po, res);
    if (!pool) return -1;
    t_open = pgr_now_ns() - t_open;      /* setup aside: an application's start-up is not the cell's time */

    int batch = 4096 / o->sessions;
    if (batch < 16) batch = 16;
    if (batch > PGR_MAX_BATCH) batch = PGR_MAX_BATCH;
    int rc = -1;
    int64_t t_start = pgr_now_ns();
    int64_t next_progress = t_start + (int64_t)(o->progress_s * 1e9);
    int64_t t_end = o->trials ? INT64_MAX : t_start + (int64_t)(o->seconds * 1e9);
    if (o->deadline_ns > 0 && o->deadline_ns + t_open < t_end) t_end = o->deadline_ns + t_open;
    res->min_trials = o->min_trials;
    bool stopping = false;
    while (!stopping) {
        long long left = o->trials ? o->trials - res->trials : batch;
        if (left <= 0) break;
        int nb = left < batch ? (int)left : batch;
        pgr_batch b;
        if (pgr_pool_prepare(pool, res->trials, nb, o->force_case, &b, res) != 0) goto out;
        int ran = 0;
        while (ran < nb) {
            if (o->fault.kind != PGR_FAULT_NONE)
                pgr_fault_plan(&b.trials[ran], &o->fault, o->seed, pgr_pool_fault_sites(pool));
            pgr_pool_start(pool, &b.trials[ran]);
            if (pgr_pool_finish(pool, res) != 0) goto out;
            pgr_account_trial(res, &b.trials[ran]);
            ran++;
            res->trials++;
            int64_t now = pgr_now_ns();
            /* a program's or an application's cell gets its few trials (20) even when the
             * budget ran out: its start-up, not its trials, is what costs */
            bool owed = pgr_variant_wire(v) && o->deadline_ns > 0 && res->trials < o->min_trials;
            if ((now >= t_end && !owed) || (o->interrupted && *o->interrupted)) {
                stopping = true;
                break;
            }
            if (o->progress_s > 0 && !o->quiet && now >= next_progress) {
                progress(res, (double)(now - t_start) / 1e9, false);
                next_progress = now + (int64_t)(o->progress_s * 1e9);
            }
        }
        if (pgr_pool_check(pool, &b, ran, res) != 0) goto out;
        if (o->interrupted && *o->interrupted) {
            snprintf(res->error, sizeof res->error, "interrupted");
            goto out;
        }
    }
    rc = 0;
    res->budget_short = o->deadline_ns > 0 && res->trials < o->min_trials;
out:
    res->seconds = (double)(pgr_now_ns() - t_start) / 1e9;
    if (o->progress_s > 0 && !o->quiet) progress(res, res->seconds, true);
    pgr_pool_close(pool, res);
    res->verdict = res->tally.violated_trials > 0 ? PGR_RACE : PGR_SAFE;
    return rc;
}
