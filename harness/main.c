/*
 * main.c — the command line. Only main() exits; everything below returns a status and
 * fills an error buffer. Exit status: 0 every verdict matched its expectation, 1 some
 * verdict did not, 2 usage, connection or harness error (never reported as a race).
 */
#include "explore.h"
#include "payload.h"
#include "report.h"
#include "runner.h"
#include "server.h"
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <glob.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static pgr_config cfg;

static volatile int interrupted;
static pgr_server throwaway;

static void on_signal(int sig)
{
    interrupted = sig;
}

static void install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;           /* no SA_RESTART: blocking waits see EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);        /* a closed terminal: clean up like SIGTERM */
    signal(SIGPIPE, SIG_IGN);
}

/* Resolve TARGET into (scenario, variant index or -1). */
static int resolve_target(const char *target, const pgr_scenario **sc, int *vi)
{
    char name[128];
    snprintf(name, sizeof name, "%s", target);
    char *slash = strchr(name, '/');
    if (slash) *slash = '\0';
    *sc = pgr_find_scenario(name);
    *vi = -1;
    if (!*sc) {
        fprintf(stderr, "pgrace: unknown target '%s' (see 'pgrace list')\n", target);
        return -1;
    }
    if (slash) {
        for (int i = 0; i < (*sc)->nvariants; i++)
            if (strcmp((*sc)->variants[i].name, slash + 1) == 0) *vi = i;
        if (*vi < 0) {
            fprintf(stderr, "pgrace: unknown target '%s': %s has no variant '%s' (see 'pgrace list')\n",
                    target, name, slash + 1);
            return -1;
        }
    }
    return 0;
}

/* The DSN to use: --dsn / PGRACE_DSN, or a throwaway server started now. */
static int obtain_server(char *dsn, size_t len)
{
    if (throwaway.pid > 0) {            /* already started by an earlier step of this command */
        snprintf(dsn, len, "%s", throwaway.dsn);
        return 0;
    }
    if (cfg.dsn) {
        char err[PGR_ERRLEN];
        if (pgr_dsn_check(cfg.dsn, err, sizeof err) != 0) {
            fprintf(stderr, "pgrace: %s\n", err);
            return -1;
        }
        /* The DSN says where; the environment must not redirect it. */
        pgr_scrub_pg_env(true);
        PGconn *c = pgr_connect(cfg.dsn, err, sizeof err);
        if (!c) {
            fprintf(stderr, "pgrace: %s\n", err);
            return -1;
        }
        PQfinish(c);
        snprintf(dsn, len, "%s", cfg.dsn);
        return 0;
    }
    pgr_scrub_pg_env(false);
    char err[PGR_ERRLEN];
    if (!cfg.quiet) fprintf(stderr, "pgrace: starting a throwaway PostgreSQL (no --dsn given)\n");
    if (pgr_server_start(&throwaway, false, &interrupted, err, sizeof err) != 0) {
        fprintf(stderr, "pgrace: cannot start the throwaway server: %s\n", err);
        return -1;
    }
    snprintf(dsn, len, "%s", throwaway.dsn);
    return 0;
}

static void server_version(const char *dsn, char *out, size_t len)
{
    char err[PGR_ERRLEN];
    PGconn *c = pgr_connect(dsn, err, sizeof err);
    out[0] = '\0';
    if (c) { pgr_server_version(c, out, len); PQfinish(c); }
}

static int cmd_list(void)
{
    printf("%-40s %-12s %-26s %s\n", "TARGET", "KIND", "EXPECT (rc/rr/ser)", "SEED");
    for (int i = 0; i < pgr_nscenarios; i++) {
        const pgr_scenario *sc = pgr_scenarios[i];
        for (int j = 0; j < sc->nvariants; j++) {
            const pgr_variant *v = &sc->variants[j];
            char target[96], expect[64], e[PGR_NISO][24];
            snprintf(target, sizeof target, "%s/%s", sc->name, v->name);
            for (int k = 0; k < PGR_NISO; k++) {   /* "race(c>=4)": safe below 4 sessions */
                if (v->expect[k] == PGR_RACE && v->race_from[k] > 1)
                    snprintf(e[k], sizeof e[k], "race(c>=%d)", v->race_from[k]);
                else
                    snprintf(e[k], sizeof e[k], "%s", pgr_verdict_name(v->expect[k]));
            }
            snprintf(expect, sizeof expect, "%s/%s/%s", e[0], e[1], e[2]);
            printf("%-40s %-12s %-26s %s  %s\n", target, pgr_kind_name(v->kind), expect, sc->seed, v->summary);
        }
    }
    return 0;
}

/* Run a list of (variant, isolation, sessions, budget) cells; print; write JSON. */
static int stress_case = -1;          /* stress --case: every trial this case */

typedef struct cell {
    const pgr_scenario *sc;
    const pgr_variant *v;
    pgr_isolation iso;
    int sessions;
    bool explore;            /* exhaustive exploration instead of stress */
    pgr_fault fault;         /* stress with this fault (kind NONE: none) */
    int force_case;          /* -1: the command's --case (or the weights) */
    long long trials;        /* 0: the run's budget */
} cell;

static int run_cells(const cell *cells, int n, double seconds_each, long long trials_each,
                     const char *json_path, const char *report_dir, bool table)
{
    char dsn[PATH_MAX + 128];
    if (obtain_server(dsn, sizeof dsn) != 0) return 2;
    char version[64];
    server_version(dsn, version, sizeof version);

    pgr_result *rs = calloc((size_t)n, sizeof *rs);
    if (!rs) { fprintf(stderr, "pgrace: out of memory\n"); return 2; }
    int done = 0, exit_status = 0;
    char error[PGR_ERRLEN + 160] = "";
    for (int i = 0; i < n && !interrupted; i++) {
        int rc;
        if (cells[i].explore) {
            pgr_explore_opts eo = { .sessions = cells[i].sessions, .iso = cells[i].iso, .strategy = PGR_EXHAUSTIVE,
                                    .max_schedules = 5000, .seed = 1, .depth = 2, .force_case = -1, .max_saves = 3,
                                    .step_timeout_s = cfg.step_timeout,
                                    .quiet = true, .interrupted = &interrupted };
            rc = pgr_explore(dsn, cells[i].sc, cells[i].v, &eo, &rs[i]);
        } else {
            long long trials = cells[i].trials ? cells[i].trials : trials_each;
            pgr_stress_opts o = { .sessions = cells[i].sessions, .trials = trials,
                                  .seconds = cells[i].trials ? 0 : seconds_each,
                                  .iso = cells[i].iso, .progress_s = cfg.progress, .quiet = cfg.quiet,
                                  .force_case = cells[i].force_case >= 0 ? cells[i].force_case : stress_case,
                                  .min_trials = report_dir ? 300 : 0, .fault = cells[i].fault,
                                  .seed = cfg.seed ? cfg.seed : 1, .step_timeout_s = cfg.step_timeout,
                                  .interrupted = &interrupted };
            rc = pgr_stress(dsn, cells[i].sc, cells[i].v, &o, &rs[i]);
        }
        done++;
        if (!table || rc != 0) pgr_print_result(stdout, &rs[i]);
        fflush(stdout);
        if (rc != 0) {
            snprintf(error, sizeof error, "%s/%s: %s", cells[i].sc->name, cells[i].v->name, rs[i].error);
            break;
        }
        if (rs[i].verdict != rs[i].expected) exit_status = 1;
    }
    if (interrupted && !error[0]) snprintf(error, sizeof error, "interrupted");
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
            printf("%-36s %-8s %-16s %3d %8lld  %-34s %s%s\n", target, r->mode, pgr_isolation_name(r->iso), r->sessions,
                   r->trials, verdict, pgr_verdict_name(r->expected),
                   r->verdict == r->expected && !r->error[0] ? "" : "  <-- MISMATCH");
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
    for (int i = 0; i < done; i++) pgr_result_free(&rs[i]);
    free(rs);
    if (error[0]) {
        fprintf(stderr, "pgrace: %s\n", error);
        exit_status = 2;
    }
    return exit_status;
}

/* --case NAME of scenario sc: its index, -1 when not given, -2 (after a message) when unknown. */
static int case_option(const pgr_scenario *sc)
{
    if (!cfg.kase) return -1;
    for (int i = 0; i < sc->ncases; i++)
        if (strcmp(sc->cases[i].name, cfg.kase) == 0) return i;
    fprintf(stderr, "pgrace: %s has no case '%s'\n", sc->name, cfg.kase);
    return -2;
}

static int cmd_stress(const char *target)
{
    const pgr_scenario *sc;
    int vi;
    if (resolve_target(target, &sc, &vi) != 0) return 2;
    stress_case = case_option(sc);
    if (stress_case == -2) return 2;
    cell cells[16];
    int n = 0;
    for (int j = 0; j < sc->nvariants && n < 16; j++)
        if (vi < 0 || vi == j)
            cells[n++] = (cell){ sc, &sc->variants[j], cfg.iso, cfg.sessions, false, cfg.fault, -1, 0 };
    long long trials = cfg.trials;
    if (!trials && cfg.seconds <= 0) trials = 2000;
    return run_cells(cells, n, cfg.seconds, trials, cfg.json_path, NULL, false);
}

static int cmd_explore(const char *target)
{
    const pgr_scenario *sc;
    int vi;
    if (resolve_target(target, &sc, &vi) != 0) return 2;
    if (cfg.sessions > 8) {
        fprintf(stderr, "pgrace: explore supports 1..8 sessions, got %d\n", cfg.sessions);
        return 2;
    }
    int kase = case_option(sc);
    if (kase == -2) return 2;
    char dsn[PATH_MAX + 128];
    if (obtain_server(dsn, sizeof dsn) != 0) return 2;
    char version[64];
    server_version(dsn, version, sizeof version);
    pgr_result rs[16];
    int n = 0, exit_status = 0;
    char error[PGR_ERRLEN + 160] = "";
    for (int j = 0; j < sc->nvariants && !interrupted; j++) {
        if (vi >= 0 && vi != j) continue;
        pgr_explore_opts o = { .sessions = cfg.sessions, .iso = cfg.iso, .strategy = cfg.strategy,
                               .max_schedules = cfg.max_schedules, .seed = cfg.seed, .depth = cfg.depth,
                               .force_case = kase, .save_dir = cfg.save_dir, .max_saves = 5, .fault = cfg.fault,
                               .step_timeout_s = cfg.step_timeout,
                               .quiet = cfg.quiet, .progress_s = cfg.progress, .interrupted = &interrupted };
        int rc = pgr_explore(dsn, sc, &sc->variants[j], &o, &rs[n]);
        pgr_print_result(stdout, &rs[n]);
        fflush(stdout);
        n++;
        if (rc != 0) {
            snprintf(error, sizeof error, "%s/%s: %s", sc->name, sc->variants[j].name, rs[n - 1].error);
            break;
        }
        if (rs[n - 1].verdict != rs[n - 1].expected) exit_status = 1;
    }
    if (interrupted && !error[0]) snprintf(error, sizeof error, "interrupted");
    if (cfg.json_path) {
        char err[PGR_ERRLEN];
        if (pgr_write_json(cfg.json_path, version, rs, n, error, err, sizeof err) != 0) {
            fprintf(stderr, "pgrace: %s\n", err);
            exit_status = 2;
        }
    }
    for (int i = 0; i < n; i++) pgr_result_free(&rs[i]);
    if (error[0]) {
        fprintf(stderr, "pgrace: %s\n", error);
        exit_status = 2;
    }
    return exit_status;
}

static int cmd_replay(char **files, int n)
{
    for (int i = 0; i < n; i++)
        if (access(files[i], R_OK) != 0) {
            fprintf(stderr, "pgrace: cannot read schedule %s: %s\n", files[i], strerror(errno));
            return 2;
        }
    char dsn[PATH_MAX + 128];
    if (obtain_server(dsn, sizeof dsn) != 0) return 2;
    return pgr_replay(dsn, files, n, cfg.repeat, cfg.quiet, &interrupted);
}

static int cmd_run(char **targets, int ntargets);

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

static int cmd_ci(char **targets, int ntargets)
{
    char berr[PGR_ERRLEN];
    if (cfg.baseline) {                 /* a bad baseline fails before minutes of work, not after */
        json_t *b = mismatches_of(cfg.baseline, berr, sizeof berr);
        if (!b) { fprintf(stderr, "pgrace: %s\n", berr); return 2; }
        json_decref(b);
    }
    /* 1. every saved race must still reproduce */
    const char *dir = cfg.regressions ? cfg.regressions : "fuzz/regressions";
    glob_t g;
    char pattern[PATH_MAX];
    snprintf(pattern, sizeof pattern, "%s/*.schedule", dir);
    int replay_rc = 0;
    if (glob(pattern, 0, NULL, &g) == 0) {
        char dsn[PATH_MAX + 128];
        if (obtain_server(dsn, sizeof dsn) != 0) { globfree(&g); return 2; }
        printf("replaying %zu regression schedule(s) from %s\n", g.gl_pathc, dir);
        replay_rc = pgr_replay(dsn, g.gl_pathv, (int)g.gl_pathc, 1, true, &interrupted);
        globfree(&g);
        if (replay_rc == 2) return 2;
    } else if (cfg.regressions) {
        fprintf(stderr, "pgrace: no *.schedule files in %s\n", dir);
        return 2;
    }
    /* 2. the matrix and the reports */
    int rc = cmd_run(targets, ntargets);
    if (rc == 2) return 2;
    /* 3. new failures versus known ones */
    char path[PATH_MAX], err[PGR_ERRLEN];
    snprintf(path, sizeof path, "%s/results.json", cfg.out_dir);
    json_t *now = mismatches_of(cfg.json_path ? cfg.json_path : path, err, sizeof err);
    if (!now) { fprintf(stderr, "pgrace: %s\n", err); return 2; }
    json_t *known = cfg.baseline ? mismatches_of(cfg.baseline, err, sizeof err) : json_object();
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

static int cmd_run(char **targets, int ntargets)
{
    static const int sessions[] = { 2, 8 };
    const pgr_scenario *only[64];
    int only_v[64];
    for (int t = 0; t < ntargets && t < 64; t++)
        if (resolve_target(targets[t], &only[t], &only_v[t]) != 0) return 2;
    int total = 0;
    for (int i = 0; i < pgr_nscenarios; i++) total += pgr_scenarios[i]->nvariants * (PGR_NISO * 3 + PGR_NFAULTS);
    cell *cells = calloc((size_t)total, sizeof *cells);
    if (!cells) return 2;
    int n = 0, nstress = 0;
    for (int i = 0; i < pgr_nscenarios; i++)
        for (int j = 0; j < pgr_scenarios[i]->nvariants; j++) {
            if (!wanted(pgr_scenarios[i], j, only, only_v, ntargets)) continue;
            for (int iso = 0; iso < PGR_NISO; iso++) {
                for (int c = 0; c < 2; c++, nstress++)
                    cells[n++] = (cell){ pgr_scenarios[i], &pgr_scenarios[i]->variants[j], (pgr_isolation)iso,
                                         sessions[c], false, { 0 }, -1, 0 };
                cells[n++] = (cell){ pgr_scenarios[i], &pgr_scenarios[i]->variants[j], (pgr_isolation)iso, 2, true,
                                     { 0 }, -1, 0 };
            }
        }
    /* The fault matrix: every variant under every fault, one client sending the race case's
     * request (so what breaks is the fault's doing, not concurrency's), retrying once. */
    for (int i = 0; i < pgr_nscenarios && !cfg.no_faults; i++)
        for (int j = 0; j < pgr_scenarios[i]->nvariants; j++) {
            const pgr_variant *v = &pgr_scenarios[i]->variants[j];
            if (!wanted(pgr_scenarios[i], j, only, only_v, ntargets)) continue;
            for (int f = 1; f < PGR_NFAULTS; f++)
                cells[n++] = (cell){ pgr_scenarios[i], v, PGR_RC, 1, false, { .kind = (pgr_fault_kind)f, .rate = 0.5 },
                                     0, FAULT_TRIALS };
        }
    if (mkdir(cfg.out_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "pgrace: cannot create %s: %s\n", cfg.out_dir, strerror(errno));
        free(cells);
        return 2;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/results.json", cfg.out_dir);
    const char *json = cfg.json_path ? cfg.json_path : path;
    /* exploration of 2-session spaces takes a fraction of a second a cell; stress gets the budget */
    int rc = run_cells(cells, n, cfg.budget / nstress, 0, json, cfg.out_dir, true);
    if (rc != 2 && !cfg.quiet)
        fprintf(stderr, "pgrace: results in %s; reports in %s/index.html, junit.xml, summary.md\n", json, cfg.out_dir);
    free(cells);
    return rc;
}

/* pgrace payloads [TARGET...]: every payload of every field of every chosen variant. */
static int cmd_payloads(char **targets, int ntargets)
{
    const pgr_scenario *only[64];
    int only_v[64];
    for (int t = 0; t < ntargets && t < 64; t++)
        if (resolve_target(targets[t], &only[t], &only_v[t]) != 0) return 2;
    char dsn[PATH_MAX + 128];
    if (obtain_server(dsn, sizeof dsn) != 0) return 2;
    char version[64];
    server_version(dsn, version, sizeof version);
    pgr_payload_checks checks = { 0 };
    char error[PGR_ERRLEN + 160] = "";
    int64_t t0 = pgr_now_ns();
    for (int i = 0; i < pgr_nscenarios && !error[0]; i++) {
        const pgr_scenario *sc = pgr_scenarios[i];
        int first = checks.n;
        for (int j = 0; j < sc->nvariants && !error[0]; j++) {
            bool wanted = ntargets == 0;
            for (int t = 0; t < ntargets; t++) wanted |= only[t] == sc && (only_v[t] < 0 || only_v[t] == j);
            if (!wanted) continue;
            if (!cfg.quiet) fprintf(stderr, "pgrace: payloads against %s/%s\n", sc->name, sc->variants[j].name);
            pgr_payload_opts o = { .sessions = cfg.sessions, .iso = cfg.iso, .interrupted = &interrupted };
            char err[PGR_ERRLEN];
            if (pgr_payloads_run(dsn, sc, &sc->variants[j], &o, &checks, err, sizeof err) != 0)
                snprintf(error, sizeof error, "%s/%s: %s", sc->name, sc->variants[j].name, err);
        }
        pgr_print_payload_checks(stdout, checks.v + first, checks.n - first);
        fflush(stdout);
    }
    int failed = 0;
    for (int i = 0; i < checks.n; i++) failed += !checks.v[i].ok;
    printf("payloads: %d checks, %d failed, %.1f s\n", checks.n, failed, (double)(pgr_now_ns() - t0) / 1e9);
    int exit_status = failed ? 1 : 0;
    if (cfg.json_path) {
        char err[PGR_ERRLEN];
        if (pgr_write_payloads_json(cfg.json_path, version, &checks, error, err, sizeof err) != 0) {
            fprintf(stderr, "pgrace: %s\n", err);
            exit_status = 2;
        }
    }
    free(checks.v);
    if (error[0]) {
        fprintf(stderr, "pgrace: %s\n", error);
        exit_status = 2;
    }
    return exit_status;
}

int main(int argc, char **argv)
{
    if (argc < 2) { fputs(pgr_usage_text, stderr); return 2; }
    pgr_config_defaults(&cfg);
    int npos;
    char **pos, err[PGR_ERRLEN];
    int prc = pgr_cli_parse(argc, argv, &cfg, &npos, &pos, err, sizeof err);
    if (prc == 1) { fputs(pgr_usage_text, stdout); return 0; }
    if (prc != 0) { fprintf(stderr, "pgrace: %s\n", err); return 2; }

    install_signals();
    atexit(pgr_server_cleanup_registered);
    int rc;
    if (strcmp(cfg.command, "list") == 0) {
        rc = cmd_list();
    } else if (strcmp(cfg.command, "stress") == 0) {
        rc = cmd_stress(pos[0]);
    } else if (strcmp(cfg.command, "run") == 0) {
        rc = cmd_run(pos, npos);
    } else if (strcmp(cfg.command, "server") == 0) {
        rc = pgr_server_command(pos[0], cfg.quiet);
    } else if (strcmp(cfg.command, "ci") == 0) {
        if (cfg.baseline && access(cfg.baseline, R_OK) != 0) {
            fprintf(stderr, "pgrace: cannot read baseline %s: %s\n", cfg.baseline, strerror(errno));
            return 2;
        }
        rc = cmd_ci(pos, npos);
    } else if (strcmp(cfg.command, "explore") == 0) {
        rc = cmd_explore(pos[0]);
    } else if (strcmp(cfg.command, "replay") == 0) {
        rc = cmd_replay(pos, npos);
    } else if (strcmp(cfg.command, "payloads") == 0) {
        rc = cmd_payloads(pos, npos);
    } else {
        rc = 2;                  /* unreachable: the parser knows every command */
    }
    pgr_server_stop(&throwaway);
    if (interrupted) {
        fprintf(stderr, "pgrace: interrupted\n");
        return 128 + interrupted;
    }
    return rc;
}
