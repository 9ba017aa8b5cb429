/*
 * target_program.c — the program target: a request is served by running the user's program
 * (any language) once, its statements reaching the server through the proxy listener bound
 * to the session (proxy.c), so each of them is a step through the seam like a C handler's.
 *
 * The program runs as `/bin/sh -c 'CMD "$@"' pgrace KEY SESSION CASE` in its own process
 * group, with PGHOST/PGPORT (the session's listener), PGDATABASE, PGUSER, PGOPTIONS (the
 * variant's schema and the isolation level), DATABASE_URL, PGRACE_KEY, PGRACE_SESSION,
 * PGRACE_CASE, PGRACE_SCHEMA and PGRACE_ISOLATION in its environment; stdin is /dev/null.
 * Its answer: the last line of its stdout `STATUS [ID]` (e.g. `201 17`), else its exit
 * status (0 -> 200, nonzero -> 500). A program that outlives the step timeout, is killed
 * by a signal, cannot be started, or answers (other than 4xx) without having sent a single
 * statement through its listener is a harness error (the session's infra_error), never an
 * answer: the run stops with exit 2.
 */
#include "client_env.h"
#include "target.h"

#include <ctype.h>
#include <stdarg.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void harness_error(pgr_session *s, const pgr_program *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void harness_error(pgr_session *s, const pgr_program *p, const char *fmt, ...)
{
    char what[64];
    snprintf(what, sizeof what, "client '%s'", p->name);
    va_list ap;
    va_start(ap, fmt);
    pgr_target_error(s, what, fmt, ap);
    va_end(ap);
}

/* Parse a line `STATUS [ID]`; true when it is one. */
static bool answer_line(const char *line, int *status, long long *id)
{
    const char *q = line;
    while (*q == ' ' || *q == '\t') q++;
    if (!isdigit((unsigned char)q[0]) || !isdigit((unsigned char)q[1]) || !isdigit((unsigned char)q[2])) return false;
    int st = (q[0] - '0') * 100 + (q[1] - '0') * 10 + (q[2] - '0');
    q += 3;
    if (st < 100 || st > 599) return false;
    long long v = -1;
    if (*q == ' ' || *q == '\t') {
        while (*q == ' ' || *q == '\t') q++;
        if (*q) {
            char *end;
            errno = 0;
            v = strtoll(q, &end, 10);
            if (end == q || errno) return false;
            q = end;
        }
    }
    while (*q == ' ' || *q == '\t' || *q == '\r') q++;
    if (*q) return false;
    *status = st;
    *id = v;
    return true;
}

/* Keep the last line of a stream: tail holds the bytes after the last complete line, line
 * the last complete non-empty line. */
typedef struct lastline {
    char line[128], tail[128];
    size_t ntail;
    bool overflow;                   /* the current line is longer than tail: not an answer */
} lastline;

static void feed(lastline *l, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (b[i] == '\n') {
            if (l->ntail > 0 || l->overflow) {
                l->tail[l->ntail] = '\0';
                snprintf(l->line, sizeof l->line, "%s", l->overflow ? "<a line too long>" : l->tail);
            }
            l->ntail = 0;
            l->overflow = false;
        } else if (l->ntail + 1 < sizeof l->tail) {
            l->tail[l->ntail++] = b[i];
        } else {
            l->overflow = true;
        }
    }
}

static const char *last_of(lastline *l)
{
    if (l->ntail > 0 && !l->overflow) {        /* no newline at the end: still the last line */
        l->tail[l->ntail] = '\0';
        return l->tail;
    }
    return l->line;
}

/* A printable copy of text for a message. */
static void printable(char *dst, size_t cap, const char *src)
{
    size_t o = 0;
    for (const unsigned char *q = (const unsigned char *)src; *q && o + 5 < cap; q++)
        o += (size_t)(*q >= 0x20 && *q < 0x7f ? snprintf(dst + o, cap - o, "%c", *q) : snprintf(dst + o, cap - o, "\\x%02x", *q));
    dst[o] = '\0';
}

static int serve_program(void *ctx, pgr_session *s, pgr_request *req, pgr_response *resp)
{
    const pgr_program *p = ctx;
    int i = s->index;
    resp->status = 500;
    resp->id = -1;
    resp->sqlstate[0] = '\0';
    if (s->infra_error) return 500;

    /* the environment */
    char e_key[48], e_sess[32], e_case[120];
    snprintf(e_key, sizeof e_key, "PGRACE_KEY=%s", req->text[0]);
    snprintf(e_sess, sizeof e_sess, "PGRACE_SESSION=%s", req->text[1]);
    snprintf(e_case, sizeof e_case, "PGRACE_CASE=%s", req->text[2]);
    const char *extra[] = { e_key, e_sess, e_case };
    pgr_client_env_opts eo = { .host = p->host, .port = p->port_of(p->port_ctx, i), .dbname = p->dbname,
                               .user = p->user, .password = p->password, .schema = p->schema, .iso = p->iso };
    char **env = pgr_client_env(&eo, extra, PGR_LEN(extra));
    if (!env) { harness_error(s, p, "out of memory"); return 500; }

    char script[4200];
    snprintf(script, sizeof script, "%s \"$@\"", p->cmd);
    char *argv[] = { "/bin/sh", "-c", script, "pgrace", req->text[0], req->text[1], req->text[2], NULL };

    int out[2] = { -1, -1 }, err[2] = { -1, -1 };
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
        harness_error(s, p, "pipe: %s", strerror(errno));
        free(env);
        if (out[0] >= 0) { close(out[0]); close(out[1]); }
        return 500;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawnattr_init(&at);
    posix_spawnattr_setpgroup(&at, 0);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&at, &none);       /* the session thread blocks SIGINT/SIGTERM */
    sigemptyset(&all);
    sigaddset(&all, SIGPIPE);
    sigaddset(&all, SIGINT);
    sigaddset(&all, SIGTERM);
    posix_spawnattr_setsigdefault(&at, &all);     /* pgrace ignores SIGPIPE; the program should not */
    struct sched_param sp = { .sched_priority = 0 };    /* never the session thread's SCHED_FIFO */
    posix_spawnattr_setschedpolicy(&at, SCHED_OTHER);
    posix_spawnattr_setschedparam(&at, &sp);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                  POSIX_SPAWN_SETSCHEDULER);
    pid_t pid;
    int n0 = s->nsteps;
    if (p->sync) p->sync(p->port_ctx, i, 0.2);     /* the session's trial state, before its steps */
    int rc = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    free(env);
    close(out[1]);
    close(err[1]);
    if (rc != 0) {
        harness_error(s, p, "cannot start /bin/sh: %s", strerror(rc));
        close(out[0]);
        close(err[0]);
        return 500;
    }

    lastline lo = { 0 }, le = { 0 };
    int64_t deadline = pgr_now_ns() + (p->timeout_s > 0 ? (int64_t)(p->timeout_s * 1e9) : 30000000000LL);
    int wstatus = 0;
    bool exited = false, open_out = true, open_err = true;
    const char *why = NULL;
    int64_t exited_at = 0;
    while (open_out || open_err || !exited) {
        if (p->interrupted && *p->interrupted) { why = "interrupted"; break; }
        int64_t now = pgr_now_ns();
        if (now > deadline) { why = "timeout"; break; }
        if (!exited) {
            pid_t w = waitpid(pid, &wstatus, WNOHANG);
            if (w == pid) { exited = true; exited_at = now; }
        }
        /* exited, but something it started keeps its stdout open: give it a moment */
        if (exited && now - exited_at > 200000000LL) break;
        struct pollfd pf[2];
        int np = 0;
        if (open_out) pf[np++] = (struct pollfd){ .fd = out[0], .events = POLLIN };
        if (open_err) pf[np++] = (struct pollfd){ .fd = err[0], .events = POLLIN };
        if (np == 0) {                               /* streams closed, not yet reaped */
            struct timespec ts = { 0, 200000 };
            nanosleep(&ts, NULL);
            continue;
        }
        int ms = 20;
        if (poll(pf, (nfds_t)np, ms) < 0 && errno != EINTR) { why = "poll"; break; }
        for (int j = 0; j < np; j++) {
            if (!(pf[j].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            char b[4096];
            ssize_t got = read(pf[j].fd, b, sizeof b);
            if (got > 0) feed(pf[j].fd == out[0] ? &lo : &le, b, (size_t)got);
            else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
                if (pf[j].fd == out[0]) open_out = false;
                else open_err = false;
            }
        }
    }
    close(out[0]);
    close(err[0]);
    kill(-pid, SIGKILL);                             /* whatever it left running (its group) */
    if (!exited) {
        while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {}
    }
    if (p->sync) p->sync(p->port_ctx, i, 0.2);     /* its steps, before its answer */
    char errline[160];
    printable(errline, sizeof errline, last_of(&le));
    if (why) {
        if (strcmp(why, "timeout") == 0)
            harness_error(s, p, "neither answered nor exited within the step timeout (%.0f s, --step-timeout): killed%s%s",
                          p->timeout_s > 0 ? p->timeout_s : 30.0, errline[0] ? "; its stderr ended: " : "", errline);
        else if (strcmp(why, "interrupted") == 0)
            harness_error(s, p, "interrupted: killed");
        else
            harness_error(s, p, "%s: %s", why, strerror(errno));
        return 500;
    }
    if (WIFSIGNALED(wstatus)) {
        int sig = WTERMSIG(wstatus);
        harness_error(s, p, "crashed: killed by signal %d (%s)%s%s", sig, strsignal(sig),
                      errline[0] ? "; its stderr ended: " : "", errline);
        return 500;
    }
    int code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 1;
    /* the shell reports a command a signal killed as 128 + the signal: a crash all the same */
    static const int crash_signals[] = { SIGSEGV, SIGABRT, SIGBUS, SIGFPE, SIGILL, SIGKILL, SIGSYS, SIGTRAP };
    for (int c = 0; c < PGR_LEN(crash_signals); c++)
        if (code == 128 + crash_signals[c]) {
            harness_error(s, p, "crashed: killed by signal %d (%s; the shell's exit %d)%s%s", crash_signals[c],
                          strsignal(crash_signals[c]), code, errline[0] ? "; its stderr ended: " : "", errline);
            return 500;
        }
    int status;
    long long id;
    bool answered = answer_line(last_of(&lo), &status, &id);
    if (!answered) {
        status = code == 0 ? 200 : 500;
        id = -1;
    }
    int steps = s->nsteps - n0;
    if (steps <= 0 && !(status >= 400 && status < 500)) {
        if (code == 127)
            harness_error(s, p, "the command was not found (exit 127)%s%s", errline[0] ? ": " : "", errline);
        else
            harness_error(s, p, "answered %d (exit %d) without one statement through its listener: it must connect "
                          "with PGHOST/PGPORT or DATABASE_URL%s%s", status, code, errline[0] ? "; its stderr ended: " : "",
                          errline);
        return 500;
    }
    resp->status = status;
    resp->id = id;
    return status;
}

static const pgr_target_ops program_ops = { "program", serve_program };

pgr_target pgr_target_program(pgr_program *p)
{
    return (pgr_target){ &program_ops, p };
}
