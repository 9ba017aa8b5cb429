/*
 * cmd_run.c — `pgrace run` (the whole matrix and its reports) and `pgrace ci` (regressions
 * replayed, the matrix, new failures against a baseline).
 */
#include "app.h"
#include "explore.h"
#include "spec_scenario.h"

#include <errno.h>
#include <glob.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Cells of a results file that did not match their expectation, as "scenario/variant mode iso c=N". */
static json_t *mismatches_of(const char *path, char *err, size_t errlen)
{
    json_error_t je;
    json_t *doc = json_load_file(path, 0, &je);
    if (!doc) { snprintf(err, errlen, "cannot read %s: %s (line %d)", path, je.text, je.line); return NULL; }
    json_t *out = json_object(), *results = json_object_get(doc, "results"), *r;
    size_t i;
    if (!json_is_array(results)) {
        snprintf(err, errlen, "%s: not a pgrace results file (no 'results' array)", path);
        json_decref(doc);
        json_decref(out);
        return NULL;
    }
    json_array_foreach(results, i, r) {
        if (json_is_true(json_object_get(r, "matched"))) continue;
        char key[256];
        snprintf(key, sizeof key, "%s/%s %s %s c=%d", json_string_value(json_object_get(r, "scenario")),
                 json_string_value(json_object_get(r, "variant")), json_string_value(json_object_get(r, "mode")),
                 json_string_value(json_object_get(r, "isolation")),
                 (int)json_integer_value(json_object_get(r, "sessions")));
        json_object_set_new(out, key, json_string(json_string_value(json_object_get(r, "verdict"))));
    }
    json_decref(doc);
    return out;
}

int pgr_cmd_ci(char **targets, int ntargets)
{
    char berr[PGR_ERRLEN];
    if (pgr_cfg.baseline) {                 /* a bad baseline fails before minutes of work, not after */
        json_t *b = mismatches_of(pgr_cfg.baseline, berr, sizeof berr);
        if (!b) { fprintf(stderr, "pgrace: %s\n", berr); return 2; }
        json_decref(b);
    }
    /* 1. every saved race must still reproduce */
    const char *dir = pgr_cfg.regressions ? pgr_cfg.regressions : "fuzz/regressions";
    glob_t g;
    char pattern[PATH_MAX];
    snprintf(pattern, sizeof pattern, "%s/*.schedule", dir);
    int replay_rc = 0;
    if (glob(pattern, 0, NULL, &g) == 0) {
        pgr_replay_set *set = pgr_replay_load(g.gl_pathv, (int)g.gl_pathc, true);   /* before any server */
        char dsn[PATH_MAX + 128];
        if (!set || pgr_obtain_server(dsn, sizeof dsn) != 0) { pgr_replay_free(set); globfree(&g); return 2; }
        printf("replaying %zu regression schedule(s) from %s\n", g.gl_pathc, dir);
        replay_rc = pgr_replay(dsn, set, 1, true, &pgr_interrupted);
        pgr_replay_free(set);
        globfree(&g);
        if (replay_rc == 2) return 2;
    } else if (pgr_cfg.regressions) {
        fprintf(stderr, "pgrace: no *.schedule files in %s\n", dir);
        return 2;
    }
    /* 2. the matrix and the reports */
    int rc = pgr_cmd_run(targets, ntargets);
    if (rc == 2) return 2;
    /* 3. new failures versus known ones */
    char path[PATH_MAX], err[PGR_ERRLEN];
    snprintf(path, sizeof path, "%s/results.json", pgr_cfg.out_dir);
    json_t *now = mismatches_of(pgr_cfg.json_path ? pgr_cfg.json_path : path, err, sizeof err);
    if (!now) { fprintf(stderr, "pgrace: %s\n", err); return 2; }
    json_t *known = pgr_cfg.baseline ? mismatches_of(pgr_cfg.baseline, err, sizeof err) : json_object();
    if (!known) { json_decref(now); fprintf(stderr, "pgrace: %s\n", err); return 2; }
    const char *key;
    json_t *val;
    int fresh = 0, old = 0;
    json_object_foreach(now, key, val) {
        bool was = json_object_get(known, key) != NULL;
        printf("%s: %s (measured %s)\n", was ? "known failure" : "NEW FAILURE", key, json_string_value(val));
        was ? old++ : fresh++;
    }
    json_object_foreach(known, key, val)
        if (!json_object_get(now, key)) printf("fixed since the baseline: %s\n", key);
    printf("ci: %d new failure(s), %d known, regressions %s\n", fresh, old,
           replay_rc == 0 ? "all reproduced" : "NOT all reproduced");
    json_decref(now);
    json_decref(known);
    return (fresh > 0 || replay_rc != 0) ? 1 : 0;
}

#define FAULT_TRIALS 100   /* per fault cell; half the requests get the fault */

/* Is variant j of sc among the command's targets (all when none were given)? */
static bool wanted(const pgr_scenario *sc, int j, const pgr_scenario *const *only, const int *only_v, int ntargets)
{
    bool w = ntargets == 0;
    for (int t = 0; t < ntargets; t++) w |= only[t] == sc && (only_v[t] < 0 || only_v[t] == j);
    return w;
}

int pgr_matrix_cells(char **pos, int npos, bool faults, pgr_cell **out, int *ncells)
{
    static const int sessions[] = { 2, 8 };
    const pgr_scenario *only[64];
    int only_v[64], ntargets;
    char **targets = pgr_expand_targets(pos, npos, &ntargets);
    if (!targets) return -1;
    if (ntargets > 64) {
        fprintf(stderr, "pgrace: at most 64 targets, got %d\n", ntargets);
        free(targets);
        return -1;
    }
    for (int t = 0; t < ntargets; t++)
        if (pgr_resolve_target(targets[t], &only[t], &only_v[t]) != 0) { free(targets); return -1; }
    free(targets);
    /* a spec that models a C scenario runs beside it, variant by name: the model table */
    for (int t = 0, n0 = ntargets; t < n0; t++) {
        const pgr_spec *sp = pgr_spec_of(only[t]);
        const pgr_scenario *m = sp && sp->model ? pgr_find_scenario(sp->model) : NULL;
        for (int j = 0; m && j < m->nvariants && ntargets < 64; j++)
            for (int k = 0; k < only[t]->nvariants; k++)
                if ((only_v[t] < 0 || only_v[t] == k) && strcmp(only[t]->variants[k].name, m->variants[j].name) == 0 &&
                    !wanted(m, j, only, only_v, ntargets)) {
                    only[ntargets] = m;
                    only_v[ntargets++] = j;
                }
    }
    int total = 0;
    for (int i = 0; i < pgr_scenario_count(); i++) total += pgr_scenario_at(i)->nvariants * (PGR_NISO * 3 + PGR_NFAULTS);
    pgr_cell *cells = calloc((size_t)total, sizeof *cells);
    if (!cells) return -1;
    int n = 0;
    for (int i = 0; i < pgr_scenario_count(); i++)
        for (int j = 0; j < pgr_scenario_at(i)->nvariants; j++) {
            if (!wanted(pgr_scenario_at(i), j, only, only_v, ntargets)) continue;
            for (int iso = 0; iso < PGR_NISO; iso++) {
                if (pgr_cfg.iso_given && iso != (int)pgr_cfg.iso) continue;
                for (int c = 0; c < 2; c++)
                    cells[n++] = (pgr_cell){ pgr_scenario_at(i), &pgr_scenario_at(i)->variants[j], (pgr_isolation)iso,
                                         sessions[c], false, { 0 }, -1, 0 };
                cells[n++] = (pgr_cell){ pgr_scenario_at(i), &pgr_scenario_at(i)->variants[j], (pgr_isolation)iso, 2, true,
                                     { 0 }, -1, 0 };
            }
        }
    /* The fault matrix: every variant under every fault, one client sending the race case's
     * request (so what breaks is the fault's doing, not concurrency's), retrying once. */
    for (int i = 0; i < pgr_scenario_count() && faults; i++)
        for (int j = 0; j < pgr_scenario_at(i)->nvariants; j++) {
            const pgr_variant *v = &pgr_scenario_at(i)->variants[j];
            if (!wanted(pgr_scenario_at(i), j, only, only_v, ntargets)) continue;
            for (int f = 1; f < PGR_NFAULTS; f++)
                cells[n++] = (pgr_cell){ pgr_scenario_at(i), v, PGR_RC, 1, false, { .kind = (pgr_fault_kind)f, .rate = 0.5 },
                                     0, FAULT_TRIALS };
        }
    *out = cells;
    *ncells = n;
    return 0;
}

int pgr_cmd_run(char **pos, int npos)
{
    pgr_cell *cells;
    int n;
    if (pgr_matrix_cells(pos, npos, !pgr_cfg.no_faults, &cells, &n) != 0) return 2;
    char dsn[PATH_MAX + 128];          /* the server first: a run that cannot connect leaves no --out behind */
    if (pgr_obtain_server(dsn, sizeof dsn) != 0) { free(cells); return 2; }
    if (mkdir(pgr_cfg.out_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "pgrace: cannot create %s: %s\n", pgr_cfg.out_dir, strerror(errno));
        free(cells);
        return 2;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/results.json", pgr_cfg.out_dir);
    const char *json = pgr_cfg.json_path ? pgr_cfg.json_path : path;
    int rc = pgr_run_cells(cells, n, pgr_cfg.budget, 0, PGR_MIN_STRESS_TRIALS, json, pgr_cfg.out_dir, true, NULL, NULL);
    if (rc != 2 && !pgr_cfg.quiet)
        fprintf(stderr, "pgrace: results in %s; reports in %s/index.html, junit.xml, summary.md\n", json, pgr_cfg.out_dir);
    free(cells);
    return rc;
}
