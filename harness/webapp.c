/*
 * webapp.c — start, watch and stop the application instances of an http variant (webapp.h).
 *
 * Each instance runs as `/bin/sh -c CMD` in a process group of its own, stdin /dev/null, its
 * stdout and stderr into an anonymous file (memfd) that pgrace reads only to quote the last
 * line when the instance fails. Its port is one the kernel just gave pgrace on 127.0.0.1.
 * Ready means a TCP connect to it succeeds.
 */
#include "webapp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct instance {
    pid_t pid;                       /* 0: not running (never started, or reaped) */
    int port;
    int log;                         /* memfd: its stdout and stderr */
    int wstatus;
    bool exited;
} instance;

struct pgr_webapp {
    pgr_webapp_opts o;
    int n;
    instance in[PGR_MAX_SESSIONS];
};

static void pause_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* A port nobody listens on now, below the kernel's ephemeral range: a port the kernel hands
 * out (bind to 0) may be taken again at once by any outgoing connection on this machine (the
 * application's own, to the proxy), before the application binds it. Tried at random; the
 * kernel's choice when none is free. 0 on failure. */
static int free_port(void)
{
    int lo = 32768;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");
    if (f) {
        if (fscanf(f, "%d", &lo) != 1) lo = 32768;
        fclose(f);
    }
    if (lo > 65535 || lo < 2048) lo = 32768;
    static _Atomic unsigned seq;
    unsigned r = (unsigned)getpid() * 2654435761u ^ (unsigned)pgr_now_ns() ^ (seq++ * 40503u);
    for (int attempt = 0; attempt <= 64; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return 0;
        int want = 0;                    /* the last attempt: the kernel's choice */
        if (attempt < 64 && lo > 10000) {
            r = r * 1103515245u + 12345u;
            want = 10000 + (int)((r >> 8) % (unsigned)(lo - 10000));
        }
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)want),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof a;
        int port = 0;
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
            port = ntohs(a.sin_port);
        close(fd);
        if (port) return port;
    }
    return 0;
}

static bool listening(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

/* Is this line of an instance's output the one that says why it failed? Node ends an uncaught
 * exception with its stack and "Node.js v20.x"; the line that names the error is above. */
static bool error_line(const char *l)
{
    while (*l == ' ' || *l == '\t') l++;
    const char *colon = strchr(l, ':');
    if (!colon || colon == l) return false;
    for (const char *q = l; q < colon; q++)
        if (!((*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') || *q == '_' || *q == '[' || *q == ']' || *q == ' '))
            return false;
    return colon - l >= 5 && (strstr(l, "Error") == l || (colon - l >= 5 && strncmp(colon - 5, "Error", 5) == 0));
}

/* The line of the instance's output that says why it failed, printable, into out: the last
 * "...Error: ..." line of its last 2 KiB when there is one, else its last non-empty line. */
static void last_line(const instance *in, char *out, size_t cap)
{
    out[0] = '\0';
    if (in->log < 0) return;
    char b[2048];
    off_t size = lseek(in->log, 0, SEEK_END);
    off_t from = size > (off_t)sizeof b - 1 ? size - (off_t)sizeof b + 1 : 0;
    ssize_t n = pread(in->log, b, sizeof b - 1, from);
    if (n <= 0) return;
    b[n] = '\0';
    const char *pick = NULL, *last = NULL;
    for (char *line = b, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        size_t len = strlen(line);
        while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ')) line[--len] = '\0';
        if (!len) continue;
        last = line;
        if (error_line(line)) pick = line;
    }
    if (!pick) pick = last;
    if (!pick) return;
    size_t o = 0;
    for (const unsigned char *q = (const unsigned char *)pick; *q && o + 5 < cap; q++)
        o += (size_t)(*q >= 0x20 && *q < 0x7f ? snprintf(out + o, cap - o, "%c", *q) : snprintf(out + o, cap - o, "\\x%02x", *q));
    out[o] = '\0';
}

static void why_gone(const instance *in, int i, char *err, size_t errlen)
{
    char line[300];
    last_line(in, line, sizeof line);
    char how[96];
    if (WIFSIGNALED(in->wstatus))
        snprintf(how, sizeof how, "was killed by signal %d (%s)", WTERMSIG(in->wstatus), strsignal(WTERMSIG(in->wstatus)));
    else
        snprintf(how, sizeof how, "exited with status %d", WIFEXITED(in->wstatus) ? WEXITSTATUS(in->wstatus) : -1);
    snprintf(err, errlen, "app instance %d (port %d) %s%s%s", i + 1, in->port, how,
             line[0] ? "; its output said: " : "", line);
}

static bool reap(instance *in)
{
    if (in->pid <= 0 || in->exited) return in->exited;
    if (waitpid(in->pid, &in->wstatus, WNOHANG) == in->pid) in->exited = true;
    return in->exited;
}

static int spawn(pgr_webapp *a, int i, char *err, size_t errlen)
{
    instance *in = &a->in[i];
    in->port = free_port();
    if (!in->port) { snprintf(err, errlen, "no free port on 127.0.0.1: %s", strerror(errno)); return -1; }
    in->log = memfd_create("pgrace-app", MFD_CLOEXEC);
    if (in->log < 0) { snprintf(err, errlen, "memfd_create: %s", strerror(errno)); return -1; }
    char e_port[32], e_sess[32];
    snprintf(e_port, sizeof e_port, "PORT=%d", in->port);
    snprintf(e_sess, sizeof e_sess, "PGRACE_SESSION=%d", i + 1);
    const char *extra[] = { e_port, e_sess, "HOST=127.0.0.1" };
    pgr_client_env_opts eo = a->o.env;
    eo.port = a->o.port_of(a->o.port_ctx, i);
    char **env = pgr_client_env(&eo, extra, PGR_LEN(extra));
    if (!env) { snprintf(err, errlen, "out of memory"); return -1; }
    char *argv[] = { "/bin/sh", "-c", (char *)a->o.cmd, NULL };
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, in->log, 1);
    posix_spawn_file_actions_adddup2(&fa, in->log, 2);
    posix_spawnattr_init(&at);
    sigset_t none, def;
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    sigaddset(&def, SIGINT);
    sigaddset(&def, SIGTERM);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setpgroup(&at, 0);
    struct sched_param sp = { .sched_priority = 0 };
    posix_spawnattr_setschedpolicy(&at, SCHED_OTHER);
    posix_spawnattr_setschedparam(&at, &sp);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                  POSIX_SPAWN_SETSCHEDULER);
    int rc = posix_spawn(&in->pid, "/bin/sh", &fa, &at, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    free(env);
    if (rc != 0) {
        in->pid = 0;
        snprintf(err, errlen, "app instance %d: cannot start /bin/sh: %s", i + 1, strerror(rc));
        return -1;
    }
    return 0;
}

pgr_webapp *pgr_webapp_start(const pgr_webapp_opts *o, char *err, size_t errlen)
{
    pgr_webapp *a = calloc(1, sizeof *a);
    if (!a) { snprintf(err, errlen, "out of memory"); return NULL; }
    a->o = *o;
    a->n = o->ninstances;
    for (int i = 0; i < a->n; i++) a->in[i].log = -1;
    for (int i = 0; i < a->n; i++)
        if (spawn(a, i, err, errlen) != 0) goto fail;
    double limit = o->ready_timeout_s > 0 ? o->ready_timeout_s : 30;
    int64_t deadline = pgr_now_ns() + (int64_t)(limit * 1e9);
    for (int i = 0; i < a->n; i++) {
        instance *in = &a->in[i];
        for (;;) {
            if (o->interrupted && *o->interrupted) { snprintf(err, errlen, "interrupted"); goto fail; }
            if (reap(in)) { why_gone(in, i, err, errlen); goto fail; }
            if (listening(in->port)) break;
            if (pgr_now_ns() > deadline) {
                char line[300];
                last_line(in, line, sizeof line);
                snprintf(err, errlen, "app instance %d did not listen on 127.0.0.1:%d (its PORT) within %.0f s%s%s",
                         i + 1, in->port, limit, line[0] ? "; its output said: " : "", line);
                goto fail;
            }
            pause_ms(20);
        }
    }
    return a;
fail:
    pgr_webapp_stop(a);
    return NULL;
}

int pgr_webapp_port(const pgr_webapp *a, int i) { return a->in[i].port; }

bool pgr_webapp_gone(pgr_webapp *a, int i, char *err, size_t errlen)
{
    if (!reap(&a->in[i])) return false;
    why_gone(&a->in[i], i, err, errlen);
    return true;
}

void pgr_webapp_stop(pgr_webapp *a)
{
    if (!a) return;
    for (int i = 0; i < a->n; i++)
        if (a->in[i].pid > 0) kill(-a->in[i].pid, SIGTERM);
    int64_t deadline = pgr_now_ns() + 2000000000LL;
    for (;;) {
        bool all = true;
        for (int i = 0; i < a->n; i++)
            if (a->in[i].pid > 0 && !reap(&a->in[i])) all = false;
        if (all || pgr_now_ns() > deadline) break;
        pause_ms(10);
    }
    for (int i = 0; i < a->n; i++) {
        instance *in = &a->in[i];
        if (in->pid > 0) {
            kill(-in->pid, SIGKILL);                  /* the group: whatever it started */
            if (!in->exited)
                while (waitpid(in->pid, &in->wstatus, 0) < 0 && errno == EINTR) {}
        }
        if (in->log >= 0) close(in->log);
    }
    free(a);
}
