/*
 * cells.c — running a list of cells (variant x isolation x sessions x mode x fault), the
 * table and the JSON and reports they end in: what `stress` and `run` share.
 */
#include "app.h"
#include "model_table.h"
#include "report.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A stress cell of the concurrency matrix: it runs for its time, not to a count. */
static bool timed_stress(const pgr_cell *c)
{
    return !c->explore && !c->trials;
}

int pgr_run_cells(const pgr_cell *cells, int n, double budget_s, double seconds_each, long long trials_each,
                  const char *json_path, const char *report_dir, bool table, pgr_result **keep, int *keep_n)
{
    if (keep) { *keep = NULL; *keep_n = 0; }
    char dsn[PATH_MAX + 128];
    if (pgr_obtain_server(dsn, sizeof dsn) != 0) return 2;
    char version[64];
    pgr_server_version_of(dsn, version, sizeof version);

    pgr_result *rs = calloc((size_t)n, sizeof *rs);
    int *order = calloc((size_t)n, sizeof *order);
    bool *ran = calloc((size_t)n, sizeof *ran);
    if (!rs || !order || !ran) { free(rs); free(order); free(ran); fprintf(stderr, "pgrace: out of memory\n"); return 2; }
    /* With a budget, the cells that end by themselves (explorations, fault cells' fixed
     * trials) run first, each capped at an equal share of what is left; the stress cells
     * then share what is left equally. Results keep the matrix's order. */
    int norder = 0;
    for (int pass = budget_s > 0 ? 0 : 1; pass < 2; pass++)
        for (int i = 0; i < n; i++)
            if (budget_s <= 0 || timed_stress(&cells[i]) == (pass == 1)) order[norder++] = i;
    int64_t deadline = budget_s > 0 ? pgr_now_ns() + (int64_t)(budget_s * 1e9) : 0;
    int exit_status = 0;
    char error[PGR_ERRLEN + 160] = "";
    for (int j = 0; j < n && !pgr_interrupted; j++) {
        int i = order[j], rc;
        int64_t cell_end = 0;
        if (deadline) {
            int64_t now = pgr_now_ns(), left = deadline > now ? deadline - now : 0;
            cell_end = now + left / (n - j);
        }
        if (cells[i].explore) {
            pgr_explore_opts eo = { .sessions = cells[i].sessions, .iso = cells[i].iso, .strategy = PGR_EXHAUSTIVE,
                                    .max_schedules = 5000, .seed = 1, .depth = 2, .force_case = -1, .max_saves = 3,
                                    .step_timeout_s = pgr_cfg.step_timeout, .deadline_ns = cell_end,
                                    .quiet = true, .interrupted = &pgr_interrupted };
            rc = pgr_explore(dsn, cells[i].sc, cells[i].v, &eo, &rs[i]);
        } else {
            long long trials = cells[i].trials ? cells[i].trials : deadline ? 0 : trials_each;
            pgr_stress_opts o = { .sessions = cells[i].sessions, .trials = trials,
                                  .seconds = trials ? 0 : deadline ? budget_s : seconds_each, .deadline_ns = cell_end,
                                  .iso = cells[i].iso, .progress_s = pgr_cfg.progress, .quiet = pgr_cfg.quiet,
                                  .force_case = cells[i].force_case,
                                  .min_trials = !deadline ? 0 : cells[i].trials ? cells[i].trials : pgr_variant_wire(cells[i].v) ? 20 : PGR_MIN_STRESS_TRIALS,
                                  .fault = cells[i].fault,
                                  .seed = pgr_cfg.seed ? pgr_cfg.seed : 1, .step_timeout_s = pgr_cfg.step_timeout,
                                  .interrupted = &pgr_interrupted };
            rc = pgr_stress(dsn, cells[i].sc, cells[i].v, &o, &rs[i]);
        }
        ran[i] = true;
        if (!table || rc != 0) pgr_print_result(stdout, &rs[i]);
        fflush(stdout);
        if (rc != 0) {
            snprintf(error, sizeof error, "%s/%s: %s", cells[i].sc->name, cells[i].v->name, rs[i].error);
            break;
        }
        if (!pgr_result_matched(&rs[i])) exit_status = 1;
    }
    int done = 0;                       /* the cells that ran, in the matrix's order */
    for (int i = 0; i < n; i++)
        if (ran[i]) rs[done++] = rs[i];
    free(order);
    free(ran);
    if (pgr_interrupted && !error[0]) snprintf(error, sizeof error, "interrupted");
    if (table) {
        printf("\n%-36s %-8s %-16s %3s %8s  %-34s %s\n", "TARGET", "MODE", "ISOLATION", "C", "TRIALS", "VERDICT", "EXPECTED");
        for (int i = 0; i < done; i++) {
            pgr_result *r = &rs[i];
            char target[96], verdict[64], fault[80];
            if (i == 0 || (r->fault.kind != PGR_FAULT_NONE) != (rs[i - 1].fault.kind != PGR_FAULT_NONE))
                if (r->fault.kind != PGR_FAULT_NONE) printf("faults (the client retries once after each):\n");
            fault[0] = '\0';
            if (r->fault.kind != PGR_FAULT_NONE) pgr_fault_format(&r->fault, fault, sizeof fault);
            snprintf(target, sizeof target, "%s/%s%s%s", r->sc->name, r->v->name, fault[0] ? " " : "", fault);
            if (r->error[0]) {                  /* no verdict: the error is what there is to say */
                printf("%-36s %-8s %-16s %3d %8lld  error: %s\n", target, pgr_mode_name(r->mode),
                       pgr_isolation_name(r->iso), r->sessions, r->trials, r->error);
                continue;
            }
            if (r->verdict == PGR_RACE)
                snprintf(verdict, sizeof verdict, "race in %lld of %lld trials", r->tally.violated_trials, r->trials);
            else
                snprintf(verdict, sizeof verdict, "safe");
            char short_of[64] = "";
            if (r->budget_short && r->min_trials)
                snprintf(short_of, sizeof short_of, "  (short: %lld of its %lld trials)", r->trials, r->min_trials);
            else if (r->budget_short)
                snprintf(short_of, sizeof short_of, "  (short: not the whole space)");
            printf("%-36s %-8s %-16s %3d %8lld  %-34s %s%s%s\n", target, pgr_mode_name(r->mode), pgr_isolation_name(r->iso), r->sessions,
                   r->trials, verdict, pgr_verdict_name(r->expected), pgr_result_matched(r) ? "" : "  <-- MISMATCH", short_of);
            for (int k = 0; k < r->sc->ninvariants; k++)
                if (r->tally.inv[k])
                    printf("%-45s   %lld violations of \"%s\"\n", "", r->tally.inv[k], r->sc->invariants[k]);
            if (r->tally.retry_failed)
                printf("%-45s   %lld violations of \"%s\"\n", "", r->tally.retry_failed, PGR_INV_RETRY_NAME);
            if (r->tally.half_committed)
                printf("%-45s   %lld violations of \"%s\"\n", "", r->tally.half_committed, PGR_INV_ATOMIC_NAME);
        }
    }
    if (table) {
        pgr_model_pair *pairs = calloc((size_t)(done ? done : 1), sizeof *pairs);
        if (pairs) pgr_model_table_print(stdout, pairs, pgr_model_pairs(rs, done, pairs, done));
        free(pairs);
    }
    if (json_path) {
        char err[PGR_ERRLEN];
        if (pgr_write_json(json_path, version, rs, done, error, err, sizeof err) != 0) {
            fprintf(stderr, "pgrace: %s\n", err);
            exit_status = 2;
        }
    }
    if (report_dir) {
        char err[PGR_ERRLEN];
        if (pgr_write_reports(report_dir, version, rs, done, error, err, sizeof err) != 0) {
            fprintf(stderr, "pgrace: %s\n", err);
            exit_status = 2;
        }
    }
    if (keep) {
        *keep = rs;
        *keep_n = done;
    } else {
        for (int i = 0; i < done; i++) pgr_result_free(&rs[i]);
        free(rs);
    }
    if (error[0]) {
        fprintf(stderr, "pgrace: %s\n", error);
        exit_status = 2;
    }
    return exit_status;
}

