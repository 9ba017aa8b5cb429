/*
 * fuzz_entry.c — the fuzzers' entry: one schedule whose every decision comes from input
 * bytes (pgr_fuzz_one), on gated pools kept per (variant, isolation, sessions, fault).
 */
#include "intern.h"
#include "scheduler.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_POOLS 48          /* every recommended target x level x 2-3 sessions: 42 */

struct pgr_fuzzer {
    char dsn[4096];
    struct {
        explorer *x;
        const pgr_variant *v;
        pgr_isolation iso;
        int n;
        long long next_trial;
        long long used;                 /* last use, for eviction */
    } pool[FUZZ_POOLS];
    long long clock;
    sched_run run;
};

pgr_fuzzer *pgr_fuzzer_new(const char *dsn)
{
    pgr_fuzzer *fz = calloc(1, sizeof *fz);
    if (fz) snprintf(fz->dsn, sizeof fz->dsn, "%s", dsn);
    return fz;
}

void pgr_fuzzer_free(pgr_fuzzer *fz)
{
    if (!fz) return;
    for (int i = 0; i < FUZZ_POOLS; i++)
        if (fz->pool[i].x) {
            pgr_result sink;
            memset(&sink, 0, sizeof sink);
            pgr_explorer_close(fz->pool[i].x, &sink);
            pgr_explorer_free(fz->pool[i].x);
        }
    free(fz);
}

static uint32_t mix(uint32_t h, uint32_t v)
{
    h ^= v + 0x9E3779B9u + (h << 6) + (h >> 2);
    return h;
}

int pgr_fuzz_one(pgr_fuzzer *fz, const pgr_scenario *sc, const pgr_variant *v, pgr_isolation iso,
                 int sessions, int kase, const pgr_fault_at *fault, const uint8_t *choices, size_t nchoices,
                 const char *save_path, pgr_fuzz_outcome *out, char *err, size_t errlen)
{
    pgr_fault_kind fk = fault ? fault->fault.kind : PGR_FAULT_NONE;
    memset(out, 0, sizeof *out);
    fz->clock++;
    int slot = -1, victim = 0;
    for (int i = 0; i < FUZZ_POOLS; i++) {
        if (fz->pool[i].x && fz->pool[i].v == v && fz->pool[i].iso == iso && fz->pool[i].n == sessions &&
            fz->pool[i].x->fault.kind == fk && (!fault || strcmp(fz->pool[i].x->fault.step, fault->fault.step) == 0))
            slot = i;
        if (fz->pool[i].used < fz->pool[victim].used) victim = i;
    }
    pgr_result res;
    pgr_result_init(&res, sc, v, iso, sessions, PGR_MODE_FUZZ);
    if (slot < 0) {
        slot = victim;
        if (fz->pool[slot].x) {
            pgr_result sink;
            memset(&sink, 0, sizeof sink);
            pgr_explorer_close(fz->pool[slot].x, &sink);
            pgr_explorer_free(fz->pool[slot].x);
            fz->pool[slot].x = NULL;
        }
        explorer *x = pgr_explorer_new(NULL);
        if (!x || pgr_explorer_open_opts(x, fz->dsn, sc, v, sessions, iso, true, fault ? &fault->fault : NULL, &res) != 0) {
            snprintf(err, errlen, "%s", res.error[0] ? res.error : "out of memory");
            if (x) { pgr_explorer_close(x, &res); pgr_explorer_free(x); }
            return -1;
        }
        fz->pool[slot].x = x;
        fz->pool[slot].v = v;
        fz->pool[slot].iso = iso;
        fz->pool[slot].n = sessions;
        fz->pool[slot].next_trial = 0;
    }
    fz->pool[slot].used = fz->clock;
    explorer *x = fz->pool[slot].x;

    pgr_batch b;
    if (pgr_pool_prepare(x->pool, fz->pool[slot].next_trial++, 1, kase, &b, &res) != 0) {
        snprintf(err, errlen, "%s", res.error);
        return -1;
    }
    x->bytes = choices;
    x->nbytes = nchoices;
    x->fat = fault && fk != PGR_FAULT_NONE && fault->session < sessions ? *fault : (pgr_fault_at){ .session = -1 };
    sched_run *sr = &fz->run;
    int rc = pgr_sched_run(x, &b.trials[0], sr, &res);
    x->bytes = NULL;
    x->nbytes = 0;
    if (rc != 0 || pgr_pool_check(x->pool, &b, 1, &res) != 0) {
        snprintf(err, errlen, "%s", res.error);
        pgr_result_free(&res);
        return -1;
    }
    pgr_trial *t = &b.trials[0];
    /* the interleaving signal: each step's outcome, and each switch between sessions */
    for (int g = 0; g < sr->n && out->nsignal < PGR_MAX_GRANTS; g++) {
        int s, sp;
        const pgr_step *st = pgr_sched_step_of(t, sr, g, &s);
        uint32_t h = mix(mix(0x1234567u, (uint32_t)(v - sc->variants) * 31u + (uint32_t)iso), (uint32_t)s);
        if (st) h = mix(mix(mix(h, (uint32_t)pgr_text_hash(st->label)), (uint32_t)st->rows), (uint32_t)st->sqlstate[1]);
        if (g > 0 && sr->grants[g - 1] != s) {
            const pgr_step *prev = pgr_sched_step_of(t, sr, g - 1, &sp);
            h = mix(mix(h, 0xABCDu + (uint32_t)sp), prev ? (uint32_t)pgr_text_hash(prev->label) : 0u);
        }
        if (sr->waited[g]) h = mix(h, 0x5151u);
        out->signal[out->nsignal++] = h;
    }
    out->violated = t->violated;
    if (t->violated) {
        out->invariant = t->first_invariant;
        char order[400];
        pgr_sched_explain_order(t, sr, order, sizeof order);
        snprintf(out->why, sizeof out->why, "%s%s%s", order, order[0] ? "; then " : "", t->why);
        pgr_sched_describe(t, sr, out->table, sizeof out->table);
        if (save_path && pgr_schedule_write(save_path, sc, v, iso, t, sr, out->table) != 0) {
            snprintf(err, errlen, "cannot write %s: %s", save_path, strerror(errno));
            pgr_result_free(&res);
            return -1;
        }
    }
    pgr_result_free(&res);
    return 0;
}
