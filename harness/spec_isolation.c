/*
 * spec_isolation.c — a spec run the way PostgreSQL 15's isolationtester runs it, printing
 * exactly what it prints: one control connection (setup, teardown, and the question "is
 * this session blocked?"), one connection per session, all driven from one thread with
 * libpq's asynchronous calls, so a session waiting on a lock never stalls the driver.
 *
 * A permutation runs as isolationtester runs it. Each step is sent, then looked at
 * without blocking: it completes (its results are printed), or it waits on a lock held by
 * another session (" <waiting ...>"), or an annotation holds it back. A waiting step is
 * looked at again after every later step; when it completes it prints
 * "step X: <... completed>" and its results. A step whose session is still busy first
 * waits for the session. Annotations: (*) reports the step waiting once, even when it did
 * not have to wait; (OTHER) holds its completion back while step OTHER is still running;
 * (OTHER notices N) until OTHER's session has sent N more notices.
 *
 * The one difference is when we ask. isolationtester sleeps 10 ms in select() before it
 * asks pg_isolation_test_session_is_blocked() about a step that has not answered, and
 * again every 10 ms. Here a step that has not answered within 100 µs is asked about at
 * once, then after 400 µs, 1.6 ms, and every 4 ms: a step that blocks at once (nearly
 * every blocking step) is seen a round trip after it blocked, not 10 ms later, and a step
 * that runs for milliseconds without blocking is asked about 3 or 4 times, not dozens
 * (each question is a round trip the server pays for, next to the step). What is printed
 * does not change; a step that takes longer than a look is what isolationtester sees on a
 * slow machine, and the specs are written for slow machines.
 */
#include "spec_isolation.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PREP_WAITING "isolationtester_waiting"
#define FIRST_LOOK_NS 100000LL        /* a step that has not answered: ask after 100 µs, */
#define LOOK_FACTOR 4                 /* then 4 times as late each time (400 µs, 1.6 ms), */
#define LAST_LOOK_NS 4000000LL        /* at most every 4 ms */
#define SLICE_NS 100000000LL          /* a blocking wait wakes every 100 ms (interrupt, timeout) */

/* Flags of try_complete_step, as isolationtester's. */
#define STEP_NONBLOCK 0x1             /* return as soon as the step waits for a lock */
#define STEP_RETRY 0x2                /* not the first look at this step */

/* One step of the permutation being run. */
typedef struct rt_step {
    const char *name;                 /* as the permutation names it */
    int session;
    const pgr_spec_step *step;
    const pgr_spec_blocker *blockers;
    int nblockers;
    int *target_notices;              /* per blocker: the count its session must reach */
} rt_step;

struct iso_run;

typedef struct iso_conn {
    PGconn *conn;
    char pid[16];                     /* backend pid, as text for the lock-wait question */
    int backend_pid;
    const char *name;                 /* the session's name ("control connection" for 0) */
    rt_step *active;                  /* the step running on it; NULL idle */
    int total_notices;                /* notices received, for 'notices N' annotations */
    struct iso_run *run;
} iso_conn;

typedef struct iso_run {
    const pgr_spec *spec;
    const pgr_iso_opts *o;
    pgr_iso_out *out;
    iso_conn *conns;                  /* [0] control, [1 + i] session i */
    int nconns;
    bool any_new_notice;              /* a notice arrived since try_complete_steps looked */
    pgr_iso_end end;                  /* why we stopped, when a function returns -1 */
    char *err;
    size_t errlen;
} iso_run;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- what is printed ---- */

static void out_write(pgr_iso_out *o, bool to_stderr, const char *s, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 4096;
        while (cap < o->len + n + 1) cap *= 2;
        char *g = realloc(o->buf, cap);
        if (!g) { o->oom = true; return; }
        o->buf = g;
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
    if (o->echo) {
        if (to_stderr) {
            fflush(stdout);
            fwrite(s, 1, n, stderr);
            fflush(stderr);
        } else {
            fwrite(s, 1, n, stdout);
        }
    }
}

static void out_vprintf(pgr_iso_out *o, bool to_stderr, const char *fmt, va_list ap)
{
    char small[512];
    va_list aq;
    va_copy(aq, ap);
    int n = vsnprintf(small, sizeof small, fmt, aq);
    va_end(aq);
    if (n < 0) return;
    if ((size_t)n < sizeof small) { out_write(o, to_stderr, small, (size_t)n); return; }
    char *big = malloc((size_t)n + 1);
    if (!big) { o->oom = true; return; }
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    out_write(o, to_stderr, big, (size_t)n);
    free(big);
}

/* isolationtester's stdout. */
static void say(iso_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(iso_run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    out_vprintf(r->out, false, fmt, ap);
    va_end(ap);
}

/* isolationtester's stderr. */
static void complain(iso_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void complain(iso_run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    out_vprintf(r->out, true, fmt, ap);
    va_end(ap);
}

void pgr_iso_out_free(pgr_iso_out *o)
{
    free(o->buf);
    memset(o, 0, sizeof *o);
}

/* A result set as isolationtester prints it: libpq's PQprint, aligned, '|' between columns. */
static void print_result(iso_run *r, const PGresult *res)
{
    static char sep[] = "|";
    PQprintOpt po;
    memset(&po, 0, sizeof po);
    po.header = 1;
    po.align = 1;
    po.fieldSep = sep;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) { r->out->oom = true; return; }
    PQprint(f, res, &po);
    fclose(f);
    out_write(r->out, false, buf, n);
    free(buf);
}

/* Stop the spec: where isolationtester would exit(1) (STOPPED, after printing why), or a
 * harness error (ERROR, err). Returns -1. */
static int stop(iso_run *r, pgr_iso_end why, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int stop(iso_run *r, pgr_iso_end why, const char *fmt, ...)
{
    r->end = why;
    if (why == PGR_ISO_ERROR) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, r->errlen, fmt, ap);
        va_end(ap);
        r->err[strcspn(r->err, "\n")] = '\0';
    }
    return -1;
}

static bool interrupted(const iso_run *r)
{
    return r->o->interrupted && *r->o->interrupted;
}

/* ---- notices ---- */

static void on_notice(void *arg, const char *message)
{
    iso_conn *c = arg;
    say(c->run, "%s: %s", c->name, message);
    c->total_notices++;
    c->run->any_new_notice = true;
}

static void on_notice_hidden(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* ---- waiting on a connection ---- */

/* Wait up to ns for c's socket to be readable: 1 readable, 0 not yet, -1 error (errno). */
static int wait_readable(PGconn *c, int64_t ns)
{
    struct pollfd pfd = { .fd = PQsocket(c), .events = POLLIN };
    if (pfd.fd < 0) { errno = EBADF; return -1; }
    struct timespec ts = { (time_t)(ns / 1000000000), (long)(ns % 1000000000) };
    int rc = ppoll(&pfd, 1, &ts, NULL);
    return rc < 0 ? -1 : rc > 0;
}

/* Wait until c has a whole result (or none is coming), like the wait inside PQgetResult,
 * but interruptible. 0, or -1 to stop. */
static int wait_result(iso_run *r, PGconn *c)
{
    while (PQisBusy(c)) {
        int rc = wait_readable(c, SLICE_NS);
        if (interrupted(r)) return stop(r, PGR_ISO_ERROR, "interrupted");
        if (rc < 0 && errno != EINTR) return stop(r, PGR_ISO_ERROR, "waiting for the server: %s", strerror(errno));
        if (rc > 0 && !PQconsumeInput(c))
            return stop(r, PGR_ISO_ERROR, "lost the connection to the server: %s", PQerrorMessage(c));
    }
    return 0;
}

/* PQexec, interruptible: send sql, keep the last result (as PQexec does). NULL when it
 * could not be sent (PQerrorMessage says why) or on a stop (*stopped set). */
static PGresult *exec_sql(iso_run *r, PGconn *c, const char *sql, bool *stopped)
{
    *stopped = false;
    if (!PQsendQuery(c, sql)) return NULL;
    PGresult *last = NULL;
    for (;;) {
        if (wait_result(r, c) != 0) { PQclear(last); *stopped = true; return NULL; }
        PGresult *res = PQgetResult(c);
        if (!res) break;
        PQclear(last);
        last = res;
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH || PQstatus(c) == CONNECTION_BAD)
            break;
    }
    return last;
}

/* A block of setup or teardown SQL on connection i, printed as isolationtester prints it:
 * rows of its last result; on an error, `fmt` (with the session name and the error) on
 * stderr. 0 ok, 1 failed, -1 stop. */
static int run_block(iso_run *r, int i, const char *sql, const char *what)
{
    bool stopped;
    PGconn *c = r->conns[i].conn;
    PGresult *res = exec_sql(r, c, sql, &stopped);
    if (stopped) return -1;
    int rc = 0;
    if (PQresultStatus(res) == PGRES_TUPLES_OK) {
        print_result(r, res);
    } else if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        if (i == 0) complain(r, "%s failed: %s", what, PQerrorMessage(c));
        else complain(r, "%s of session %s failed: %s", what, r->conns[i].name, PQerrorMessage(c));
        rc = 1;
    }
    PQclear(res);
    return rc;
}

/* pg_isolation_test_session_is_blocked for a session: 1 blocked, 0 not, -1 stop. */
static int is_blocked(iso_run *r, int session)
{
    const char *pv[1] = { r->conns[1 + session].pid };
    PGresult *res = PQexecPrepared(r->conns[0].conn, PREP_WAITING, 1, pv, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        PQclear(res);
        return stop(r, PGR_ISO_ERROR, "lock wait query failed: %s", PQerrorMessage(r->conns[0].conn));
    }
    int blocked = PQgetvalue(res, 0, 0)[0] == 't';
    PQclear(res);
    return blocked;
}

/* Whether an annotation still holds the step's completion back. */
static bool step_has_blocker(iso_run *r, const rt_step *ps)
{
    for (int i = 0; i < ps->nblockers; i++) {
        const pgr_spec_blocker *b = &ps->blockers[i];
        if (!b->step) continue;                        /* (*): handled on the first look */
        const iso_conn *other = &r->conns[1 + b->session];
        if (b->by_notices) {
            if (other->total_notices < ps->target_notices[i]) return true;
        } else if (other->active && other->active->session == b->session &&
                   other->active->step == &r->spec->sessions[b->session].steps[b->index]) {
            return true;
        }
    }
    return false;
}

/* Print a completed step's results, errors and NOTIFYs; the session is idle after. 0 or -1. */
static int finish_step(iso_run *r, rt_step *ps, int flags)
{
    iso_conn *ic = &r->conns[1 + ps->session];
    PGconn *conn = ic->conn;
    if (flags & STEP_RETRY) say(r, "step %s: <... completed>\n", ps->step->name);
    else say(r, "step %s: %s\n", ps->step->name, ps->step->sql);
    for (;;) {
        if (wait_result(r, conn) != 0) return -1;
        PGresult *res = PQgetResult(conn);
        if (!res) break;
        ExecStatusType st = PQresultStatus(res);
        switch (st) {
        case PGRES_COMMAND_OK:
        case PGRES_EMPTY_QUERY:
            break;
        case PGRES_TUPLES_OK:
            print_result(r, res);
            break;
        case PGRES_FATAL_ERROR: {
            /* only severity and primary message: details may hold xids and pids */
            const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY);
            const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
            if (sev && msg) say(r, "%s:  %s\n", sev, msg);
            else say(r, "%s\n", PQresultErrorMessage(res));
            break;
        }
        default:
            say(r, "unexpected result status: %s\n", PQresStatus(st));
            /* isolationtester would loop here for ever; end the COPY instead */
            if (st == PGRES_COPY_IN) PQputCopyEnd(conn, "pgrace isolation: COPY FROM STDIN is not supported");
            else if (st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
                char *row;
                while (PQgetCopyData(conn, &row, 0) > 0) PQfreemem(row);
            }
        }
        PQclear(res);
        if (PQstatus(conn) == CONNECTION_BAD)
            return stop(r, PGR_ISO_ERROR, "lost the connection of session %s: %s", ic->name, PQerrorMessage(conn));
    }
    PQconsumeInput(conn);
    PGnotify *n;
    while ((n = PQnotifies(conn)) != NULL) {
        const char *sender = NULL;
        char pidname[32];
        for (int i = 1; i < r->nconns && !sender; i++)
            if (n->be_pid == r->conns[i].backend_pid) sender = r->conns[i].name;
        if (!sender) {
            snprintf(pidname, sizeof pidname, "PID %d", n->be_pid);
            sender = pidname;
        }
        say(r, "%s: NOTIFY \"%s\" with payload \"%s\" from %s\n", ic->name, n->relname, n->extra, sender);
        PQfreemem(n);
        PQconsumeInput(conn);
    }
    ic->active = NULL;
    return 0;
}

/*
 * The caller sent the step's query. Wait for it to complete or to block. Returns 1 when
 * it did not complete (STEP_NONBLOCK and it waits for a lock, or an annotation holds it),
 * 0 when it completed (and was printed), -1 to stop. isolationtester's try_complete_step,
 * but the lock-wait question is asked after 100 µs, 400 µs, 1.6 ms, then every 4 ms.
 */
static int try_complete_step(iso_run *r, rt_step *ps, int flags)
{
    PGconn *conn = r->conns[1 + ps->session].conn;
    if (!(flags & STEP_RETRY))
        for (int i = 0; i < ps->nblockers; i++)
            if (!ps->blockers[i].step) {                /* (*): report waiting once */
                say(r, "step %s: %s <waiting ...>\n", ps->step->name, ps->step->sql);
                return 1;
            }
    int64_t start = now_ns(), look = FIRST_LOOK_NS, max_wait = (int64_t)(r->o->max_step_wait * 1e9);
    bool canceled = false;
    while (PQisBusy(conn)) {
        int rc = wait_readable(conn, (flags & STEP_NONBLOCK) ? look : SLICE_NS);
        if (interrupted(r)) return stop(r, PGR_ISO_ERROR, "interrupted");
        if (rc < 0) {
            if (errno == EINTR) continue;
            return stop(r, PGR_ISO_ERROR, "waiting for the server: %s", strerror(errno));
        }
        if (rc > 0) {
            if (!PQconsumeInput(conn))
                return stop(r, PGR_ISO_ERROR, "lost the connection of session %s: %s",
                            r->conns[1 + ps->session].name, PQerrorMessage(conn));
            continue;
        }
        if (flags & STEP_NONBLOCK) {
            int blocked = is_blocked(r, ps->session);
            if (blocked < 0) return -1;
            if (blocked) {
                /* notices may have come while we asked: collect them, and the result */
                if (!PQconsumeInput(conn))
                    return stop(r, PGR_ISO_ERROR, "lost the connection of session %s: %s",
                                r->conns[1 + ps->session].name, PQerrorMessage(conn));
                if (!PQisBusy(conn)) break;
                if (!(flags & STEP_RETRY)) say(r, "step %s: %s <waiting ...>\n", ps->step->name, ps->step->sql);
                return 1;
            }
            look = look * LOOK_FACTOR < LAST_LOOK_NS ? look * LOOK_FACTOR : LAST_LOOK_NS;
        }
        int64_t td = now_ns() - start;
        if (td > max_wait && !canceled) {
            PGcancel *cancel = PQgetCancel(conn);
            if (cancel) {
                char buf[256];
                if (PQcancel(cancel, buf, sizeof buf)) {
                    say(r, "isolationtester: canceling step %s after %d seconds\n", ps->step->name,
                        (int)(td / 1000000000));
                    canceled = true;
                } else {
                    complain(r, "PQcancel failed: %s\n", buf);
                }
                PQfreeCancel(cancel);
            }
        }
        if (td > 2 * max_wait) {
            complain(r, "step %s timed out after %d seconds\n", ps->step->name, (int)(td / 1000000000));
            return stop(r, PGR_ISO_STOPPED, "timed out");
        }
    }
    if (step_has_blocker(r, ps)) {
        if (!(flags & STEP_RETRY)) say(r, "step %s: %s <waiting ...>\n", ps->step->name, ps->step->sql);
        return 1;
    }
    return finish_step(r, ps, flags) == 0 ? 0 : -1;
}

/* Look at every waiting step (removing the completed ones) until nothing more moves:
 * isolationtester's try_complete_steps. The new count, or -1 to stop. */
static int try_complete_steps(iso_run *r, rt_step **waiting, int nwaiting, int flags)
{
    int old;
    bool have_blocker;
    do {
        r->any_new_notice = false;
        old = nwaiting;
        have_blocker = false;
        for (int w = 0; w < nwaiting;) {
            int rc = try_complete_step(r, waiting[w], flags);
            if (rc < 0) return -1;
            if (rc) {
                if (waiting[w]->nblockers > 0) have_blocker = true;
                w++;
            } else {
                memmove(&waiting[w], &waiting[w + 1], (size_t)(nwaiting - w - 1) * sizeof *waiting);
                nwaiting--;
            }
        }
        /* a step that completed, or a notice, may have released an annotated one */
    } while (have_blocker && (nwaiting < old || r->any_new_notice));
    return nwaiting;
}

/* Roll back and finish whatever runs after a stop, so the database can be dropped. */
static void abandon(iso_run *r)
{
    for (int i = 0; i < r->nconns; i++) {
        PGconn *c = r->conns[i].conn;
        if (!c || PQtransactionStatus(c) != PQTRANS_ACTIVE) continue;
        PGcancel *cancel = PQgetCancel(c);
        if (cancel) {
            char buf[256];
            PQcancel(cancel, buf, sizeof buf);
            PQfreeCancel(cancel);
        }
    }
}

/* isolationtester's run_permutation. 0, or -1 to stop. */
static int run_permutation(iso_run *r, rt_step **steps, int nsteps)
{
    const pgr_spec *spec = r->spec;
    rt_step **wait = calloc((size_t)spec->nsessions, sizeof *wait);
    if (!wait) return stop(r, PGR_ISO_ERROR, "out of memory");
    int nwaiting = 0, rc = -1;

    say(r, "\nstarting permutation:");
    for (int i = 0; i < nsteps; i++) say(r, " %s", steps[i]->name);
    say(r, "\n");

    for (int i = 0; i < spec->nsetups; i++) {
        int b = run_block(r, 0, spec->setups[i], "setup");
        if (b != 0) { if (b > 0) stop(r, PGR_ISO_STOPPED, "setup failed"); goto out; }
    }
    for (int i = 0; i < spec->nsessions; i++) {
        if (!spec->sessions[i].setup) continue;
        int b = run_block(r, 1 + i, spec->sessions[i].setup, "setup");
        if (b != 0) { if (b > 0) stop(r, PGR_ISO_STOPPED, "session setup failed"); goto out; }
    }

    for (int i = 0; i < nsteps; i++) {
        rt_step *ps = steps[i];
        iso_conn *ic = &r->conns[1 + ps->session];
        /* the session is still busy with an earlier step: wait for it */
        if (ic->active) {
            int64_t start = now_ns();
            while (ic->active) {
                rt_step *old = ic->active;
                int c = try_complete_step(r, old, STEP_RETRY);
                if (c < 0) goto out;
                if (c == 0) {
                    int w = 0;
                    while (w < nwaiting && wait[w] != old) w++;
                    if (w < nwaiting) {
                        memmove(&wait[w], &wait[w + 1], (size_t)(nwaiting - w - 1) * sizeof *wait);
                        nwaiting--;
                    }
                }
                nwaiting = try_complete_steps(r, wait, nwaiting, STEP_NONBLOCK | STEP_RETRY);
                if (nwaiting < 0) goto out;
                if (ic->active) {
                    int64_t td = now_ns() - start;
                    if (td > (int64_t)(2 * r->o->max_step_wait * 1e9)) {
                        complain(r, "step %s timed out after %d seconds\n", ic->active->name, (int)(td / 1000000000));
                        complain(r, "active steps are:");
                        for (int j = 1; j < r->nconns; j++)
                            if (r->conns[j].active) complain(r, " %s", r->conns[j].active->name);
                        complain(r, "\n");
                        stop(r, PGR_ISO_STOPPED, "timed out");
                        goto out;
                    }
                }
            }
        }
        if (!PQsendQuery(ic->conn, ps->step->sql)) {
            say(r, "failed to send query for step %s: %s\n", ps->step->name, PQerrorMessage(ic->conn));
            stop(r, PGR_ISO_STOPPED, "send failed");
            goto out;
        }
        ic->active = ps;
        for (int j = 0; j < ps->nblockers; j++)
            if (ps->blockers[j].step && ps->blockers[j].by_notices)
                ps->target_notices[j] = ps->blockers[j].notices + r->conns[1 + ps->blockers[j].session].total_notices;
        int mustwait = try_complete_step(r, ps, STEP_NONBLOCK);
        if (mustwait < 0) goto out;
        nwaiting = try_complete_steps(r, wait, nwaiting, STEP_NONBLOCK | STEP_RETRY);
        if (nwaiting < 0) goto out;
        if (mustwait) wait[nwaiting++] = ps;
    }

    nwaiting = try_complete_steps(r, wait, nwaiting, STEP_RETRY);
    if (nwaiting < 0) goto out;
    if (nwaiting != 0) {
        complain(r, "failed to complete permutation due to mutually-blocking steps\n");
        stop(r, PGR_ISO_STOPPED, "mutually blocking steps");
        goto out;
    }

    for (int i = 0; i < spec->nsessions; i++)
        if (spec->sessions[i].teardown && run_block(r, 1 + i, spec->sessions[i].teardown, "teardown") < 0) goto out;
    if (spec->teardown && run_block(r, 0, spec->teardown, "teardown") < 0) goto out;
    rc = 0;
out:
    free(wait);
    return rc;
}

/* The next arrangement of the session indexes in seq (a multiset), in lexicographic order:
 * isolationtester's piles enumerate every permutation in exactly this order. false after
 * the last. */
static bool next_arrangement(int *seq, int n)
{
    int i = n - 2;
    while (i >= 0 && seq[i] >= seq[i + 1]) i--;
    if (i < 0) return false;
    int j = n - 1;
    while (seq[j] <= seq[i]) j--;
    int t = seq[i]; seq[i] = seq[j]; seq[j] = t;
    for (int a = i + 1, b = n - 1; a < b; a++, b--) { t = seq[a]; seq[a] = seq[b]; seq[b] = t; }
    return true;
}

long long pgr_iso_permutation_count(const pgr_spec *spec, long long limit)
{
    /* the multinomial coefficient, built up as a product of binomials, saturating */
    long long count = 1;
    int total = 0;
    for (int i = 0; i < spec->nsessions; i++) {
        int k = spec->sessions[i].nsteps;
        for (int j = 1; j <= k; j++) {
            total++;
            /* count * total / j is exact: count holds C(total - 1, j - 1) as a factor.
             * count <= limit < 2^31 and total < 2^31: no overflow */
            long long c = count * total / j;
            if (c > limit) return limit + 1;
            count = (long long)c;
        }
    }
    return count;
}

static int connect_all(iso_run *r, const char *options)
{
    const pgr_spec *spec = r->spec;
    for (int i = 0; i < r->nconns; i++) {
        iso_conn *c = &r->conns[i];
        c->run = r;
        c->name = i == 0 ? "control connection" : spec->sessions[i - 1].name;
        char app[96];
        snprintf(app, sizeof app, "pgrace/%s", c->name);
        const char *keys[] = { "connect_timeout", "dbname", "dbname", "options", "application_name", NULL };
        const char *vals[] = { "10", r->o->dsn, r->o->dbname, options, app, NULL };
        c->conn = PQconnectdbParams(keys, vals, 1);
        if (!c->conn || PQstatus(c->conn) != CONNECTION_OK)
            return stop(r, PGR_ISO_ERROR, "connection %d failed: %s", i,
                        c->conn ? PQerrorMessage(c->conn) : "out of memory");
        if (i == 0) PQsetNoticeProcessor(c->conn, on_notice_hidden, NULL);
        else PQsetNoticeProcessor(c->conn, on_notice, c);
        c->backend_pid = PQbackendPID(c->conn);
        snprintf(c->pid, sizeof c->pid, "%d", c->backend_pid);
    }
    /* the lock-wait question, about the test's own sessions only (autovacuum's locks are not
     * the test's business) */
    size_t cap = 96 + (size_t)r->nconns * 16;
    char *q = malloc(cap);
    if (!q) return stop(r, PGR_ISO_ERROR, "out of memory");
    size_t n = (size_t)snprintf(q, cap, "SELECT pg_catalog.pg_isolation_test_session_is_blocked($1, '{");
    for (int i = 1; i < r->nconns; i++) n += (size_t)snprintf(q + n, cap - n, "%s%s", i > 1 ? "," : "", r->conns[i].pid);
    snprintf(q + n, cap - n, "}')");
    PGresult *res = PQprepare(r->conns[0].conn, PREP_WAITING, q, 0, NULL);
    free(q);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    if (!ok) return stop(r, PGR_ISO_ERROR, "prepare of lock wait query failed: %s", PQerrorMessage(r->conns[0].conn));
    return 0;
}

/* The connection's options: the DSN's own, then isolationtester's client environment
 * (PGTZ=PST8PDT, PGDATESTYLE="Postgres, MDY"), as libpq would send them. */
static char *client_options(const char *dsn)
{
    const char *ours = "-c timezone=PST8PDT -c datestyle=Postgres,\\ MDY";
    const char *theirs = "";
    PQconninfoOption *opts = PQconninfoParse(dsn, NULL);
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "options") == 0 && o->val) theirs = o->val;
    size_t n = strlen(theirs) + strlen(ours) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s%s%s", theirs, *theirs ? " " : "", ours);
    PQconninfoFree(opts);
    return s;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* isolationtester's check_testspec warning: steps no permutation names, sorted by name. */
static void warn_unused(iso_run *r)
{
    const pgr_spec *spec = r->spec;
    if (spec->nperms == 0) return;
    int n = 0;
    for (int i = 0; i < spec->nsessions; i++) n += spec->sessions[i].nsteps;
    const char **names = calloc((size_t)n + 1, sizeof *names);
    if (!names) { r->out->oom = true; return; }
    int k = 0;
    for (int i = 0; i < spec->nsessions; i++)
        for (int j = 0; j < spec->sessions[i].nsteps; j++)
            if (!spec->sessions[i].steps[j].used) names[k++] = spec->sessions[i].steps[j].name;
    qsort(names, (size_t)k, sizeof *names, name_cmp);
    for (int i = 0; i < k; i++) complain(r, "unused step name: %s\n", names[i]);
    free(names);
}

/* Every permutation of the spec, listed or all, one after another. 0, or -1 to stop. */
static int run_all(iso_run *r)
{
    const pgr_spec *spec = r->spec;
    int total = 0, maxb = 0;
    for (int i = 0; i < spec->nsessions; i++) total += spec->sessions[i].nsteps;
    for (int i = 0; i < spec->nperms; i++)
        for (int j = 0; j < spec->perms[i].nsteps; j++)
            if (spec->perms[i].steps[j].nblockers > maxb) maxb = spec->perms[i].steps[j].nblockers;
    int longest = total;
    for (int i = 0; i < spec->nperms; i++)
        if (spec->perms[i].nsteps > longest) longest = spec->perms[i].nsteps;
    rt_step *rt = calloc((size_t)longest + 1, sizeof *rt);
    rt_step **ptr = calloc((size_t)longest + 1, sizeof *ptr);
    int *targets = calloc((size_t)longest * (size_t)(maxb + 1) + 1, sizeof *targets);
    int *seq = calloc((size_t)total + 1, sizeof *seq);
    int *pile = calloc((size_t)spec->nsessions + 1, sizeof *pile);
    int rc = 0;
    if (!rt || !ptr || !targets || !seq || !pile) { rc = stop(r, PGR_ISO_ERROR, "out of memory"); goto out; }
    for (int i = 0; i <= longest; i++) ptr[i] = &rt[i];

    if (spec->nperms > 0) {
        for (int pi = 0; pi < spec->nperms && rc == 0; pi++) {
            const pgr_spec_permutation *pm = &spec->perms[pi];
            for (int j = 0; j < pm->nsteps; j++) {
                const pgr_spec_pstep *ps = &pm->steps[j];
                rt[j] = (rt_step){ ps->name, ps->session, &spec->sessions[ps->session].steps[ps->step], ps->blockers,
                                   ps->nblockers, targets + (size_t)j * (size_t)(maxb + 1) };
            }
            rc = run_permutation(r, ptr, pm->nsteps);
        }
    } else {
        for (int i = 0, k = 0; i < spec->nsessions; i++)
            for (int j = 0; j < spec->sessions[i].nsteps; j++) seq[k++] = i;
        do {
            memset(pile, 0, (size_t)spec->nsessions * sizeof *pile);
            for (int j = 0; j < total; j++) {
                int s = seq[j];
                const pgr_spec_step *st = &spec->sessions[s].steps[pile[s]++];
                rt[j] = (rt_step){ st->name, s, st, NULL, 0, targets };
            }
            rc = run_permutation(r, ptr, total);
        } while (rc == 0 && next_arrangement(seq, total));
    }
out:
    free(rt);
    free(ptr);
    free(targets);
    free(seq);
    free(pile);
    return rc;
}

pgr_iso_end pgr_iso_run(const pgr_spec *spec, const pgr_iso_opts *opts, pgr_iso_out *out, char *err, size_t errlen)
{
    iso_run r = { .spec = spec, .o = opts, .out = out, .end = PGR_ISO_DONE, .err = err, .errlen = errlen };
    err[0] = '\0';
    if (spec->nsessions < 1) {
        snprintf(err, errlen, "the spec has no session");
        return PGR_ISO_ERROR;
    }
    warn_unused(&r);
    say(&r, "Parsed test spec with %d sessions\n", spec->nsessions);
    char *options = client_options(opts->dsn);
    r.nconns = 1 + spec->nsessions;
    r.conns = calloc((size_t)r.nconns, sizeof *r.conns);
    if (!options || !r.conns) stop(&r, PGR_ISO_ERROR, "out of memory");
    else if (connect_all(&r, options) == 0) run_all(&r);
    if (r.end != PGR_ISO_DONE) abandon(&r);
    for (int i = 0; r.conns && i < r.nconns; i++)
        if (r.conns[i].conn) PQfinish(r.conns[i].conn);
    free(r.conns);
    free(options);
    if (out->echo) fflush(stdout);
    if (out->oom && r.end == PGR_ISO_DONE) {
        snprintf(err, errlen, "out of memory while keeping the output");
        return PGR_ISO_ERROR;
    }
    return r.end;
}
