/*
 * server.c — a throwaway PostgreSQL: initdb into a private temporary directory, postgres
 * listening only on a unix socket in that 0700 directory, fsync/synchronous_commit/
 * full_page_writes off. As root (CI), initdb and postgres run as user "nobody", since
 * initdb refuses root. The directory is removed on every exit path the process controls
 * (return, exit, error, SIGINT/SIGTERM/SIGHUP); initdb and the postmaster also get a
 * parent-death signal, so even a SIGKILLed pgrace does not leave a server running, and the
 * next start reclaims the directory such a dead run left.
 *
 * Nothing is signalled or removed on the word of a file alone: a server directory is ours
 * only with a marker file our user wrote naming it, and a pid is a server of ours only when
 * it is that directory's postmaster (postmaster.pid and /proc agree). Root's pgrace works
 * in directories other users can write to (/tmp, and the server directories "nobody"
 * owns), so files there are opened without following links and judged by owner and mode.
 */
#include "server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MARKER "pgrace.marker"   /* in every server directory, written as pgrace's user */
#define STATE "server.state"     /* the kept server's, in $TMPDIR/pgrace-UID/ */

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
        if (strncmp(*e, "PG", 2) != 0 || strncmp(*e, "PGRACE_", 7) == 0) continue;   /* ours stay */
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

/* In a forked child: write msg (made before fork) to stderr, the log by then, and exit. */
static void child_fail(const char *msg, int status)
{
    if (write(2, msg, strlen(msg)) < 0) _exit(status);
    _exit(status);
}

/* In a forked child: become the server account; exits the child on failure. */
static void child_drop_privileges(uid_t uid, gid_t gid)
{
    if (geteuid() == 0) {
        if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)
            child_fail("pgrace: cannot switch to the server account\n", 126);
    }
}

/* In a forked child, after setuid (which clears it): die with the parent. */
static void child_die_with(pid_t parent, int sig)
{
    prctl(PR_SET_PDEATHSIG, sig);
    if (getppid() != parent) _exit(0);
}

/* The last line of a log, or its last FATAL line: the reason, not the "shut down" after it. */
static void tail_file(const char *path, char *out, size_t len)
{
    out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512];
    bool fatal = false;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        bool is_fatal = strstr(line, "FATAL:") != NULL;
        if (line[0] && (is_fatal || !fatal)) snprintf(out, len, "%s", line);
        fatal |= is_fatal;
    }
    fclose(f);
}

/* $TMPDIR (default /tmp), absolute and without links: markers and the state name
 * directories by this path. */
static int tmp_dir(char *out, size_t len, char *err, size_t errlen)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    char real[PATH_MAX];
    if (!realpath(tmp, real)) {
        snprintf(err, errlen, "TMPDIR %s: %s; set TMPDIR to an existing directory", tmp, strerror(errno));
        return -1;
    }
    snprintf(out, len, "%s", real);
    return 0;
}

/* Say before initdb what would make the server fail in this TMPDIR: a socket path longer
 * than a unix socket allows (postgres only logs it and shuts down), or, as root, a
 * directory on the way that the server account cannot enter (initdb fails without a word). */
static int check_tmp(const char *tmp, uid_t uid, gid_t gid, char *err, size_t errlen)
{
    size_t max = sizeof(((struct sockaddr_un *)0)->sun_path) - 1 - strlen("/pgrace.XXXXXX/.s.PGSQL.5432");
    if (strlen(tmp) > max) {
        snprintf(err, errlen, "TMPDIR %s is too long for the server's unix socket (%zu bytes, at most %zu): "
                 "set TMPDIR to a shorter directory, e.g. /tmp", tmp, strlen(tmp), max);
        return -1;
    }
    if (geteuid() != 0) return 0;
    pid_t pid = fork();
    if (pid < 0) { snprintf(err, errlen, "fork: %s", strerror(errno)); return -1; }
    if (pid == 0) {          /* exit status: the length of the first prefix it cannot enter */
        if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) _exit(255);
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s", tmp);
        for (size_t i = 1, n = strlen(path); i <= n; i++) {
            if (path[i] != '/' && path[i] != '\0') continue;
            char c = path[i];
            path[i] = '\0';
            if (access(path, X_OK) != 0) _exit((int)i);
            path[i] = c;
        }
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) ;
    int bad = WIFEXITED(status) ? WEXITSTATUS(status) : 255;
    if (bad == 0) return 0;
    if (bad == 255) { snprintf(err, errlen, "cannot switch to user nobody to check TMPDIR %s", tmp); return -1; }
    char dir[PATH_MAX];
    struct stat st = { 0 };
    snprintf(dir, sizeof dir, "%.*s", bad, tmp);
    stat(dir, &st);
    snprintf(err, errlen, "TMPDIR %s cannot be used: the server runs as user nobody, which cannot enter %s "
             "(owner uid %d, mode %04o); set TMPDIR to a directory nobody can reach, e.g. /tmp",
             tmp, dir, (int)st.st_uid, (unsigned)(st.st_mode & 07777));
    return -1;
}

/* ---- proving that a directory and a process are ours ---- */

typedef struct marker {
    bool kept;                   /* pgrace server start: outlives the pgrace that made it */
    pid_t pid;                   /* the pgrace that made it */
    unsigned long long start;    /* ... and when that process started: a reused pid is not it */
} marker;

/* pid's start time (/proc/PID/stat field 22); 0 when unknown. */
static unsigned long long proc_start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');            /* the command name may hold spaces and ')' */
    for (int field = 2; field < 22 && p; field++) p = strchr(p + 1, ' ');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

/* Is the pgrace that made a directory still running? Unknown counts as yes. */
static bool maker_alive(const marker *m)
{
    if (m->pid <= 0 || (kill(m->pid, 0) != 0 && errno == ESRCH)) return false;
    unsigned long long now = proc_start_time(m->pid);
    return now == 0 || m->start == 0 || now == m->start;
}

/* Read at most len-1 bytes of dirfd/name, a regular file and not a link (and a FIFO
 * must not block us). -1 with errno (ELOOP a link, EINVAL not a regular file). */
static ssize_t read_small(int dirfd, const char *name, char *buf, size_t len, struct stat *st)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) { close(fd); errno = EINVAL; return -1; }
    ssize_t n = read(fd, buf, len - 1);
    int e = errno;
    close(fd);
    if (n < 0) { errno = e; return -1; }
    buf[n] = '\0';
    if (st) *st = sb;
    return n;
}

static const char *open_why(int e)
{
    return e == ENOENT ? "missing" : e == ELOOP ? "a symbolic link" : e == EINVAL ? "not a regular file" : strerror(e);
}

static int write_marker(const char *dir, bool kept, char *err, size_t errlen)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/" MARKER, dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
        int w = dprintf(fd, "pgrace server directory\ndir=%s\nkind=%s\npid=%d\nstart=%llu\n", dir,
                        kept ? "kept" : "run", (int)getpid(), proc_start_time(getpid()));
        if (close(fd) == 0 && w > 0) return 0;
    }
    snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
    return -1;
}

static int parse_marker(char *buf, const char *dir, marker *m)
{
    memset(m, 0, sizeof *m);
    char *save = NULL, *line = strtok_r(buf, "\n", &save);
    if (!line || strcmp(line, "pgrace server directory") != 0) return -1;
    bool named = false, kind = false;
    while ((line = strtok_r(NULL, "\n", &save))) {
        if (strncmp(line, "dir=", 4) == 0) named = strcmp(line + 4, dir) == 0;
        else if (strcmp(line, "kind=kept") == 0) kind = m->kept = true;
        else if (strcmp(line, "kind=run") == 0) kind = true;
        else if (strncmp(line, "pid=", 4) == 0) m->pid = (pid_t)atol(line + 4);
        else if (strncmp(line, "start=", 6) == 0) m->start = strtoull(line + 6, NULL, 10);
    }
    return named && kind && m->pid > 0 ? 0 : -1;
}

/* Open dir if it is a server directory pgrace made: a real directory (no link) named
 * pgrace.*, mode 0700, owned by us or the server account, holding a marker our user wrote
 * (one link, not writable by others) that names this very path, so that it cannot be moved
 * into another directory. Its fd, or -1 with why (errno ENOENT: it does not exist). */
static int open_our_dir(const char *dir, uid_t server_uid, marker *m, char *why, size_t len)
{
    const char *base = strrchr(dir, '/');
    if (dir[0] != '/' || !base || strncmp(base + 1, "pgrace.", 7) != 0) {
        snprintf(why, len, "not named like one");
        errno = EINVAL;
        return -1;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(why, len, "%s", e == ELOOP || e == ENOTDIR ? "a symbolic link or not a directory" : strerror(e));
        errno = e;
        return -1;
    }
    struct stat st;
    char buf[PATH_MAX + 128];
    if (fstat(fd, &st) != 0 || (st.st_uid != geteuid() && st.st_uid != server_uid))
        snprintf(why, len, "owned by uid %d", (int)st.st_uid);
    else if (st.st_mode & 077)
        snprintf(why, len, "mode %04o, not 0700", (unsigned)(st.st_mode & 07777));
    else if (read_small(fd, MARKER, buf, sizeof buf, &st) < 0)
        snprintf(why, len, "its %s is %s", MARKER, open_why(errno));
    else if (st.st_uid != geteuid() || st.st_nlink != 1 || (st.st_mode & 022))
        snprintf(why, len, "its %s was not written by pgrace (owner uid %d, %d links, mode %04o)", MARKER,
                 (int)st.st_uid, (int)st.st_nlink, (unsigned)(st.st_mode & 07777));
    else if (parse_marker(buf, dir, m) != 0)
        snprintf(why, len, "its %s does not name it", MARKER);
    else
        return fd;
    close(fd);
    errno = EPERM;
    return -1;
}

/* Prove pid is the postmaster of server directory dir (open as dfd): data/postmaster.pid
 * names pid and dir/data, and /proc shows the postgres binary, run by the server account
 * with -D dir/data. 0, or -1 with why. */
static int prove_postmaster(int dfd, const char *dir, pid_t pid, uid_t server_uid, char *why, size_t len)
{
    char data[PATH_MAX + 8], buf[8192], path[64];
    snprintf(data, sizeof data, "%s/data", dir);
    size_t dlen = strlen(data);
    int ddf = openat(dfd, "data", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    ssize_t n = ddf >= 0 ? read_small(ddf, "postmaster.pid", buf, sizeof buf, NULL) : -1;
    if (ddf >= 0) close(ddf);
    char *nl = n > 0 ? strchr(buf, '\n') : NULL;
    if (!nl || atol(buf) != (long)pid || strncmp(nl + 1, data, dlen) != 0 || nl[1 + dlen] != '\n') {
        snprintf(why, len, "%s/postmaster.pid does not name pid %d", data, (int)pid);
        return -1;
    }
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    const char *u = read_small(AT_FDCWD, path, buf, sizeof buf, NULL) > 0 ? strstr(buf, "\nUid:") : NULL;
    unsigned long ruid, euid;
    if (!u || sscanf(u + 5, "%lu %lu", &ruid, &euid) != 2 || ruid != server_uid || euid != server_uid) {
        snprintf(why, len, "pid %d is not run by the server account (uid %d)", (int)pid, (int)server_uid);
        return -1;
    }
    snprintf(path, sizeof path, "/proc/%d/exe", (int)pid);
    ssize_t l = readlink(path, buf, sizeof buf - 1);
    buf[l > 0 ? l : 0] = '\0';
    const char *exe = strrchr(buf, '/');
    if (!exe || (strcmp(exe, "/postgres") != 0 && strcmp(exe, "/postgres (deleted)") != 0)) {
        snprintf(why, len, "pid %d is not postgres (%s)", (int)pid, buf[0] ? buf : "no executable");
        return -1;
    }
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    n = read_small(AT_FDCWD, path, buf, sizeof buf, NULL);
    for (ssize_t i = 0; n > 0 && i < n; i += (ssize_t)strlen(buf + i) + 1)
        if (strcmp(buf + i, "-D") == 0 && i + 3 < n && strcmp(buf + i + 3, data) == 0) return 0;
    snprintf(why, len, "pid %d is not postgres -D %s", (int)pid, data);
    return -1;
}

/* The live postmaster of server directory dir (open as dfd), proven: a pidfd (a signal
 * through it cannot reach a process that has since reused the pid); -1 when none runs;
 * -2 when postmaster.pid names a live process that cannot be proven to be it (why says
 * why): neither signalled nor is its directory removed. */
static int live_postmaster(int dfd, const char *dir, uid_t server_uid, pid_t *pid, char *why, size_t len)
{
    char buf[64];
    int ddf = openat(dfd, "data", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    ssize_t n = ddf >= 0 ? read_small(ddf, "postmaster.pid", buf, sizeof buf, NULL) : -1;
    if (ddf >= 0) close(ddf);
    why[0] = '\0';
    *pid = n > 0 ? (pid_t)atol(buf) : 0;
    if (*pid <= 0) return -1;
    int pfd = pidfd_open(*pid, 0);
    if (pfd < 0) return -1;
    if (prove_postmaster(dfd, dir, *pid, server_uid, why, len) != 0) { close(pfd); return -2; }
    return pfd;
}

/* Stop a proven postmaster that is not our child: fast shutdown, then immediate, then kill. */
static void stop_pidfd(int pidfd)
{
    static const struct { int sig, ms; } steps[] = { { SIGINT, 15000 }, { SIGQUIT, 5000 }, { SIGKILL, 5000 } };
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        if (pidfd_send_signal(pidfd, steps[i].sig, NULL, 0) != 0) return;    /* gone */
        pidfd_send_signal(pidfd, SIGCONT, NULL, 0);                          /* a stopped one too */
        struct pollfd p = { .fd = pidfd, .events = POLLIN };
        int r;
        while ((r = poll(&p, 1, steps[i].ms)) < 0 && errno == EINTR) ;
        if (r > 0) return;
    }
}

/* Empty the directory open as dfd, never following a link: the server account owns the
 * tree and could swap a directory for a link elsewhere while root walks it. At the top the
 * marker goes last, so that a directory half removed is still known to be ours. */
static void remove_at(int dfd, int depth)
{
    for (int pass = 0, removed = 1; removed && pass < 4 && depth < 32; pass++) {
        int fd2 = dup(dfd);
        DIR *d = fd2 >= 0 ? fdopendir(fd2) : NULL;
        if (!d) { if (fd2 >= 0) close(fd2); return; }
        rewinddir(d);
        removed = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            const char *n = e->d_name;
            if (!strcmp(n, ".") || !strcmp(n, "..") || (depth == 0 && !strcmp(n, MARKER))) continue;
            if (unlinkat(dfd, n, 0) == 0) { removed = 1; continue; }
            if (errno != EISDIR) continue;
            int sub = openat(dfd, n, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0) continue;
            remove_at(sub, depth + 1);
            close(sub);
            if (unlinkat(dfd, n, AT_REMOVEDIR) == 0) removed = 1;
        }
        closedir(d);
    }
    if (depth == 0) unlinkat(dfd, MARKER, 0);
}

/* Remove dir if it is a server directory of ours; anything else is not ours to remove. */
static void remove_our_dir(const char *dir, uid_t server_uid)
{
    marker m;
    char why[PATH_MAX + 128];
    int dfd = open_our_dir(dir, server_uid, &m, why, sizeof why);
    if (dfd < 0) return;
    remove_at(dfd, 0);
    close(dfd);
    rmdir(dir);
}

/* Remove the server directories dead runs left in tmp (a SIGKILLed pgrace): ours by their
 * marker, the pgrace that made them gone, and no postmaster of ours alive in them (a dead
 * run's orphan is stopped first; a kept server's never is). So a concurrent run's
 * directory, and a kept server's while it runs, stay. */
static void reclaim_dead_runs(const char *tmp, uid_t server_uid)
{
    DIR *d = opendir(tmp);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "pgrace.", 7) != 0 || strlen(e->d_name) != 13) continue;
        char dir[PATH_MAX + 16], why[PATH_MAX + 128];
        snprintf(dir, sizeof dir, "%s/%s", tmp, e->d_name);
        marker m;
        int dfd = open_our_dir(dir, server_uid, &m, why, sizeof why);
        if (dfd < 0) continue;
        bool busy = maker_alive(&m);
        pid_t pm;
        int pfd = busy ? -1 : live_postmaster(dfd, dir, server_uid, &pm, why, sizeof why);
        if (pfd >= 0) {
            if (m.kept) busy = true; else stop_pidfd(pfd);
            close(pfd);
        }
        busy |= pfd == -2;
        if (!busy) remove_at(dfd, 0);
        close(dfd);
        if (!busy) rmdir(dir);
    }
    closedir(d);
}

/* ---- the server ---- */

/* Run initdb as the server account; output goes to DIR/initdb.log. */
static int run_initdb(const pgr_server *srv, const char *bindir, uid_t uid, gid_t gid,
                      volatile int *interrupted, char *err, size_t errlen)
{
    char initdb[PATH_MAX + 16], data[PATH_MAX + 8], log[PATH_MAX + 16], nochdir[PATH_MAX + 64], noexec[PATH_MAX + 64];
    snprintf(initdb, sizeof initdb, "%s/initdb", bindir);
    snprintf(data, sizeof data, "%s/data", srv->dir);
    snprintf(log, sizeof log, "%s/initdb.log", srv->dir);
    snprintf(nochdir, sizeof nochdir, "pgrace: the server account cannot enter %s\n", srv->dir);
    snprintf(noexec, sizeof noexec, "pgrace: cannot run %s\n", initdb);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) { snprintf(err, errlen, "fork: %s", strerror(errno)); return -1; }
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
        setpgid(0, 0);
        child_drop_privileges(uid, gid);
        child_die_with(parent, SIGTERM);     /* initdb removes its data directory on SIGTERM */
        if (chdir(srv->dir) != 0) child_fail(nochdir, 126);
        execl(initdb, initdb, "-D", data, "-U", "pgrace", "-A", "trust", "-E", "UTF8",
              "--locale=C", "--no-sync", "--no-instructions", (char *)NULL);
        child_fail(noexec, 127);
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
    char bindir[PATH_MAX], tmp[PATH_MAX];
    if (find_bindir(bindir, sizeof bindir, err, errlen) != 0) return -1;
    uid_t uid; gid_t gid;
    if (server_account(&uid, &gid) != 0) {
        snprintf(err, errlen, "running as root and there is no user 'nobody' to run the server as");
        return -1;
    }
    if (tmp_dir(tmp, sizeof tmp, err, errlen) != 0 || check_tmp(tmp, uid, gid, err, errlen) != 0) return -1;
    reclaim_dead_runs(tmp, uid);
    snprintf(srv->dir, sizeof srv->dir, "%s/pgrace.XXXXXX", tmp);
    if (!mkdtemp(srv->dir)) {
        snprintf(err, errlen, "cannot create a temporary directory in %s: %s", tmp, strerror(errno));
        srv->dir[0] = '\0';
        return -1;
    }
    /* the marker first, so that the directory is known to be ours whatever happens next */
    if (write_marker(srv->dir, detached, err, errlen) != 0) {
        rmdir(srv->dir);
        srv->dir[0] = '\0';
        return -1;
    }
    if (!detached) registered = srv;
    if (geteuid() == 0 && chown(srv->dir, uid, gid) != 0) {
        snprintf(err, errlen, "chown %s: %s", srv->dir, strerror(errno));
        goto fail;
    }
    if (run_initdb(srv, bindir, uid, gid, interrupted, err, errlen) != 0) goto fail;

    char postgres[PATH_MAX + 16], data[PATH_MAX + 8], log[PATH_MAX + 16], nochdir[PATH_MAX + 64], noexec[PATH_MAX + 64];
    snprintf(postgres, sizeof postgres, "%s/postgres", bindir);
    snprintf(data, sizeof data, "%s/data", srv->dir);
    snprintf(log, sizeof log, "%s/server.log", srv->dir);
    snprintf(nochdir, sizeof nochdir, "pgrace: the server account cannot enter %s\n", srv->dir);
    snprintf(noexec, sizeof noexec, "pgrace: cannot run %s\n", postgres);
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
        if (!detached) child_die_with(parent, SIGINT);     /* SIGINT = fast shutdown */
        if (chdir(srv->dir) != 0) child_fail(nochdir, 126);
        execl(postgres, postgres, "-D", data, "-k", srv->dir, "-p", "5432",
              "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
              "-c", "full_page_writes=off", "-c", "max_connections=300",
              "-c", "deadlock_timeout=20ms", "-c", "shared_buffers=128MB",
              "-c", "unix_socket_permissions=0700", "-c", "log_min_messages=warning",
              "-c", "log_min_error_statement=panic", "-c", "max_locks_per_transaction=256",
              (char *)NULL);
        child_fail(noexec, 127);
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

/* SIGCONT to every child of pid (a postmaster's backends: each is a process group of its own,
 * so the postmaster's group does not reach them). Someone may have stopped them: a frozen
 * server must still shut down when we stop it. */
static void continue_children(pid_t pid)
{
    DIR *d = opendir("/proc");
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[64], buf[512];
        if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) continue;
        buf[n] = '\0';
        const char *rp = strrchr(buf, ')');          /* the name may hold anything; the rest not */
        int ppid;
        if (rp && sscanf(rp + 1, " %*c %d", &ppid) == 1 && ppid == pid) kill((pid_t)atoi(e->d_name), SIGCONT);
    }
    closedir(d);
}

/* Wait up to ms for our child pid to exit, reaping it. 1 when gone. */
static int wait_child(pid_t pid, int ms)
{
    for (int t = 0; t <= ms; t += 10) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid || (w < 0 && errno == ECHILD)) return 1;
        sleep_ms(10);
    }
    return 0;
}

void pgr_server_stop(pgr_server *srv)
{
    if (srv->pid > 0) {
        /* this process started it, so it is our child: unreaped, its pid cannot be reused */
        kill(srv->pid, SIGINT);                       /* fast shutdown */
        continue_children(srv->pid);                  /* a stopped backend shuts down too */
        if (!wait_child(srv->pid, 15000)) {
            kill(srv->pid, SIGQUIT);                  /* immediate shutdown */
            if (!wait_child(srv->pid, 5000)) {
                kill(srv->pid, SIGKILL);
                wait_child(srv->pid, 5000);
            }
        }
        srv->pid = 0;
    }
    uid_t uid; gid_t gid;
    if (srv->dir[0] && server_account(&uid, &gid) == 0) remove_our_dir(srv->dir, uid);
    srv->dir[0] = '\0';
    if (registered == srv) registered = NULL;
}

void pgr_server_cleanup_registered(void)
{
    if (registered) pgr_server_stop(registered);
}

/* ---- the kept server: pgrace server start|stop|status ---- */

/* $TMPDIR/pgrace-UID, where the kept server's state lives: a directory only its owner can
 * write (the old $TMPDIR/pgrace-server-UID.state had a name anyone could plant first). Its
 * fd; -2 when it does not exist and create is false; -1 with why. */
static int state_dir(const char *tmp, bool create, char *path, size_t len, char *why, size_t whylen)
{
    snprintf(path, len, "%s/pgrace-%d", tmp, (int)geteuid());
    if (create && mkdir(path, 0700) != 0 && errno != EEXIST) {
        snprintf(why, whylen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT && !create) return -2;
        snprintf(why, whylen, "%s: %s", path, strerror(errno));
        return -1;
    }
    int fd = S_ISLNK(st.st_mode) ? -1 : open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0)
        snprintf(why, whylen, "refusing %s: %s", path, S_ISLNK(st.st_mode) ? "a symbolic link" : strerror(errno));
    else if (st.st_uid != geteuid())
        snprintf(why, whylen, "refusing %s: owned by uid %d, not by us (uid %d); remove it if you did not make it",
                 path, (int)st.st_uid, (int)geteuid());
    else if (st.st_mode & 077)
        snprintf(why, whylen, "refusing %s: mode %04o, it must be 0700", path, (unsigned)(st.st_mode & 07777));
    else
        return fd;
    if (fd >= 0) close(fd);
    return -1;
}

enum { ST_NONE, ST_LIVE, ST_STALE, ST_REFUSE };

/* Read the state in the state directory (open as sfd) and judge it. ST_LIVE: srv is a
 * running server proven ours, *pidfd its postmaster; ST_STALE: nothing of ours runs there
 * (srv->dir, if it still exists, is ours); ST_NONE: no state; ST_REFUSE: why says what is
 * wrong. The DSN is made from the proven directory, never read. */
static int load_state(int sfd, const char *sdir, uid_t server_uid, pgr_server *srv, int *pidfd,
                      char *why, size_t len)
{
    char path[PATH_MAX + 32], buf[2 * PATH_MAX], reason[PATH_MAX + 160];
    snprintf(path, sizeof path, "%s/" STATE, sdir);
    memset(srv, 0, sizeof *srv);
    srv->detached = true;
    *pidfd = -1;
    struct stat st;
    if (read_small(sfd, STATE, buf, sizeof buf, &st) < 0) {
        if (errno == ENOENT) return ST_NONE;
        snprintf(why, len, "refusing %s: %s", path, open_why(errno));
        return ST_REFUSE;
    }
    if (st.st_uid != geteuid() || (st.st_mode & 022) || st.st_nlink != 1) {
        if (st.st_uid != geteuid())
            snprintf(reason, sizeof reason, "owned by uid %d, not by us (uid %d)", (int)st.st_uid, (int)geteuid());
        else if (st.st_mode & 022)
            snprintf(reason, sizeof reason, "writable by others (mode %04o)", (unsigned)(st.st_mode & 07777));
        else
            snprintf(reason, sizeof reason, "%d hard links", (int)st.st_nlink);
        snprintf(why, len, "refusing %s: %s; remove it if you did not make it", path, reason);
        return ST_REFUSE;
    }
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (strncmp(line, "pid=", 4) == 0) srv->pid = (pid_t)atol(line + 4);
        else if (strncmp(line, "dir=", 4) == 0) snprintf(srv->dir, sizeof srv->dir, "%s", line + 4);
    }
    if (srv->pid <= 0 || !srv->dir[0]) {
        snprintf(why, len, "refusing %s: no pid= and dir= in it", path);
        return ST_REFUSE;
    }
    snprintf(srv->dsn, sizeof srv->dsn, "host=%s port=5432 user=pgrace dbname=postgres", srv->dir);
    marker m;
    int dfd = open_our_dir(srv->dir, server_uid, &m, reason, sizeof reason);
    if (dfd < 0 && errno == ENOENT) return ST_STALE;     /* its directory is gone: so is its server */
    if (dfd >= 0 && !m.kept) { close(dfd); dfd = -1; snprintf(reason, sizeof reason, "it is a run's"); }
    if (dfd < 0) {
        snprintf(why, len, "refusing %s: it names %s, not a kept pgrace server directory (%s)", path, srv->dir, reason);
        return ST_REFUSE;
    }
    pid_t pm;
    int pfd = live_postmaster(dfd, srv->dir, server_uid, &pm, reason, sizeof reason);
    close(dfd);
    if (pfd == -1) return ST_STALE;                      /* no server runs there */
    if (pfd == -2) {
        snprintf(why, len, "refusing %s: %s/data/postmaster.pid names live pid %d, which is not its server (%s)",
                 path, srv->dir, (int)pm, reason);
        return ST_REFUSE;
    }
    if (pm != srv->pid) {
        close(pfd);
        snprintf(why, len, "refusing %s: pid %d is not the postmaster of %s (pid %d is)", path, (int)srv->pid,
                 srv->dir, (int)pm);
        return ST_REFUSE;
    }
    *pidfd = pfd;
    return ST_LIVE;
}

static int start_kept(int sfd, const char *sdir, bool quiet)
{
    pgr_server srv;
    char err[PATH_MAX + 256];
    if (pgr_server_start(&srv, true, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "pgrace: cannot start the server: %s\n", err);
        return 2;
    }
    unlinkat(sfd, STATE, 0);
    int fd = openat(sfd, STATE, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    int w = fd >= 0 ? dprintf(fd, "pid=%d\ndir=%s\ndsn=%s\n", (int)srv.pid, srv.dir, srv.dsn) : -1;
    if (fd < 0 || close(fd) != 0 || w < 0) {
        fprintf(stderr, "pgrace: cannot write %s/" STATE ": %s\n", sdir, strerror(errno));
        pgr_server_stop(&srv);
        return 2;
    }
    printf("%s\n", srv.dsn);
    if (!quiet) fprintf(stderr, "pgrace: server running (pid %d); use --dsn '%s' or PGRACE_DSN; stop it with 'pgrace server stop'\n", (int)srv.pid, srv.dsn);
    return 0;
}

int pgr_server_command(const char *action, bool quiet)
{
    bool start = strcmp(action, "start") == 0, stop = strcmp(action, "stop") == 0;
    if (!start && !stop && strcmp(action, "status") != 0) {
        fprintf(stderr, "pgrace: server: unknown action '%s' (start, stop or status)\n", action);
        return 2;
    }
    char tmp[PATH_MAX], sdir[PATH_MAX + 32], why[2 * PATH_MAX + 512];
    uid_t uid; gid_t gid;
    if (server_account(&uid, &gid) != 0) {
        fprintf(stderr, "pgrace: running as root and there is no user 'nobody' to run the server as\n");
        return 2;
    }
    if (tmp_dir(tmp, sizeof tmp, why, sizeof why) != 0) { fprintf(stderr, "pgrace: %s\n", why); return 2; }
    int sfd = state_dir(tmp, start, sdir, sizeof sdir, why, sizeof why);
    if (sfd == -1) { fprintf(stderr, "pgrace: %s\n", why); return 2; }
    pgr_server srv;
    int pidfd = -1;
    int st = sfd >= 0 ? load_state(sfd, sdir, uid, &srv, &pidfd, why, sizeof why) : ST_NONE;
    if (st == ST_REFUSE) {
        fprintf(stderr, "pgrace: %s\n", why);      /* nothing signalled, nothing removed */
        close(sfd);
        return 2;
    }
    bool alive = st == ST_LIVE && PQping(srv.dsn) == PQPING_OK;
    int rc = 0;
    if (!start && !stop) {
        if (alive) printf("running pid %d dsn %s\n", (int)srv.pid, srv.dsn);
        else { printf("not running\n"); rc = 1; }
    } else if (start && alive) {
        printf("%s\n", srv.dsn);
        if (!quiet) fprintf(stderr, "pgrace: server already running (pid %d)\n", (int)srv.pid);
    } else {                   /* stop, or start over one that does not answer or is gone */
        if (st == ST_LIVE) stop_pidfd(pidfd);
        if (st != ST_NONE) { remove_our_dir(srv.dir, uid); unlinkat(sfd, STATE, 0); }
        if (stop && !quiet) fprintf(stderr, st == ST_LIVE ? "pgrace: server stopped\n" : "pgrace: no server was running\n");
        if (start) rc = start_kept(sfd, sdir, quiet);
    }
    if (pidfd >= 0) close(pidfd);
    if (sfd >= 0) close(sfd);
    return rc;
}
