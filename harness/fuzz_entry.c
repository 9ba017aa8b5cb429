/*
 * fuzz_entry.c — the fuzzers' entry: one schedule whose every decision comes from input
 * bytes (pgr_fuzz_one), on gated pools kept per (variant, isolation, sessions, fault).
 *
 * Trials are prepared and checked in batches, as stress does: each pool prepares a batch
 * of trials whose cases take turns (an input picks its own case, so every case has its
 * share), an input runs on the next unused trial of its case, and the invariants of the
 * inputs run so far are checked together once `batch` inputs have run (or a pool's batch
 * is used up, or a pool is evicted, or the fuzzer stops). A violation is reported with
 * the input that caused it: its bytes, schedule and explanation are kept until checked.
 * With batch 1 every input is checked before pgr_fuzz_one returns.
 */
#include "intern.h"
#include "scheduler.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_POOLS 48          /* every recommended target x level x 2-3 sessions: 42 */

typedef struct fuzz_pool {
    explorer *x;
    const pgr_scenario *sc;
    const pgr_variant *v;
    pgr_isolation iso;
    int n;
    long long next_trial;
    long long used;                 /* last use, for eviction */
    pgr_batch b;                    /* the prepared batch; b.ntrials 0: none */
    int *cursor;                    /* [ncases] the next unused trial of each case */
} fuzz_pool;

typedef struct pending {            /* an input run, not yet checked */
    int slot, idx;                  /* its pool and trial */
    int kase, sessions;
    long long execution;            /* 1-based, among this fuzzer's inputs */
    uint8_t *bytes;                 /* the whole input, for the artifact (kept across inputs:
                                     * an allocation that outlives an input makes libFuzzer
                                     * scan for leaks after it) */
    size_t nbytes, cap;
    char save_path[4352];           /* "" none */
    sched_run run;
} pending;

struct pgr_fuzzer {
    char dsn[4096];
    fuzz_pool pool[FUZZ_POOLS];
    long long clock, executions;
    long long ran;                  /* the input being run, once its schedule has run; 0 before:
                                     * a check made while an input is still to run (its pool's
                                     * batch used up, or a pool evicted) finds earlier inputs only */
    int batch;
    pending *pend;                  /* [PGR_MAX_BATCH] */
    int npend;
    pending reported;               /* the input last reported */
};

pgr_fuzzer *pgr_fuzzer_new(const char *dsn)
{
    pgr_fuzzer *fz = calloc(1, sizeof *fz);
    if (!fz) return NULL;
    fz->pend = calloc(PGR_MAX_BATCH, sizeof *fz->pend);
    if (!fz->pend) { free(fz); return NULL; }
    snprintf(fz->dsn, sizeof fz->dsn, "%s", dsn);
    fz->batch = 64;
    return fz;
}

void pgr_fuzzer_set_batch(pgr_fuzzer *fz, int n)
{
    fz->batch = n < 1 ? 1 : n > PGR_MAX_BATCH ? PGR_MAX_BATCH : n;
}

static void close_pool(fuzz_pool *p)
{
    if (!p->x) return;
    pgr_result sink;
    memset(&sink, 0, sizeof sink);
    pgr_explorer_close(p->x, &sink);
    pgr_explorer_free(p->x);
    free(p->cursor);
    memset(p, 0, sizeof *p);
}

void pgr_fuzzer_free(pgr_fuzzer *fz)
{
    if (!fz) return;
    for (int i = 0; i < FUZZ_POOLS; i++) close_pool(&fz->pool[i]);
    for (int i = 0; i < PGR_MAX_BATCH; i++) free(fz->pend[i].bytes);
    free(fz->pend);
    free(fz->reported.bytes);
    free(fz);
}

/* The violation of pending input p, into out (its schedule file written). 0, or -1 + err. */
static int report(pgr_fuzzer *fz, pending *p, pgr_fuzz_outcome *out, char *err, size_t errlen)
{
    fuzz_pool *fp = &fz->pool[p->slot];
    const pgr_trial *t = &fp->b.trials[p->idx];
    out->violated = true;
    out->earlier = p->execution != fz->ran;
    out->execution = p->execution;
    out->sc = fp->sc;
    out->v = fp->v;
    out->iso = fp->iso;
    out->sessions = p->sessions;
    out->kase = p->kase;
    out->invariant = t->first_invariant;
    char order[400];
    pgr_sched_explain_order(t, &p->run, order, sizeof order);
    snprintf(out->why, sizeof out->why, "%s%s%s", order, order[0] ? "; then " : "", t->why);
    pgr_sched_describe(t, &p->run, out->table, sizeof out->table);
    /* kept for the caller until the next report: the buffers change places */
    uint8_t *spare = fz->reported.bytes;
    size_t spare_cap = fz->reported.cap;
    fz->reported.bytes = p->bytes;
    fz->reported.cap = p->cap;
    fz->reported.nbytes = p->nbytes;
    snprintf(fz->reported.save_path, sizeof fz->reported.save_path, "%s", p->save_path);
    p->bytes = spare;
    p->cap = spare_cap;
    out->input = fz->reported.bytes;
    out->ninput = fz->reported.nbytes;
    out->path = fz->reported.save_path[0] ? fz->reported.save_path : NULL;
    if (out->path && pgr_schedule_write(out->path, fp->sc, fp->v, fp->iso, t, &p->run, out->table) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", out->path, strerror(errno));
        return -1;
    }
    return 0;
}

int pgr_fuzz_flush(pgr_fuzzer *fz, pgr_fuzz_outcome *out, char *err, size_t errlen)
{
    int rc = 0;
    /* one check per pool, over the span of its trials that ran (trials between them that did
     * not run are checked too, and their verdicts ignored: a check only reads) */
    for (int s = 0; s < FUZZ_POOLS && rc == 0; s++) {
        int lo = -1, hi = -1;
        for (int i = 0; i < fz->npend; i++)
            if (fz->pend[i].slot == s) {
                if (lo < 0 || fz->pend[i].idx < lo) lo = fz->pend[i].idx;
                if (fz->pend[i].idx > hi) hi = fz->pend[i].idx;
            }
        if (lo < 0) continue;
        fuzz_pool *fp = &fz->pool[s];
        pgr_result res;
        pgr_result_init(&res, fp->sc, fp->v, fp->iso, fp->n, PGR_MODE_FUZZ);
        pgr_batch b = fp->b;
        b.trials = &fp->b.trials[lo];
        b.key_lo = fp->b.trials[lo].key;
        b.tally = &res.tally;
        if (pgr_pool_check(fp->x->pool, &b, hi - lo + 1, &res) != 0) {
            snprintf(err, errlen, "%s", res.error);
            rc = -1;
        }
        pgr_result_free(&res);
    }
    for (int i = 0; i < fz->npend; i++) {
        pending *p = &fz->pend[i];
        if (rc == 0 && !out->violated && fz->pool[p->slot].b.trials[p->idx].violated) rc = report(fz, p, out, err, errlen);
    }
    fz->npend = 0;
    return rc;
}

static uint32_t mix(uint32_t h, uint32_t v)
{
    h ^= v + 0x9E3779B9u + (h << 6) + (h >> 2);
    return h;
}

/* The pool for (variant, isolation, sessions, fault), opened (evicting the least recently
 * used) when there is none. Its slot, or -1 + err. */
static int pool_for(pgr_fuzzer *fz, const pgr_fuzz_input *in, pgr_fuzz_outcome *out, char *err, size_t errlen)
{
    pgr_fault_kind fk = in->fault ? in->fault->fault.kind : PGR_FAULT_NONE;
    int victim = 0;
    for (int i = 0; i < FUZZ_POOLS; i++) {
        fuzz_pool *p = &fz->pool[i];
        if (p->x && p->v == in->v && p->iso == in->iso && p->n == in->sessions && p->x->fault.kind == fk &&
            (!in->fault || strcmp(p->x->fault.step, in->fault->fault.step) == 0))
            return i;
        if (p->used < fz->pool[victim].used) victim = i;
    }
    if (fz->pool[victim].x) {
        if (pgr_fuzz_flush(fz, out, err, errlen) != 0) return -1;     /* its trials go with it */
        close_pool(&fz->pool[victim]);
    }
    pgr_result res;
    pgr_result_init(&res, in->sc, in->v, in->iso, in->sessions, PGR_MODE_FUZZ);
    explorer *x = pgr_explorer_new(NULL);
    int *cursor = calloc((size_t)in->sc->ncases, sizeof *cursor);
    bool ok = x && cursor &&
              pgr_explorer_open(x, fz->dsn, in->sc, in->v, in->sessions, in->iso, in->fault ? &in->fault->fault : NULL,
                                &res) == 0;
    if (!ok) {
        snprintf(err, errlen, "%s", res.error[0] ? res.error : "out of memory");
        if (x) { pgr_explorer_close(x, &res); pgr_explorer_free(x); }
        free(cursor);
        pgr_result_free(&res);
        return -1;
    }
    pgr_result_free(&res);
    fz->pool[victim] = (fuzz_pool){ .x = x, .sc = in->sc, .v = in->v, .iso = in->iso, .n = in->sessions, .cursor = cursor };
    return victim;
}

/* The next unused trial of case kase in the pool's batch, preparing a new batch (after
 * checking what ran on the old one) when it has none. Its index, or -1 + err. */
static int trial_for(pgr_fuzzer *fz, int slot, int kase, pgr_fuzz_outcome *out, char *err, size_t errlen)
{
    fuzz_pool *fp = &fz->pool[slot];
    int ncases = fp->sc->ncases;
    if (fp->b.ntrials > 0 && fp->cursor[kase] < fp->b.ntrials) {
        int idx = fp->cursor[kase];
        fp->cursor[kase] += ncases > PGR_MAX_BATCH ? PGR_MAX_BATCH : ncases;
        return idx;
    }
    if (pgr_fuzz_flush(fz, out, err, errlen) != 0) return -1;
    pgr_result res;
    pgr_result_init(&res, fp->sc, fp->v, fp->iso, fp->n, PGR_MODE_FUZZ);
    /* `batch` trials of each case, in turn; a scenario with more cases than a batch holds
     * gets one trial of the input's case at a time */
    int per = fz->batch, n, force = PGR_CASES_IN_TURN;
    if (ncases > PGR_MAX_BATCH) {
        n = 1;
        force = kase;
    } else {
        if (per * ncases > PGR_MAX_BATCH) per = PGR_MAX_BATCH / ncases;
        n = per * ncases;
    }
    int rc = pgr_pool_prepare(fp->x->pool, fp->next_trial, n, force, &fp->b, &res);
    if (rc != 0) {
        snprintf(err, errlen, "%s", res.error);
        fp->b.ntrials = 0;
    }
    pgr_result_free(&res);
    if (rc != 0) return -1;
    fp->next_trial += n;
    for (int c = 0; c < ncases; c++) fp->cursor[c] = force == PGR_CASES_IN_TURN ? c : n;
    if (force != PGR_CASES_IN_TURN) fp->cursor[kase] = 0;
    return trial_for(fz, slot, kase, out, err, errlen);
}

int pgr_fuzz_one(pgr_fuzzer *fz, const pgr_fuzz_input *in, pgr_fuzz_outcome *out, char *err, size_t errlen)
{
    pgr_fault_kind fk = in->fault ? in->fault->fault.kind : PGR_FAULT_NONE;
    memset(out, 0, sizeof *out);
    fz->clock++;
    fz->ran = 0;
    int slot = pool_for(fz, in, out, err, errlen);
    if (slot < 0) return -1;
    fuzz_pool *fp = &fz->pool[slot];
    fp->used = fz->clock;
    int idx = trial_for(fz, slot, in->kase, out, err, errlen);
    if (idx < 0) return -1;
    explorer *x = fp->x;
    pgr_trial *t = &fp->b.trials[idx];
    t->violated = false;                 /* a span checked before may have judged it unrun */
    t->first_invariant = 0;
    t->why[0] = '\0';

    pending *p = &fz->pend[fz->npend];
    if (p->cap < in->nbytes) {
        uint8_t *nb = realloc(p->bytes, in->nbytes);
        if (!nb) { snprintf(err, errlen, "out of memory"); return -1; }
        p->bytes = nb;
        p->cap = in->nbytes;
    }
    if (in->nbytes) memcpy(p->bytes, in->bytes, in->nbytes);
    p->nbytes = in->nbytes;
    p->slot = slot;
    p->idx = idx;
    p->kase = in->kase;
    p->sessions = in->sessions;
    p->execution = ++fz->executions;
    snprintf(p->save_path, sizeof p->save_path, "%s", in->save_path ? in->save_path : "");
    pgr_result res;
    pgr_result_init(&res, in->sc, in->v, in->iso, in->sessions, PGR_MODE_FUZZ);
    x->bytes = in->choices;
    x->nbytes = in->nchoices;
    x->tail_seed = pgr_bytes_hash(in->bytes, in->nbytes) | 1;
    /* half the inputs run PCT past their bytes (depth 2-4, change points within 8-39
     * steps, all from the input's hash): a race that needs a session to run long stretches
     * between two preemptions is rare in uniform choices and PCT's kind of schedule */
    x->tail_pct = (x->tail_seed >> 1 & 1) != 0;
    if (x->tail_pct) {
        x->rng = x->tail_seed ^ 0x2545F4914F6CDD1DULL;
        x->depth = 2 + (int)(x->tail_seed >> 8 & 0xFFFF) % 3;
        x->k_estimate = 8 + (int)(x->tail_seed >> 24 & 0xFFFF) % 32;
    }
    x->fat = fk != PGR_FAULT_NONE && in->fault->session < in->sessions ? *in->fault : (pgr_fault_at){ .session = -1 };
    sched_run *sr = &p->run;
    int rc = pgr_sched_run(x, t, sr, &res);
    x->bytes = NULL;
    x->nbytes = 0;
    x->tail_seed = 0;
    x->tail_pct = false;
    if (rc != 0) {
        snprintf(err, errlen, "%s", res.error);
        pgr_result_free(&res);
        return -1;
    }
    pgr_result_free(&res);
    fz->npend++;
    fz->ran = p->execution;
    /* the interleaving signal: each step's outcome, each switch between sessions, and each
     * two switches in a row (a two-preemption pattern: pairs alone saturate within a few
     * inputs, each pair having two orders, and left nothing to guide towards deeper races) */
    uint32_t last_switch = 0;
    for (int g = 0; g < sr->n && out->nsignal < PGR_MAX_GRANTS; g++) {
        int s, sp;
        const pgr_step *st = pgr_sched_step_of(t, sr, g, &s);
        uint32_t h = mix(mix(0x1234567u, (uint32_t)(in->v - in->sc->variants) * 31u + (uint32_t)in->iso), (uint32_t)s);
        if (st) h = mix(mix(mix(h, (uint32_t)pgr_text_hash(st->label)), (uint32_t)st->rows), (uint32_t)st->sqlstate[1]);
        if (g > 0 && sr->grants[g - 1] != s) {
            const pgr_step *prev = pgr_sched_step_of(t, sr, g - 1, &sp);
            h = mix(mix(h, 0xABCDu + (uint32_t)sp), prev ? (uint32_t)pgr_text_hash(prev->label) : 0u);
            if (last_switch && out->nsignal + 1 < PGR_MAX_GRANTS) out->signal[out->nsignal++] = mix(last_switch, h);
            last_switch = h;
        }
        if (sr->waited[g]) h = mix(h, 0x5151u);
        out->signal[out->nsignal++] = h;
    }
    if (fz->npend >= fz->batch) return pgr_fuzz_flush(fz, out, err, errlen);
    return 0;
}
