/*
 * replay.c — pgr_replay_load: schedule files read and checked, before any server; pgr_replay:
 * re-run them on fresh trials and say whether each reproduced, or where it diverged.
 */
#include "scheduler.h"
#include "spec_scenario.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pgr_replay_set {
    char **files;
    int n;
    sched_file *sfs;
};

pgr_replay_set *pgr_replay_load(char **files, int nfiles, bool quiet)
{
    pgr_replay_set *set = calloc(1, sizeof *set);
    sched_file *sfs = calloc((size_t)nfiles, sizeof *sfs);
    if (!set || !sfs) { free(set); free(sfs); fprintf(stderr, "pgrace: out of memory\n"); return NULL; }
    *set = (pgr_replay_set){ files, nfiles, sfs };
    for (int i = 0; i < nfiles; i++) {
        char err[PGR_ERRLEN];
        if (pgr_schedule_read(files[i], &sfs[i], err, sizeof err) != 0) {
            fprintf(stderr, "pgrace: %s\n", err);
            goto fail;
        }
        if (sfs[i].client[0] && !pgr_find_scenario(sfs[i].scenario)) {
            /* a program's schedule: the spec with that program as the variant the file names */
            static char named[1100];
            snprintf(named, sizeof named, "%s=%s", sfs[i].variant, sfs[i].client);
            const char *one[1] = { named };
            if (pgr_spec_set_clients(one, 1, err, sizeof err) != 0) {
                fprintf(stderr, "pgrace: %s: %s\n", files[i], err);
                goto fail;
            }
        }
        const pgr_scenario *sc = pgr_find_scenario(sfs[i].scenario);
        if (!sc && sfs[i].spec[0] && pgr_spec_target(sfs[i].spec, &sc, err, sizeof err) != 0) {
            fprintf(stderr, "pgrace: %s: %s\n", files[i], err);
            goto fail;
        }
        if (sc && sfs[i].spec[0] && pgr_spec_of(sc) && pgr_spec_of(sc)->hash != sfs[i].spec_hash && !quiet)
            fprintf(stderr, "pgrace: %s: the spec %s changed since this schedule was saved; replaying it against the "
                    "spec as it is now\n", files[i], sfs[i].spec);
        if (sc && strcmp(sc->name, sfs[i].scenario) != 0) sc = NULL;
        if (!sc) {
            fprintf(stderr, "pgrace: %s: unknown scenario '%s'\n", files[i], sfs[i].scenario);
            goto fail;
        }
        bool v = false, kase = false;
        for (int j = 0; j < sc->nvariants; j++) v |= strcmp(sc->variants[j].name, sfs[i].variant) == 0;
        for (int j = 0; j < sc->ncases; j++) kase |= strcmp(sc->cases[j].name, sfs[i].kase) == 0;
        if (!v || !kase) {
            fprintf(stderr, "pgrace: %s: unknown %s '%s'\n", files[i], !v ? "variant" : "case", !v ? sfs[i].variant : sfs[i].kase);
            goto fail;
        }
    }
    return set;
fail:
    pgr_replay_free(set);
    return NULL;
}

void pgr_replay_free(pgr_replay_set *set)
{
    if (!set) return;
    free(set->sfs);
    free(set);
}

int pgr_replay(const char *dsn, const pgr_replay_set *set, int repeat, bool quiet, volatile int *interrupted)
{
    char **files = set->files;
    int nfiles = set->n;
    sched_file *sfs = set->sfs;
    int status = 0;
    for (int i = 0; i < nfiles && status != 2; i++) {
        sched_file *sf = &sfs[i];
        const pgr_scenario *sc = pgr_find_scenario(sf->scenario);
        const pgr_variant *v = NULL;
        int kase = -1;
        for (int j = 0; j < sc->nvariants; j++) if (strcmp(sc->variants[j].name, sf->variant) == 0) v = &sc->variants[j];
        for (int j = 0; j < sc->ncases; j++) if (strcmp(sc->cases[j].name, sf->kase) == 0) kase = j;
        pgr_result res;
        pgr_result_init(&res, sc, v, sf->iso, sf->sessions, PGR_MODE_REPLAY);
        explorer *x = pgr_explorer_new(interrupted);
        if (!x || pgr_explorer_open(x, dsn, sc, v, sf->sessions, sf->iso, &sf->fat.fault, &res) != 0) {
            fprintf(stderr, "pgrace: %s\n", res.error[0] ? res.error : "out of memory");
            if (x) { pgr_explorer_close(x, &res); pgr_explorer_free(x); }
            status = 2;
            break;
        }
        x->fat = sf->fat;
        sched_run *sr = calloc(1, sizeof *sr);
        int same = 0, diverged = 0;
        char first_diff[600] = "";
        for (int rep = 0; rep < repeat && sr; rep++) {
            pgr_trial *t;
            if (pgr_sched_run_forced(x, sf->grants, sf->ngrants, kase, rep, &res, &t, sr) != 0) { status = 2; break; }
            const char *got = t->violated ? pgr_invariant_name(sc, t->first_invariant) : "none";
            bool steps_same = sr->diverged_at < 0 && sr->n == sf->ngrants;
            if (steps_same && strcmp(got, sf->violation) == 0) { same++; continue; }
            diverged++;
            if (!first_diff[0]) {
                if (sr->diverged_at >= 0)
                    snprintf(first_diff, sizeof first_diff, "diverged at step %d: S%d was not ready to run",
                             sr->diverged_at + 1, sf->grants[sr->diverged_at] + 1);
                else if (sr->n != sf->ngrants)
                    snprintf(first_diff, sizeof first_diff, "diverged at step %d: the schedule has %d steps, the run %d",
                             (sr->n < sf->ngrants ? sr->n : sf->ngrants) + 1, sf->ngrants, sr->n);
                else
                    snprintf(first_diff, sizeof first_diff, "same steps, different outcome: recorded '%s', got '%s'",
                             sf->violation, got);
            }
        }
        if (status != 2) {
            if (diverged == 0) {
                printf("%s: reproduced (%s/%s %s, %d sessions, %d steps: %s)%s\n", files[i], sc->name, v->name,
                       pgr_isolation_name(sf->iso), sf->sessions, sf->ngrants, sf->violation,
                       repeat > 1 ? "" : "");
                if (repeat > 1) printf("  %d of %d replays identical\n", same, repeat);
            } else {
                printf("%s: NOT reproduced in %d of %d replays: %s\n", files[i], diverged, repeat, first_diff);
                status = 1;
            }
            if (!quiet && sr) {
                char table[8192];
                pgr_trial *t;
                if (pgr_sched_run_forced(x, sf->grants, sf->ngrants, kase, repeat, &res, &t, sr) == 0) {
                    pgr_sched_describe(t, sr, table, sizeof table);
                    fputs(table, stdout);
                }
            }
        } else {
            fprintf(stderr, "pgrace: %s: %s\n", files[i], res.error);
        }
        free(sr);
        pgr_explorer_close(x, &res);
        pgr_explorer_free(x);
        pgr_result_free(&res);
    }
    return status;
}
