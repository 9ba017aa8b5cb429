/*
 * cmd_isolation.c — `pgrace isolation FILE.spec... [--expected FILE|DIR] [--dsn DSN]`: each
 * spec run the way PostgreSQL's regression suite runs it through isolationtester
 * (spec_isolation.c), in a database of its own created from template0 with pg_regress's
 * settings. Without --expected it prints what isolationtester prints (its stdout here on
 * stdout, its stderr on stderr). With --expected it compares each output with the
 * expected file and prints one line per spec, and a unified diff for each that differs.
 * Every file is read and parsed before a server is started: bad input is one line, exit 2.
 */
#include "app.h"
#include "spec_isolation.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ALL_PERMUTATIONS 100000   /* a spec that lists none runs every one; more is refused */

/* pg_regress's settings of the test database (isolationtester's expected files assume them). */
static const char *const DB_SETTINGS[] = {
    "lc_messages TO 'C'", "lc_monetary TO 'C'", "lc_numeric TO 'C'", "lc_time TO 'C'",
    "bytea_output TO 'hex'", "timezone_abbreviations TO 'Default'",
};

typedef struct iso_job {
    const char *file;
    pgr_spec spec;
    char expected_path[PATH_MAX];
    char *expected;               /* the expected output; NULL without --expected */
    size_t expected_len;
} iso_job;

/* A whole file into memory (NUL-terminated). 0, or -1 with err. */
static int read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno)); return -1; }
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 131072;
            char *g = realloc(buf, cap);
            if (!g) { free(buf); fclose(f); snprintf(err, errlen, "%s: out of memory", path); return -1; }
            buf = g;
        }
        size_t got = fread(buf + n, 1, 65536, f);
        n += got;
        if (got < 65536) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); snprintf(err, errlen, "cannot read %s: I/O error", path); return -1; }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* DIR/BASE.out for spec file `file` (BASE: its name without directory and .spec). */
static void expected_in_dir(const char *dir, const char *file, char *out, size_t len)
{
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".spec") == 0) n -= 5;
    snprintf(out, len, "%s/%.*s.out", dir, (int)n, base);
}

static int admin_exec(PGconn *c, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        err[strcspn(err, "\n")] = '\0';
        PQclear(r);
        return -1;
    }
    PQclear(r);
    return 0;
}

/* A fresh database for one spec, as pg_regress makes one. 0, or -1 with err. */
static int create_database(PGconn *admin, const char *db, char *err, size_t errlen)
{
    char sql[256], e[PGR_ERRLEN];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS \"%s\"", db);
    if (admin_exec(admin, sql, e, sizeof e) != 0) goto fail;
    snprintf(sql, sizeof sql, "CREATE DATABASE \"%s\" TEMPLATE template0", db);
    if (admin_exec(admin, sql, e, sizeof e) != 0) goto fail;
    char all[1024];
    size_t n = 0;
    for (int i = 0; i < PGR_LEN(DB_SETTINGS); i++)
        n += (size_t)snprintf(all + n, sizeof all - n, "ALTER DATABASE \"%s\" SET %s; ", db, DB_SETTINGS[i]);
    if (admin_exec(admin, all, e, sizeof e) != 0) goto fail;
    return 0;
fail:
    snprintf(err, errlen, "cannot create the test database %s: %s", db, e);
    return -1;
}

static void drop_database(PGconn *admin, const char *db)
{
    char sql[256], e[PGR_ERRLEN];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS \"%s\"%s", db,
             PQserverVersion(admin) >= 130000 ? " WITH (FORCE)" : "");
    admin_exec(admin, sql, e, sizeof e);
}

/* `diff -u expected actual` on stdout. */
static void show_diff(const iso_job *j, const pgr_iso_out *out)
{
    const char *tmp = getenv("TMPDIR");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/pgrace-isolation.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) { fprintf(stderr, "pgrace: cannot write a temporary file for the diff: %s\n", strerror(errno)); return; }
    size_t done = 0;
    while (done < out->len) {
        ssize_t w = write(fd, out->buf + done, out->len - done);
        if (w <= 0) break;
        done += (size_t)w;
    }
    close(fd);
    char label[PATH_MAX + 32];
    snprintf(label, sizeof label, "pgrace isolation %s", j->file);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execlp("diff", "diff", "-u", "--label", j->expected_path, "--label", label, j->expected_path, path, (char *)NULL);
        fprintf(stderr, "pgrace: cannot run diff: %s\n", strerror(errno));
        _exit(127);
    }
    if (pid > 0) {
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    }
    unlink(path);
}

/* Read and check everything before a server starts. 0, or -1 after printing why. */
static int prepare_jobs(iso_job *jobs, char **files, int n)
{
    struct stat st;
    bool dir = false;
    if (pgr_cfg.expected) {
        if (stat(pgr_cfg.expected, &st) != 0) {
            fprintf(stderr, "pgrace: --expected %s: %s\n", pgr_cfg.expected, strerror(errno));
            return -1;
        }
        dir = S_ISDIR(st.st_mode);
        if (!dir && n > 1) {
            fprintf(stderr, "pgrace: --expected names one file but %d specs were given (give a directory of NAME.out)\n", n);
            return -1;
        }
    }
    for (int i = 0; i < n; i++) {
        char err[PGR_ERRLEN];
        jobs[i].file = files[i];
        if (pgr_spec_load(files[i], &jobs[i].spec, err, sizeof err) != 0) {
            fprintf(stderr, "pgrace: %s\n", err);
            return -1;
        }
        const pgr_spec *s = &jobs[i].spec;
        if (s->nsessions < 1) {
            fprintf(stderr, "pgrace: %s: no session: isolation runs the sessions and permutations of a spec\n", files[i]);
            return -1;
        }
        if (s->nperms == 0) {
            long long c = pgr_iso_permutation_count(s, MAX_ALL_PERMUTATIONS);
            if (c > MAX_ALL_PERMUTATIONS) {
                fprintf(stderr, "pgrace: %s: lists no permutation and its steps have more than %d; list the ones to run\n",
                        files[i], MAX_ALL_PERMUTATIONS);
                return -1;
            }
        }
        if (pgr_cfg.expected) {
            if (dir) expected_in_dir(pgr_cfg.expected, files[i], jobs[i].expected_path, sizeof jobs[i].expected_path);
            else snprintf(jobs[i].expected_path, sizeof jobs[i].expected_path, "%s", pgr_cfg.expected);
            if (read_file(jobs[i].expected_path, &jobs[i].expected, &jobs[i].expected_len, err, sizeof err) != 0) {
                fprintf(stderr, "pgrace: expected output of %s: %s\n", files[i], err);
                return -1;
            }
        }
    }
    return 0;
}

int pgr_cmd_isolation(char **files, int n)
{
    iso_job *jobs = calloc((size_t)n, sizeof *jobs);
    if (!jobs) { fprintf(stderr, "pgrace: out of memory\n"); return 2; }
    int exit_status = 2;
    PGconn *admin = NULL;
    if (prepare_jobs(jobs, files, n) != 0) goto out;

    char dsn[PATH_MAX + 128], err[PGR_ERRLEN];
    if (pgr_obtain_server(dsn, sizeof dsn) != 0) goto out;
    if (!(admin = pgr_connect(dsn, err, sizeof err))) { fprintf(stderr, "pgrace: %s\n", err); goto out; }

    int identical = 0;
    int64_t t_all = pgr_now_ns();
    exit_status = 0;
    for (int i = 0; i < n; i++) {
        iso_job *j = &jobs[i];
        char db[64];
        snprintf(db, sizeof db, "pgrace_iso_%s_%d", j->spec.name, (int)getpid());
        if (create_database(admin, db, err, sizeof err) != 0) {
            fprintf(stderr, "pgrace: %s: %s\n", j->file, err);
            exit_status = 2;
            break;
        }
        pgr_iso_opts o = { .dsn = dsn, .dbname = db, .interrupted = &pgr_interrupted,
                           .max_step_wait = pgr_cfg.step_timeout > 0 ? pgr_cfg.step_timeout : 300 };
        pgr_iso_out out = { .echo = !j->expected };
        int64_t t0 = pgr_now_ns();
        pgr_iso_end end = pgr_iso_run(&j->spec, &o, &out, err, sizeof err);
        double secs = (double)(pgr_now_ns() - t0) / 1e9;
        drop_database(admin, db);
        if (end == PGR_ISO_ERROR) {
            fprintf(stderr, "pgrace: %s: %s\n", j->file, err);
            pgr_iso_out_free(&out);
            exit_status = 2;
            break;
        }
        if (j->expected) {
            bool same = out.len == j->expected_len && memcmp(out.buf ? out.buf : "", j->expected, out.len) == 0;
            printf("%-4s %6.2f s  %s\n", same ? "ok" : "FAIL", secs, j->file);
            if (same) identical++;
            else { show_diff(j, &out); exit_status = 1; }
            fflush(stdout);
        } else if (end == PGR_ISO_STOPPED) {
            exit_status = 1;
        }
        pgr_iso_out_free(&out);
    }
    if (pgr_cfg.expected && exit_status != 2)
        printf("isolation: %d of %d specs identical to their expected output (%.1f s)\n", identical, n,
               (double)(pgr_now_ns() - t_all) / 1e9);
out:
    if (admin) PQfinish(admin);
    for (int i = 0; i < n; i++) { pgr_spec_free(&jobs[i].spec); free(jobs[i].expected); }
    free(jobs);
    return exit_status;
}
