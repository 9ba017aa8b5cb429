/*
 * explore.c — pgr_explore, the driver of deterministic exploration: runs batches of
 * schedules under the scheduler (scheduler.c) with the chosen strategy, steps the exhaustive
 * search and the fault sites, keeps the first failing schedule of each broken invariant,
 * then minimizes, explains and saves those.
 */
#include "scheduler.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Invariant (scenario's >= 0, the harness's < 0) to a slot of per-invariant arrays. */
static int inv_slot(int inv) { return inv >= 0 ? inv : PGR_MAX_INV + 1 + inv; }
static int slot_inv(int slot) { return slot < PGR_MAX_INV - 2 ? slot : slot - PGR_MAX_INV - 1; }

/* The fault sites of a variant's requests, learned from one schedule run without firing:
 * (session, site, commit outcome) triples. Returns how many. */
static int fault_sites(explorer *x, int kase, long long *trial_no, pgr_result *res, pgr_fault_at *out, int cap)
{
    pgr_trial *t;
    sched_run *sr = calloc(1, sizeof *sr);
    if (!sr) return -1;
    x->fat = (pgr_fault_at){ .session = -1 };
    int rc = pgr_sched_run_forced(x, NULL, 0, kase, (*trial_no)++, res, &t, sr);
    free(sr);
    if (rc != 0) return -1;
    int n = 0;
    for (int s = 0; s < t->nsessions; s++)
        for (int site = 0; site < t->fault_sites_seen[s]; site++)
            for (int a = 0; a < (x->fault.kind == PGR_FAULT_LOST_COMMIT ? 2 : 1) && n < cap; a++)
                out[n++] = (pgr_fault_at){ .fault = x->fault, .session = s, .site = site, .applies = a };
    return n;
}

/* Where the search is between schedules: the exhaustive search's forced prefix, and the
 * fault sites (exhaustive explores each in turn from sites[fidx]; random and pct pick one). */
typedef struct search_pos {
    int dfs_prefix[PGR_MAX_GRANTS];
    bool dfs_started;
    const pgr_fault_at *sites;
    int nsites, fidx;
} search_pos;

/* Exhaustive: set x up for the next schedule of the depth-first search; false when the
 * whole space (every fault site's) was explored. */
static bool dfs_next(explorer *x, search_pos *sp)
{
    if (sp->dfs_started) {
        /* backtrack to the deepest decision with an untried, awake choice */
        int d = x->nstack - 1;
        for (; d >= 0; d--) {
            node *nd = &x->stack[d];
            uint64_t alt = nd->ready & ~nd->sleep & ~nd->done;
            if (alt) {
                nd->chosen = pgr_sched_lowest(alt);
                nd->done |= 1ULL << nd->chosen;
                break;
            }
        }
        if (d < 0 && sp->fidx + 1 < sp->nsites) {           /* the next fault site, afresh */
            x->fat = sp->sites[++sp->fidx];
            sp->dfs_started = false;
        } else if (d < 0) {
            return false;
        } else {
            x->nstack = d + 1;
            for (int i = 0; i <= d; i++) sp->dfs_prefix[i] = x->stack[i].chosen;
            x->forced = sp->dfs_prefix;
            x->nforced = d + 1;
        }
    }
    if (!sp->dfs_started) {
        x->nstack = 0;
        x->forced = NULL;
        x->nforced = 0;
        sp->dfs_started = true;
    }
    return true;
}

/* Run nb schedules on a fresh batch of trials, check them, and keep the first failing run of
 * each broken invariant in fails. 0 (*finished when the exhaustive search is complete), or
 * -1 with res->error. */
static int run_batch(explorer *x, const pgr_explore_opts *o, int kase, int nb, long long *trial_no,
                     search_pos *sp, sched_run *runs, sched_run *fails, bool *have_fail, bool *finished,
                     pgr_result *res)
{
    pgr_batch b;
    if (pgr_pool_prepare(x->pool, *trial_no, nb, kase, &b, res) != 0) return -1;
    *trial_no += nb;
    int ran = 0;
    for (; ran < nb; ran++) {
        if (o->strategy == PGR_EXHAUSTIVE) {
            if (!dfs_next(x, sp)) {
                *finished = true;
                res->ex.complete = true;
                break;
            }
        } else if (sp->nsites > 0) {
            x->fat = sp->sites[pgr_sched_rnd(x) % (uint64_t)sp->nsites];
        }
        sched_run *sr = &runs[ran];
        if (pgr_sched_run(x, &b.trials[ran], sr, res) != 0) return -1;
        x->forced = NULL;
        x->nforced = 0;
        if (o->strategy == PGR_EXHAUSTIVE && sr->pruned) res->ex.pruned++;
        if (sr->n > res->ex.max_steps) res->ex.max_steps = sr->n;
        if (sr->n > x->k_estimate) x->k_estimate = sr->n;
        pgr_account_trial(res, &b.trials[ran]);
        res->ex.schedules++;
        res->trials++;
        if (o->interrupted && *o->interrupted) { ran++; break; }
        if (o->deadline_ns > 0 && pgr_now_ns() >= o->deadline_ns) {      /* the run's budget */
            ran++;
            *finished = true;
            if (o->strategy == PGR_EXHAUSTIVE && !dfs_next(x, sp)) res->ex.complete = true;   /* was it the last? */
            x->forced = NULL;
            x->nforced = 0;
            res->budget_short = !res->ex.complete;
            break;
        }
    }
    if (pgr_pool_check(x->pool, &b, ran, res) != 0) return -1;
    for (int i = 0; i < ran; i++) {
        pgr_trial *t = &b.trials[i];
        if (!t->violated) continue;
        if (!res->ex.first_violation) res->ex.first_violation = res->ex.schedules - ran + i + 1;
        int slot = inv_slot(t->first_invariant);
        if (slot >= 0 && slot < PGR_MAX_INV && !have_fail[slot]) { have_fail[slot] = true; fails[slot] = runs[i]; }
    }
    return 0;
}

/* Minimize, explain and save the failing schedules kept per invariant (at most o->max_saves,
 * duplicates skipped); the first saved becomes the result's minimal counterexample.
 * 0, or -1 with res->error. */
static int save_failures(explorer *x, const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                         const pgr_explore_opts *o, int kase, const sched_run *fails, const bool *have_fail,
                         sched_run *minrun, long long *trial_no, pgr_result *res)
{
    bool faults = o->fault.kind != PGR_FAULT_NONE;
    int saves = 0;
    char seen[8][PGR_MAX_GRANTS * 3];
    int nseen = 0;
    /* Minimize one failing schedule per broken invariant, the scenario's first invariant
     * first (it is the race the seed is about), and save the distinct ones. */
    for (int slot = 0; slot < PGR_MAX_INV && saves < (o->max_saves > 0 ? o->max_saves : 5); slot++) {
        if (!have_fail[slot]) continue;
        {
            int inv = slot_inv(slot);
            sched_run failing = fails[slot];
            x->fat = failing.fat;               /* the fault fires where it did */
            /* fewer sessions first: drop one session's statements, re-run on a pool one
             * session smaller, keep it while the same invariant still breaks */
            explorer *mx = x;
            while (mx->n > 2 && !faults) {
                explorer *smaller = pgr_sched_fewer_sessions(mx, dsn, sc, v, o->iso, &failing, kase, inv, trial_no);
                if (!smaller) break;
                if (mx != x) { pgr_result sink; memset(&sink, 0, sizeof sink); pgr_explorer_close(mx, &sink); pgr_explorer_free(mx); }
                mx = smaller;
            }
            pgr_trial *mt = pgr_sched_minimize(mx, &failing, kase, inv, trial_no, res, minrun);
            if (res->error[0]) goto out_mx;
            if (!mt) {
                /* no shorter prefix broke the same invariant: keep the schedule as found,
                 * re-run on a fresh trial (the batch's trial slots were reused meanwhile) */
                if (pgr_sched_run_forced(mx, failing.grants, failing.n, kase, (*trial_no)++, res, &mt, minrun) != 0) goto out_mx;
                if (!mt->violated) goto next_mx;
            }
            char key[PGR_MAX_GRANTS * 3];
            size_t ko = 0;
            for (int g = 0; g < minrun->n; g++) ko += (size_t)snprintf(key + ko, sizeof key - ko, "%d ", minrun->grants[g]);
            bool dup = false;
            for (int k = 0; k < nseen; k++) dup |= strcmp(seen[k], key) == 0;
            if (dup) goto next_mx;
            if (nseen < 8) snprintf(seen[nseen++], sizeof seen[0], "%s", key);
            char table[8192];
            pgr_sched_describe(mt, minrun, table, sizeof table);
            if (saves == 0) {
                mt->why[sizeof mt->why - 1] = '\0';
                char order[400], why[sizeof mt->why];
                pgr_sched_explain_order(mt, minrun, order, sizeof order);
                if (order[0]) {
                    snprintf(why, sizeof why, "%s; then %s", order, mt->why);
                    snprintf(mt->why, sizeof mt->why, "%s", why);
                }
                pgr_result_lead_counterexample(res, mt);
                snprintf(res->ex.minimal, sizeof res->ex.minimal, "%s", table);
                res->ex.minimal_sessions = mt->nsessions;
                res->ex.minimal_steps = minrun->n;
                res->ex.minimal_switches = pgr_sched_count_switches(minrun);
            }
            if (o->save_dir && res->ex.nsaved < PGR_MAX_SAVED) {
                char *path = res->ex.saved[res->ex.nsaved];
                snprintf(path, sizeof res->ex.saved[0], "%s/%s-%s-%s-%d.schedule", o->save_dir, sc->name, v->name,
                         pgr_isolation_name(o->iso), res->ex.nsaved + 1);
                if (pgr_schedule_write(path, sc, v, o->iso, mt, minrun, table) != 0) {
                    snprintf(res->error, sizeof res->error, "cannot write %s: %s", path, strerror(errno));
                    goto out_mx;
                }
                res->ex.nsaved++;
            }
            saves++;
        next_mx:
        out_mx:
            if (mx != x) { pgr_result sink; memset(&sink, 0, sizeof sink); pgr_explorer_close(mx, &sink); pgr_explorer_free(mx); }
            if (res->error[0]) return -1;
        }
    }
    return 0;
}

int pgr_explore(const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                const pgr_explore_opts *o, pgr_result *res)
{
    pgr_result_init(res, sc, v, o->iso, o->sessions, PGR_MODE_EXPLORE);
    if (v->explore_blind[o->iso]) res->expected = PGR_SAFE;
    bool faults = o->fault.kind != PGR_FAULT_NONE;
    if (faults) {                /* concurrency's verdict (from 2 sessions on) or the fault's */
        res->fault = o->fault;
        if (o->sessions < 2) res->expected = PGR_SAFE;
        if (v->fault_expect[o->fault.kind] == PGR_RACE) res->expected = PGR_RACE;
    }
    static const char *const names[] = { "exhaustive", "random", "pct" };
    res->ex.strategy = names[o->strategy];
    res->ex.seed = o->seed;
    res->ex.depth = o->depth;
    int kase = o->force_case >= 0 ? o->force_case : 0;
    long long cap = o->max_schedules > 0 ? o->max_schedules : (o->strategy == PGR_EXHAUSTIVE ? 100000 : 1000);

    explorer *x = pgr_explorer_new(o->interrupted);
    if (!x) { snprintf(res->error, sizeof res->error, "out of memory"); return -1; }
    x->strategy = o->strategy;
    x->step_timeout_s = o->step_timeout_s;
    x->depth = o->depth > 0 ? o->depth : 2;
    if (x->depth > 8) x->depth = 8;
    x->rng ^= o->seed * 0xD1B54A32D192ED03ULL + 1;
    int64_t t_open = pgr_now_ns();
    if (pgr_explorer_open(x, dsn, sc, v, o->sessions, o->iso, faults ? &o->fault : NULL, res) != 0) {
        pgr_explorer_close(x, res);
        pgr_explorer_free(x);
        return -1;
    }
    pgr_explore_opts shifted = *o;        /* setup aside: an application's start-up is not the cell's time */
    if (shifted.deadline_ns > 0) shifted.deadline_ns += pgr_now_ns() - t_open;
    o = &shifted;

    sched_run *runs = calloc(PGR_MAX_BATCH, sizeof *runs);
    sched_run *fails = calloc(PGR_MAX_INV, sizeof *fails);
    bool have_fail[PGR_MAX_INV] = { false };
    sched_run *minrun = calloc(1, sizeof *minrun);
    int rc = -1;
    long long trial_no = 0;
    int64_t t_start = pgr_now_ns(), next_progress = t_start + (int64_t)(o->progress_s * 1e9);
    if (!runs || !minrun || !fails) { snprintf(res->error, sizeof res->error, "out of memory"); goto out; }
    if (o->save_dir && mkdir(o->save_dir, 0755) != 0 && errno != EEXIST) {
        snprintf(res->error, sizeof res->error, "cannot create %s: %s", o->save_dir, strerror(errno));
        goto out;
    }
    bool finished = false;
    /* with a fault: every schedule fires it at one site; exhaustive explores every site's
     * interleavings in turn, random and pct pick a site per schedule */
    static pgr_fault_at sites[PGR_MAX_SESSIONS * PGR_MAX_STEPS * 2];
    search_pos pos = { .dfs_started = false, .sites = sites, .nsites = 0, .fidx = 0 };
    x->fat = (pgr_fault_at){ .session = -1 };
    if (faults) {
        pos.nsites = fault_sites(x, kase, &trial_no, res, sites, (int)(sizeof sites / sizeof sites[0]));
        if (pos.nsites < 0) goto out;
        if (pos.nsites > 0) x->fat = sites[0];
    }
    while (!finished && res->ex.schedules < cap) {
        int nb = 64;
        if (cap - res->ex.schedules < nb) nb = (int)(cap - res->ex.schedules);
        if (run_batch(x, o, kase, nb, &trial_no, &pos, runs, fails, have_fail, &finished, res) != 0) goto out;
        int64_t now = pgr_now_ns();
        if (o->progress_s > 0 && !o->quiet && now >= next_progress) {
            fprintf(stderr, "\r%s/%s %s: %lld schedules, %lld violating   ", sc->name, v->name, res->ex.strategy,
                    res->ex.schedules, res->tally.violated_trials);
            next_progress = now + (int64_t)(o->progress_s * 1e9);
        }
        if (o->interrupted && *o->interrupted) { snprintf(res->error, sizeof res->error, "interrupted"); goto out; }
    }
    if (save_failures(x, dsn, sc, v, o, kase, fails, have_fail, minrun, &trial_no, res) != 0) goto out;
    rc = 0;
out:
    res->seconds = (double)(pgr_now_ns() - t_start) / 1e9;
    if (o->progress_s > 0 && !o->quiet && res->seconds > o->progress_s) fprintf(stderr, "\n");
    if (o->strategy == PGR_PCT) {
        double k = res->ex.max_steps > 0 ? res->ex.max_steps : 1, b = 1.0 / o->sessions;
        for (int i = 1; i < x->depth; i++) b /= k;
        res->ex.pct_bound = b;
        res->ex.depth = x->depth;
    }
    pgr_explorer_close(x, res);
    pgr_explorer_free(x);
    free(runs);
    free(fails);
    free(minrun);
    res->verdict = res->tally.violated_trials > 0 ? PGR_RACE : PGR_SAFE;
    return rc;
}
