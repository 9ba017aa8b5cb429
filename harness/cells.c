/*
 * cells.c — running a list of cells (variant x isolation x sessions x mode x fault), the
 * table and the JSON and reports they end in: what `stress` and `run` share.
 */
#include "app.h"
#include "report.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pgr_run_cells(const pgr_cell *cells, int n, double seconds_each, long long trials_each,
                  const char *json_path, const char *report_dir, bool table, pgr_result **keep, int *keep_n)
{
    if (keep) { *keep = NULL; *keep_n = 0; }
    char dsn[PATH_MAX + 128];
    if (pgr_obtain_server(dsn, sizeof dsn) != 0) return 2;
    char version[64];
    pgr_server_version_of(dsn, version, sizeof version);

    pgr_result *rs = calloc((size_t)n, sizeof *rs);
    if (!rs) { fprintf(stderr, "pgrace: out of memory\n"); return 2; }
    int done = 0, exit_status = 0;
    char error[PGR_ERRLEN + 160] = "";
    for (int i = 0; i < n && !pgr_interrupted; i++) {
        int rc;
        if (cells[i].explore) {
            pgr_explore_opts eo = { .sessions = cells[i].sessions, .iso = cells[i].iso, .strategy = PGR_EXHAUSTIVE,
                                    .max_schedules = 5000, .seed = 1, .depth = 2, .force_case = -1, .max_saves = 3,
                                    .step_timeout_s = pgr_cfg.step_timeout,
                                    .quiet = true, .interrupted = &pgr_interrupted };
            rc = pgr_explore(dsn, cells[i].sc, cells[i].v, &eo, &rs[i]);
        } else {
            long long trials = cells[i].trials ? cells[i].trials : trials_each;
            pgr_stress_opts o = { .sessions = cells[i].sessions, .trials = trials,
                                  .seconds = cells[i].trials ? 0 : seconds_each,
                                  .iso = cells[i].iso, .progress_s = pgr_cfg.progress, .quiet = pgr_cfg.quiet,
                                  .force_case = cells[i].force_case,
                                  .min_trials = report_dir ? (cells[i].v->client ? 20 : 300) : 0, .fault = cells[i].fault,
                                  .seed = pgr_cfg.seed ? pgr_cfg.seed : 1, .step_timeout_s = pgr_cfg.step_timeout,
                                  .interrupted = &pgr_interrupted };
            rc = pgr_stress(dsn, cells[i].sc, cells[i].v, &o, &rs[i]);
        }
        done++;
        if (!table || rc != 0) pgr_print_result(stdout, &rs[i]);
        fflush(stdout);
        if (rc != 0) {
            snprintf(error, sizeof error, "%s/%s: %s", cells[i].sc->name, cells[i].v->name, rs[i].error);
            break;
        }
        if (!pgr_result_matched(&rs[i])) exit_status = 1;
    }
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
            if (r->verdict == PGR_RACE)
                snprintf(verdict, sizeof verdict, "race in %lld of %lld trials", r->tally.violated_trials, r->trials);
            else
                snprintf(verdict, sizeof verdict, "safe");
            printf("%-36s %-8s %-16s %3d %8lld  %-34s %s%s\n", target, pgr_mode_name(r->mode), pgr_isolation_name(r->iso), r->sessions,
                   r->trials, verdict, pgr_verdict_name(r->expected),
                   pgr_result_matched(r) ? "" : "  <-- MISMATCH");
            for (int k = 0; k < r->sc->ninvariants; k++)
                if (r->tally.inv[k])
                    printf("%-45s   %lld violations of \"%s\"\n", "", r->tally.inv[k], r->sc->invariants[k]);
            if (r->tally.retry_failed)
                printf("%-45s   %lld violations of \"%s\"\n", "", r->tally.retry_failed, PGR_INV_RETRY_NAME);
            if (r->tally.half_committed)
                printf("%-45s   %lld violations of \"%s\"\n", "", r->tally.half_committed, PGR_INV_ATOMIC_NAME);
        }
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

