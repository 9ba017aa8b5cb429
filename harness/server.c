/*
 * server.c — a throwaway PostgreSQL: initdb into a private temporary directory, postgres
 * listening only on a unix socket in that 0700 directory, fsync/synchronous_commit/
 * full_page_writes off. As root (CI), initdb and postgres run as user "nobody", since
 * initdb refuses root. The directory is removed on every exit path the process controls
 * (return, exit, error, SIGINT/SIGTERM); the postmaster also gets a parent-death signal,
 * so even a SIGKILLed pgrace does not leave a server running.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static pgr_server *registered;   /* the throwaway server to clean up on exit */

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

void pgr_scrub_pg_env(bool keep_auth)
{
    /* Collect names first: unsetenv while walking environ skips entries. */
    char names[64][64];
    int n = 0;
    for (char **e = environ; *e && n < 64; e++) {
        if (strncmp(*e, "PG", 2) != 0) continue;
        const char *eq = strchr(*e, '=');
        size_t len = eq ? (size_t)(eq - *e) : strlen(*e);
        if (len >= sizeof names[0]) continue;
        memcpy(names[n], *e, len);
        names[n][len] = '\0';
        if (keep_auth && (strcmp(names[n], "PGPASSWORD") == 0 || strcmp(names[n], "PGPASSFILE") == 0 ||
                          strncmp(names[n], "PGSSL", 5) == 0 || strcmp(names[n], "PGAPPNAME") == 0))
            continue;
        n++;
    }
    for (int i = 0; i < n; i++) unsetenv(names[i]);
}

static int find_bindir(char *out, size_t len, char *err, size_t errlen)
{
    const char *env = getenv("PGRACE_PG_BINDIR");
    if (env && *env) {
        snprintf(out, len, "%s", env);
    } else {
        FILE *p = popen("pg_config --bindir 2>/dev/null", "r");
        out[0] = '\0';
        if (p) {
            if (!fgets(out, (int)len, p)) out[0] = '\0';
            pclose(p);
        }
        out[strcspn(out, "\n")] = '\0';
        if (!out[0]) snprintf(out, len, "/usr/lib/postgresql/15/bin");
    }
    char probe[PATH_MAX + 16];
    snprintf(probe, sizeof probe, "%s/initdb", out);
    if (access(probe, X_OK) != 0) {
        snprintf(err, errlen, "no initdb in %s (install postgresql, or set PGRACE_PG_BINDIR)", out);
        return -1;
    }
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *dir)
{
    if (dir[0]) nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* The unprivileged account to run the server as when we are root. */
static int server_account(uid_t *uid, gid_t *gid)
{
    if (geteuid() != 0) { *uid = geteuid(); *gid = getegid(); return 0; }
    struct passwd *pw = getpwnam("nobody");
    if (!pw) return -1;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return 0;
}

/* In a forked child: become the server account; exits the child on failure. */
static void child_drop_privileges(uid_t uid, gid_t gid)
{
    if (geteuid() == 0) {
        if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) _exit(126);
    }
}

static void tail_file(const char *path, char *out, size_t len)
{
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0]) snprintf(out, len, "%s", line);
    }
    fclose(f);
}

/* Run initdb as the server account; output goes to DIR/initdb.log. */
static int run_initdb(const pgr_server *srv, const char *bindir, uid_t uid, gid_t gid,
                      volatile int *interrupted, char *err, size_t errlen)
{
    char initdb[PATH_MAX + 16], data[PATH_MAX + 8], log[PATH_MAX + 16];
    snprintf(initdb, sizeof initdb, "%s/initdb", bindir);
    snprintf(data, sizeof data, "%s/data", srv->dir);
    snprintf(log, sizeof log, "%s/initdb.log", srv->dir);
    pid_t pid = fork();
    if (pid < 0) { snprintf(err, errlen, "fork: %s", strerror(errno)); return -1; }
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
        setpgid(0, 0);
        child_drop_privileges(uid, gid);
        if (chdir(srv->dir) != 0) _exit(126);
        execl(initdb, initdb, "-D", data, "-U", "pgrace", "-A", "trust", "-E", "UTF8",
              "--locale=C", "--no-sync", "--no-instructions", (char *)NULL);
        _exit(127);
    }
    int status;
    for (;;) {
        pid_t w = waitpid(pid, &status, 0);
        if (w == pid) break;
        if (w < 0 && errno == EINTR && interrupted && *interrupted) {
            /* initdb's own children (postgres --boot) share its process group: kill them
             * all and wait until none is left writing into the directory. */
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            for (int t = 0; t < 500 && kill(-pid, 0) == 0; t++) sleep_ms(10);
            snprintf(err, errlen, "interrupted during initdb");
            return -1;
        }
        if (w < 0 && errno != EINTR) { snprintf(err, errlen, "waitpid: %s", strerror(errno)); return -1; }
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char last[400];
        tail_file(log, last, sizeof last);
        snprintf(err, errlen, "initdb failed (status %d): %s", WIFEXITED(status) ? WEXITSTATUS(status) : -1, last);
        return -1;
    }
    return 0;
}

int pgr_server_start(pgr_server *srv, bool detached, volatile int *interrupted, char *err, size_t errlen)
{
    memset(srv, 0, sizeof *srv);
    srv->detached = detached;
    char bindir[PATH_MAX];
    if (find_bindir(bindir, sizeof bindir, err, errlen) != 0) return -1;
    uid_t uid; gid_t gid;
    if (server_account(&uid, &gid) != 0) {
        snprintf(err, errlen, "running as root and there is no user 'nobody' to run the server as");
        return -1;
    }
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    snprintf(srv->dir, sizeof srv->dir, "%s/pgrace.XXXXXX", tmp);
    if (!mkdtemp(srv->dir)) {
        snprintf(err, errlen, "cannot create a temporary directory in %s: %s", tmp, strerror(errno));
        srv->dir[0] = '\0';
        return -1;
    }
    if (!detached) registered = srv;
    if (geteuid() == 0 && chown(srv->dir, uid, gid) != 0) {
        snprintf(err, errlen, "chown %s: %s", srv->dir, strerror(errno));
        goto fail;
    }
    if (run_initdb(srv, bindir, uid, gid, interrupted, err, errlen) != 0) goto fail;

    char postgres[PATH_MAX + 16], data[PATH_MAX + 8], log[PATH_MAX + 16];
    snprintf(postgres, sizeof postgres, "%s/postgres", bindir);
    snprintf(data, sizeof data, "%s/data", srv->dir);
    snprintf(log, sizeof log, "%s/server.log", srv->dir);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) { snprintf(err, errlen, "fork: %s", strerror(errno)); goto fail; }
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) { dup2(devnull, 0); close(devnull); }
        if (detached) setsid(); else setpgid(0, 0);
        child_drop_privileges(uid, gid);
        if (!detached) {
            /* after setuid, which clears it; SIGINT = fast shutdown */
            prctl(PR_SET_PDEATHSIG, SIGINT);
            if (getppid() != parent) _exit(0);
        }
        if (chdir(srv->dir) != 0) _exit(126);
        execl(postgres, postgres, "-D", data, "-k", srv->dir, "-p", "5432",
              "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
              "-c", "full_page_writes=off", "-c", "max_connections=300",
              "-c", "deadlock_timeout=20ms", "-c", "shared_buffers=128MB",
              "-c", "unix_socket_permissions=0700", "-c", "log_min_messages=warning",
              "-c", "log_min_error_statement=panic", "-c", "max_locks_per_transaction=256",
              (char *)NULL);
        _exit(127);
    }
    srv->pid = pid;
    snprintf(srv->dsn, sizeof srv->dsn, "host=%s port=5432 user=pgrace dbname=postgres", srv->dir);

    for (int waited = 0;; waited += 20) {
        if (PQping(srv->dsn) == PQPING_OK) break;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            srv->pid = 0;
            char last[400];
            tail_file(log, last, sizeof last);
            snprintf(err, errlen, "the server exited while starting: %s", last);
            goto fail;
        }
        if (interrupted && *interrupted) { snprintf(err, errlen, "interrupted while starting the server"); goto fail; }
        if (waited > 60000) { snprintf(err, errlen, "the server did not accept connections within 60 s"); goto fail; }
        sleep_ms(20);
    }
    return 0;
fail:
    pgr_server_stop(srv);
    return -1;
}

/* Wait up to ms for pid to exit (our child: reap it; detached: probe). 1 when gone. */
static int wait_gone(pid_t pid, bool child, int ms)
{
    for (int t = 0; t <= ms; t += 10) {
        if (child) {
            int st;
            pid_t w = waitpid(pid, &st, WNOHANG);
            if (w == pid || (w < 0 && errno == ECHILD)) return 1;
        } else if (kill(pid, 0) != 0 && errno == ESRCH) {
            return 1;
        }
        sleep_ms(10);
    }
    return 0;
}

void pgr_server_stop(pgr_server *srv)
{
    if (srv->pid > 0) {
        bool child = !srv->detached;
        kill(srv->pid, SIGINT);                       /* fast shutdown */
        if (!wait_gone(srv->pid, child, 15000)) {
            kill(srv->pid, SIGQUIT);                  /* immediate shutdown */
            if (!wait_gone(srv->pid, child, 5000)) {
                kill(srv->pid, SIGKILL);
                wait_gone(srv->pid, child, 5000);
            }
        }
        srv->pid = 0;
    }
    remove_tree(srv->dir);
    srv->dir[0] = '\0';
    if (registered == srv) registered = NULL;
}

void pgr_server_cleanup_registered(void)
{
    if (registered) pgr_server_stop(registered);
}

/* ---- the kept server: pgrace server start|stop|status ---- */

static void state_path(char *out, size_t len)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    snprintf(out, len, "%s/pgrace-server-%d.state", tmp, (int)getuid());
}

static int read_state(pgr_server *srv)
{
    char path[PATH_MAX];
    state_path(path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    memset(srv, 0, sizeof *srv);
    srv->detached = true;
    char line[PATH_MAX + 80];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "pid=", 4) == 0) srv->pid = (pid_t)atol(line + 4);
        else if (strncmp(line, "dir=", 4) == 0) snprintf(srv->dir, sizeof srv->dir, "%s", line + 4);
        else if (strncmp(line, "dsn=", 4) == 0) snprintf(srv->dsn, sizeof srv->dsn, "%s", line + 4);
    }
    fclose(f);
    return (srv->pid > 0 && srv->dir[0] && srv->dsn[0]) ? 0 : -1;
}

static bool kept_alive(const pgr_server *srv)
{
    return srv->pid > 0 && kill(srv->pid, 0) == 0 && PQping(srv->dsn) == PQPING_OK;
}

int pgr_server_command(const char *action, bool quiet)
{
    char path[PATH_MAX];
    state_path(path, sizeof path);
    pgr_server srv;
    bool have = read_state(&srv) == 0;
    bool alive = have && kept_alive(&srv);

    if (strcmp(action, "start") == 0) {
        if (alive) {
            printf("%s\n", srv.dsn);
            if (!quiet) fprintf(stderr, "pgrace: server already running (pid %d)\n", (int)srv.pid);
            return 0;
        }
        if (have) { pgr_server_stop(&srv); unlink(path); }
        char err[512];
        if (pgr_server_start(&srv, true, NULL, err, sizeof err) != 0) {
            fprintf(stderr, "pgrace: cannot start the server: %s\n", err);
            return 2;
        }
        FILE *f = fopen(path, "w");
        if (!f) {
            fprintf(stderr, "pgrace: cannot write %s: %s\n", path, strerror(errno));
            pgr_server_stop(&srv);
            return 2;
        }
        fprintf(f, "pid=%d\ndir=%s\ndsn=%s\n", (int)srv.pid, srv.dir, srv.dsn);
        fclose(f);
        printf("%s\n", srv.dsn);
        if (!quiet) fprintf(stderr, "pgrace: server running (pid %d); use --dsn '%s' or PGRACE_DSN; stop it with 'pgrace server stop'\n", (int)srv.pid, srv.dsn);
        return 0;
    }
    if (strcmp(action, "stop") == 0) {
        if (have) pgr_server_stop(&srv);
        unlink(path);
        if (!quiet) fprintf(stderr, have ? "pgrace: server stopped\n" : "pgrace: no server was running\n");
        return 0;
    }
    if (strcmp(action, "status") == 0) {
        if (alive) { printf("running pid %d dsn %s\n", (int)srv.pid, srv.dsn); return 0; }
        printf("not running\n");
        return 1;
    }
    fprintf(stderr, "pgrace: server: unknown action '%s' (start, stop or status)\n", action);
    return 2;
}
