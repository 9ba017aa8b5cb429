/*
 * commands.c — the command line's commands and pgr_main, the program a main() runs (main.c
 * for pgrace itself; a team's own main registers its scenarios first). Only pgr_main
 * returns an exit status; everything below returns a status and fills an error buffer.
 * Exit status: 0 every verdict matched its expectation, 1 some verdict did not, 2 usage,
 * connection or harness error (never reported as a race).
 */
#include "explore.h"
#include "payload.h"
#include "report.h"
#include "runner.h"
#include "server.h"
#include "spec_scenario.h"
#include "app.h"

#include <errno.h>
#include <fcntl.h>
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

pgr_config pgr_cfg;
volatile int pgr_interrupted;
static pgr_server throwaway;

static void on_signal(int sig)
{
    int saved = errno;
    __atomic_store_n(&pgr_interrupted, sig, __ATOMIC_RELAXED);   /* read by other threads too */
    errno = saved;
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
int pgr_resolve_target(const char *target, const pgr_scenario **sc, int *vi)
{
    char name[PATH_MAX];
    snprintf(name, sizeof name, "%s", target);
    /* FILE.spec[/VARIANT]: a spec file, loaded and registered as a scenario */
    char *dot = strstr(name, ".spec");
    while (dot && dot[5] != '\0' && dot[5] != '/') dot = strstr(dot + 1, ".spec");
    char *slash = dot ? (dot[5] == '/' ? dot + 5 : NULL) : strchr(name, '/');
    if (slash) *slash = '\0';
    *vi = -1;
    if (dot) {
        char err[PGR_ERRLEN];
        if (pgr_spec_target(name, sc, err, sizeof err) != 0) {
            fprintf(stderr, "pgrace: %s\n", err);
            return -1;
        }
    } else {
        *sc = pgr_find_scenario(name);
    }
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
int pgr_obtain_server(char *dsn, size_t len)
{
    if (throwaway.pid > 0) {            /* already started by an earlier step of this command */
        snprintf(dsn, len, "%s", throwaway.dsn);
        return 0;
    }
    if (pgr_cfg.dsn) {
        char err[PGR_ERRLEN];
        if (pgr_dsn_check(pgr_cfg.dsn, err, sizeof err) != 0) {
            fprintf(stderr, "pgrace: %s\n", err);
            return -1;
        }
        /* The DSN says where; the environment must not redirect it. */
        pgr_scrub_pg_env(true);
        PGconn *c = pgr_connect(pgr_cfg.dsn, err, sizeof err);
        if (!c) {
            fprintf(stderr, "pgrace: %s\n", err);
            return -1;
        }
        /* the schemas of runs that are gone (killed, or that lost the server) go now */
        int dropped = pgr_schema_reclaim(c, err, sizeof err);
        if (dropped > 0 && !pgr_cfg.quiet)
            fprintf(stderr, "pgrace: dropped %d schema%s left by pgrace runs that are gone\n", dropped, dropped == 1 ? "" : "s");
        else if (dropped < 0 && !pgr_cfg.quiet)
            fprintf(stderr, "pgrace: note: could not look for schemas of runs that are gone: %s\n", err);
        pgr_disconnect(c);
        snprintf(dsn, len, "%s", pgr_cfg.dsn);
        return 0;
    }
    pgr_scrub_pg_env(false);
    char err[PGR_ERRLEN];
    if (!pgr_cfg.quiet) fprintf(stderr, "pgrace: starting a throwaway PostgreSQL (no --dsn given)\n");
    if (pgr_server_start(&throwaway, false, &pgr_interrupted, err, sizeof err) != 0) {
        fprintf(stderr, "pgrace: cannot start the throwaway server: %s\n", err);
        return -1;
    }
    snprintf(dsn, len, "%s", throwaway.dsn);
    return 0;
}

void pgr_server_version_of(const char *dsn, char *out, size_t len)
{
    char err[PGR_ERRLEN];
    PGconn *c = pgr_connect(dsn, err, sizeof err);
    out[0] = '\0';
    if (c) { pgr_server_version(c, out, len); pgr_disconnect(c); }
}

char **pgr_expand_targets(char **pos, int npos, int *nout)
{
    int cap = npos + 1, n = 0;
    char **out = malloc((size_t)cap * sizeof *out);
    if (!out) return NULL;
    for (int i = 0; i < npos; i++) out[n++] = pos[i];
    for (int s = 0; s < pgr_cfg.nspecs; s++) {
        struct stat st;
        glob_t g = { 0 };
        char pattern[PATH_MAX];
        const char *path = pgr_cfg.specs[s];
        bool dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
        snprintf(pattern, sizeof pattern, "%s/*.spec", path);
        size_t add = dir ? (glob(pattern, 0, NULL, &g) == 0 ? g.gl_pathc : 0) : 1;
        if (dir && add == 0) {
            fprintf(stderr, "pgrace: --spec %s: no *.spec files there\n", path);
            globfree(&g);
            free(out);
            return NULL;
        }
        char **grown = realloc(out, (size_t)(n + (int)add + 1) * sizeof *out);
        if (!grown) { globfree(&g); free(out); return NULL; }
        out = grown;
        for (size_t k = 0; k < add; k++) out[n++] = strdup(dir ? g.gl_pathv[k] : path);   /* kept for the run */
        globfree(&g);
    }
    *nout = n;
    return out;
}

static int cmd_list(char **pos, int npos)
{
    int n;
    char **targets = pgr_expand_targets(pos, npos, &n);
    if (!targets) return 2;
    const pgr_scenario *only[64];
    int nonly = 0, vi;
    for (int t = 0; t < n && nonly < 64; t++)
        if (pgr_resolve_target(targets[t], &only[nonly++], &vi) != 0) { free(targets); return 2; }
    free(targets);
    printf("%-40s %-12s %-26s %s\n", "TARGET", "KIND", "EXPECT (rc/rr/ser)", "SEED");
    for (int i = 0; i < pgr_scenario_count(); i++) {
        const pgr_scenario *sc = pgr_scenario_at(i);
        bool listed = nonly == 0;
        for (int k = 0; k < nonly; k++) listed |= only[k] == sc;
        if (!listed) continue;
        for (int j = 0; j < sc->nvariants; j++) {
            const pgr_variant *v = &sc->variants[j];
            char target[96], expect[64], e[PGR_NISO][24];
            snprintf(target, sizeof target, "%s/%s", sc->name, v->name);
            for (int k = 0; k < PGR_NISO; k++) {   /* "race(c>=4)": safe below 4 sessions; */
                if (v->expect[k] == PGR_RACE && v->race_from[k] > 1)   /* "race(rare,c<8)": either */
                    snprintf(e[k], sizeof e[k], "race(c>=%d)", v->race_from[k]);
                else if (v->expect[k] == PGR_RACE && v->race_rare_below[k] > 1)
                    snprintf(e[k], sizeof e[k], "race(rare,c<%d)", v->race_rare_below[k]);
                else
                    snprintf(e[k], sizeof e[k], "%s", pgr_verdict_name(v->expect[k]));
            }
            snprintf(expect, sizeof expect, "%s/%s/%s", e[0], e[1], e[2]);
            printf("%-40s %-12s %-26s %s  %s\n", target, pgr_kind_name(v->kind), expect,
                   sc->seed && *sc->seed ? sc->seed : "own", v->summary ? v->summary : "");
        }
    }
    return 0;
}

/* --case NAME of scenario sc: its index, -1 when not given, -2 (after a message) when unknown. */
int pgr_case_option(const pgr_scenario *sc)
{
    if (!pgr_cfg.kase) return -1;
    for (int i = 0; i < sc->ncases; i++)
        if (strcmp(sc->cases[i].name, pgr_cfg.kase) == 0) return i;
    fprintf(stderr, "pgrace: %s has no case '%s'\n", sc->name, pgr_cfg.kase);
    return -2;
}

static int cmd_stress(char **pos, int npos)
{
    (void)npos;
    const char *target = pos[0];
    const pgr_scenario *sc;
    int vi;
    if (pgr_resolve_target(target, &sc, &vi) != 0) return 2;
    int kase = pgr_case_option(sc);
    if (kase == -2) return 2;
    pgr_cell cells[16];
    int n = 0;
    for (int j = 0; j < sc->nvariants && n < 16; j++)
        if (vi < 0 || vi == j)
            cells[n++] = (pgr_cell){ sc, &sc->variants[j], pgr_cfg.iso, pgr_cfg.sessions, false, pgr_cfg.fault, kase, 0 };
    long long trials = pgr_cfg.trials;
    if (!trials && pgr_cfg.seconds <= 0) trials = 2000;
    return pgr_run_cells(cells, n, 0, pgr_cfg.seconds, trials, pgr_cfg.json_path, NULL, false, NULL, NULL);
}

/* http FILE.spec[/VARIANT]: stress on the spec's http variants (every one, or the one named). */
static int cmd_http(char **pos, int npos)
{
    (void)npos;
    const pgr_scenario *sc;
    int vi;
    if (pgr_resolve_target(pos[0], &sc, &vi) != 0) return 2;
    if (!pgr_spec_of(sc)) {
        fprintf(stderr, "pgrace: http needs a spec file with http variants (FILE.spec[/VARIANT]), got the scenario '%s'\n",
                sc->name);
        return 2;
    }
    if (vi >= 0 && !sc->variants[vi].http) {
        fprintf(stderr, "pgrace: %s: variant '%s' is not an http variant\n", pos[0], sc->variants[vi].name);
        return 2;
    }
    int kase = pgr_case_option(sc);
    if (kase == -2) return 2;
    pgr_cell cells[16];
    int n = 0;
    for (int j = 0; j < sc->nvariants && n < 16; j++)
        if ((vi < 0 || vi == j) && sc->variants[j].http)
            cells[n++] = (pgr_cell){ sc, &sc->variants[j], pgr_cfg.iso, pgr_cfg.sessions, false, pgr_cfg.fault, kase, 0 };
    if (n == 0) {
        fprintf(stderr, "pgrace: %s has no http variant (`http NAME { METHOD /path ... }`)\n", pos[0]);
        return 2;
    }
    long long trials = pgr_cfg.trials;
    if (!trials && pgr_cfg.seconds <= 0) trials = 200;
    return pgr_run_cells(cells, n, 0, pgr_cfg.seconds, trials, pgr_cfg.json_path, NULL, false, NULL, NULL);
}

static int cmd_explore(char **pos, int npos)
{
    (void)npos;
    const char *target = pos[0];
    const pgr_scenario *sc;
    int vi;
    if (pgr_resolve_target(target, &sc, &vi) != 0) return 2;
    if (pgr_cfg.sessions > PGR_MAX_EXPLORE_SESSIONS) {
        fprintf(stderr, "pgrace: explore supports 1..%d sessions, got %d\n", PGR_MAX_EXPLORE_SESSIONS, pgr_cfg.sessions);
        return 2;
    }
    int kase = pgr_case_option(sc);
    if (kase == -2) return 2;
    char dsn[PATH_MAX + 128];
    if (pgr_obtain_server(dsn, sizeof dsn) != 0) return 2;
    char version[64];
    pgr_server_version_of(dsn, version, sizeof version);
    pgr_result rs[16];
    int n = 0, exit_status = 0;
    char error[PGR_ERRLEN + 160] = "";
    for (int j = 0; j < sc->nvariants && !pgr_interrupted; j++) {
        if (vi >= 0 && vi != j) continue;
        pgr_explore_opts o = { .sessions = pgr_cfg.sessions, .iso = pgr_cfg.iso, .strategy = pgr_cfg.strategy,
                               .max_schedules = pgr_cfg.max_schedules, .seed = pgr_cfg.seed, .depth = pgr_cfg.depth,
                               .force_case = kase, .save_dir = pgr_cfg.save_dir, .max_saves = 5, .fault = pgr_cfg.fault,
                               .step_timeout_s = pgr_cfg.step_timeout,
                               .quiet = pgr_cfg.quiet, .progress_s = pgr_cfg.progress, .interrupted = &pgr_interrupted };
        int rc = pgr_explore(dsn, sc, &sc->variants[j], &o, &rs[n]);
        pgr_print_result(stdout, &rs[n]);
        fflush(stdout);
        n++;
        if (rc != 0) {
            snprintf(error, sizeof error, "%s/%s: %s", sc->name, sc->variants[j].name, rs[n - 1].error);
            break;
        }
        if (!pgr_result_matched(&rs[n - 1])) exit_status = 1;
    }
    if (pgr_interrupted && !error[0]) snprintf(error, sizeof error, "interrupted");
    if (pgr_cfg.json_path) {
        char err[PGR_ERRLEN];
        if (pgr_write_json(pgr_cfg.json_path, version, rs, n, error, err, sizeof err) != 0) {
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
    pgr_replay_set *set = pgr_replay_load(files, n, pgr_cfg.quiet);     /* parsed before any server starts */
    if (!set) return 2;
    char dsn[PATH_MAX + 128];
    int rc = pgr_obtain_server(dsn, sizeof dsn) != 0 ? 2
           : pgr_replay(dsn, set, pgr_cfg.repeat, pgr_cfg.quiet, &pgr_interrupted);
    pgr_replay_free(set);
    return rc;
}

/* pgrace payloads [TARGET...]: every payload of every field of every chosen variant. */
static int cmd_payloads(char **targets, int ntargets)
{
    const pgr_scenario *only[64];
    int only_v[64];
    for (int t = 0; t < ntargets && t < 64; t++)
        if (pgr_resolve_target(targets[t], &only[t], &only_v[t]) != 0) return 2;
    char dsn[PATH_MAX + 128];
    if (pgr_obtain_server(dsn, sizeof dsn) != 0) return 2;
    char version[64];
    pgr_server_version_of(dsn, version, sizeof version);
    pgr_payload_checks checks = { 0 };
    char error[PGR_ERRLEN + 160] = "";
    int64_t t0 = pgr_now_ns();
    for (int i = 0; i < pgr_scenario_count() && !error[0]; i++) {
        const pgr_scenario *sc = pgr_scenario_at(i);
        int first = checks.n;
        for (int j = 0; j < sc->nvariants && !error[0]; j++) {
            bool wanted = ntargets == 0;
            for (int t = 0; t < ntargets; t++) wanted |= only[t] == sc && (only_v[t] < 0 || only_v[t] == j);
            if (!wanted) continue;
            if (!pgr_cfg.quiet) fprintf(stderr, "pgrace: payloads against %s/%s\n", sc->name, sc->variants[j].name);
            pgr_payload_opts o = { .sessions = pgr_cfg.sessions, .iso = pgr_cfg.iso, .interrupted = &pgr_interrupted };
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
    if (pgr_cfg.json_path) {
        char err[PGR_ERRLEN];
        if (pgr_write_payloads_json(pgr_cfg.json_path, version, &checks, error, err, sizeof err) != 0) {
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

static int cmd_server(char **pos, int npos)
{
    (void)npos;
    return pgr_server_command(pos[0], pgr_cfg.quiet);
}

static int cmd_ci(char **pos, int npos)
{
    if (pgr_cfg.baseline && access(pgr_cfg.baseline, R_OK) != 0) {
        fprintf(stderr, "pgrace: cannot read baseline %s: %s\n", pgr_cfg.baseline, strerror(errno));
        return 2;
    }
    return pgr_cmd_ci(pos, npos);
}

/* ---- output paths, checked before anything runs ---- */

/* Can a file be written at path? Tried for real: opened for appending when it exists (a
 * directory is not a file), created and removed at once when it does not. 0, or the errno
 * that says why not. */
static int writable_file(const char *path)
{
    struct stat st;
    int fd = -1;
    if (stat(path, &st) == 0) {
        if (S_ISDIR(st.st_mode)) return EISDIR;
        fd = open(path, O_WRONLY | O_APPEND | O_NOCTTY | O_CLOEXEC);
    } else if (errno == ENOENT) {
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOCTTY | O_CLOEXEC, 0644);
        if (fd >= 0) unlink(path);
    }
    if (fd < 0) return errno;
    close(fd);
    return 0;
}

/* Can run's reports go to dir? A directory whose report files can be written, or one that
 * does not exist yet where it can be created (it is, once the server has answered). 0, or
 * the errno that says why not. */
static int writable_out_dir(const char *dir, bool own_json)
{
    struct stat st;
    char path[PATH_MAX];
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT) return errno;
        snprintf(path, sizeof path, "%s.pgrace-check", dir);      /* beside it: can it be made? */
        return writable_file(path);
    }
    if (!S_ISDIR(st.st_mode)) return ENOTDIR;
    static const char *const files[] = { "index.html", "junit.xml", "summary.md", "results.json" };
    for (int i = 0, e; i < 4 - own_json; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if ((e = writable_file(path))) return e;
    }
    return 0;
}

/* The command's output paths (--json, run's and ci's --out), checked before anything runs
 * or any server starts. 0, or -1 with err naming the option, the path and why. */
static int check_outputs(char *err, size_t errlen)
{
    int e;
    if (pgr_cfg.json_path && (e = writable_file(pgr_cfg.json_path))) {
        snprintf(err, errlen, "--json %s: cannot write there: %s", pgr_cfg.json_path, strerror(e));
        return -1;
    }
    if ((pgr_cfg.cmd == PGR_CMD_RUN || pgr_cfg.cmd == PGR_CMD_CI) &&
        (e = writable_out_dir(pgr_cfg.out_dir, pgr_cfg.json_path != NULL))) {
        snprintf(err, errlen, "--out %s: cannot write the reports there: %s", pgr_cfg.out_dir, strerror(e));
        return -1;
    }
    return 0;
}

/* The command table: pgr_commands[] (cli.c) names them and counts their arguments. */
static int (*const commands[PGR_NCMDS])(char **pos, int npos) = {
    [PGR_CMD_LIST] = cmd_list, [PGR_CMD_STRESS] = cmd_stress, [PGR_CMD_RUN] = pgr_cmd_run,
    [PGR_CMD_CI] = cmd_ci, [PGR_CMD_SERVER] = cmd_server, [PGR_CMD_EXPLORE] = cmd_explore,
    [PGR_CMD_REPLAY] = cmd_replay, [PGR_CMD_PAYLOADS] = cmd_payloads, [PGR_CMD_ACCEPT] = pgr_cmd_accept,
    [PGR_CMD_ISOLATION] = pgr_cmd_isolation, [PGR_CMD_PROXY] = pgr_cmd_proxy, [PGR_CMD_HTTP] = cmd_http,
};

int pgr_main(int argc, char **argv)
{
    if (argc < 2) { fputs(pgr_usage_text, stderr); return 2; }
    pgr_config_defaults(&pgr_cfg);
    int npos;
    char **pos, err[PGR_ERRLEN];
    int prc = pgr_cli_parse(argc, argv, &pgr_cfg, &npos, &pos, err, sizeof err);
    if (prc == 1) { fputs(pgr_usage_text, stdout); return 0; }
    if (prc != 0) { fprintf(stderr, "pgrace: %s\n", err); return 2; }
    if (pgr_cfg.app) pgr_spec_set_app(pgr_cfg.app);
    if (pgr_cfg.nclients > 0 && pgr_spec_set_clients(pgr_cfg.clients, pgr_cfg.nclients, err, sizeof err) != 0) {
        fprintf(stderr, "pgrace: %s\n", err);
        return 2;
    }

    if (check_outputs(err, sizeof err) != 0) { fprintf(stderr, "pgrace: %s\n", err); return 2; }
    install_signals();
    pgr_watchdog_configure(&pgr_interrupted, pgr_cfg.step_timeout);
    atexit(pgr_server_cleanup_registered);
    int rc = commands[pgr_cfg.cmd](pos, npos);
    pgr_server_stop(&throwaway);
    if (pgr_interrupted && pgr_cfg.cmd != PGR_CMD_PROXY) {    /* a proxy's way to stop */
        fprintf(stderr, "pgrace: interrupted\n");
        return 128 + pgr_interrupted;
    }
    return rc;
}
