/*
 * watchdog.c — every open connection, and a deadline on every blocking call made on one.
 *
 * A frozen server (its backends stopped, a machine swapping) answers nothing, and a thread
 * in a blocking libpq call would wait for it forever: neither --step-timeout nor Ctrl-C
 * could end the run. So pgr_connect connects with poll() under a deadline and the
 * interrupt flag, and registers the connection here until pgr_disconnect; every blocking
 * call on it runs between pgr_call_begin and pgr_call_end (pgr_query does both). A watchdog
 * thread looks every 50 ms:
 *   - a call past its deadline (the step timeout) is sent a cancel request; if the server
 *     has not answered a second later, the connection's socket is shut down (shutdown(2),
 *     never closed: the descriptor stays its owner's), and the call returns an error;
 *   - once the run has been interrupted (SIGINT, SIGTERM, SIGHUP) for a second, every call
 *     in flight is cancelled and every registered socket shut down;
 *   - once the server has ignored a cancel, later calls get one second, then their socket
 *     is shut down: cleaning up on a server that does not answer should not wait again.
 * Each cancel is sent from a detached thread of its own: PQcancel blocks when the postmaster
 * does not answer either. The owner of the call learns from pgr_call_end what happened.
 */
#include "conn.h"

#include <errno.h>
#include <libpq-events.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define TICK_NS      50000000LL      /* how often the watchdog looks */
#define GRACE_NS     1000000000LL    /* a cancel's answer; an interrupted run's last second */

/* A connection's call, as the watchdog sees it. */
typedef enum {
    W_IDLE,       /* no call in flight: moved on by pgr_call_begin (W_CALL), or by the
                     interrupt's second (W_CUT) */
    W_CALL,       /* a call in flight until its deadline: moved on by pgr_call_end (W_IDLE),
                     the deadline (W_CANCELLED; W_CUT at once once the server is silent) or
                     the interrupt's second (W_CUT) */
    W_CANCELLED,  /* past its deadline, a cancel sent: moved on by pgr_call_end (W_IDLE: the
                     call reports the cancel), or a second without an answer (W_CUT) */
    W_CUT,        /* the socket is shut down: every call on it fails at once; final */
} watch_state;

typedef enum { CUT_NONE, CUT_TIMEOUT, CUT_SILENT, CUT_INTERRUPT } cut_cause;

typedef struct cancel_ref {          /* shared by the connection and its cancel threads */
    PGcancel *pc;
    int refs;                        /* [mu] */
} cancel_ref;

typedef struct watch {
    PGconn *conn;                    /* [life] */
    int fd;                          /* [life] the socket, as connected */
    cancel_ref *cancel;              /* [life] NULL: cannot be cancelled */
    pthread_mutex_t wm;              /* the fields below: the owner's thread and the watchdog */
    watch_state state;
    cut_cause cause;
    double timeout_s;                /* of the call in flight */
    int64_t began_ns, deadline_ns;   /* W_CALL: when to cancel; W_CANCELLED: when to cut */
    struct watch *prev, *next;       /* [mu] the registry */
} watch;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static watch *registry;                          /* [mu] every registered connection */
static volatile int *interrupted_flag;           /* pgr_watchdog_configure, before any thread */
static double default_timeout_s = 30;
static _Atomic int64_t interrupted_at;           /* when the watchdog first saw the flag */
static atomic_bool silent;                       /* the server ignored a cancel */
static pthread_once_t started = PTHREAD_ONCE_INIT;

void pgr_watchdog_configure(volatile int *interrupted, double step_timeout_s)
{
    interrupted_flag = interrupted;
    default_timeout_s = step_timeout_s > 0 ? step_timeout_s : 30;
}

/* Start fn in a detached thread that takes none of the signals the main thread handles. */
static int spawn_detached(void *(*fn)(void *), void *arg)
{
    sigset_t old;
    pgr_block_run_signals(&old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int rc = pthread_create(&th, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static void drop_cancel_ref(cancel_ref *cr)      /* under mu */
{
    if (cr && --cr->refs == 0) {
        PQfreeCancel(cr->pc);
        free(cr);
    }
}

static void *cancel_main(void *arg)
{
    cancel_ref *cr = arg;
    char eb[256];
    PQcancel(cr->pc, eb, sizeof eb);     /* may never return from a frozen postmaster */
    pthread_mutex_lock(&mu);
    drop_cancel_ref(cr);
    pthread_mutex_unlock(&mu);
    return NULL;
}

static void send_cancel(watch *w)                /* under mu */
{
    if (!w->cancel) return;
    w->cancel->refs++;
    if (spawn_detached(cancel_main, w->cancel) != 0) w->cancel->refs--;
}

static void cut(watch *w, cut_cause why)         /* under w->wm */
{
    w->state = W_CUT;
    w->cause = why;
    if (why == CUT_TIMEOUT) atomic_store(&silent, true);
    shutdown(w->fd, SHUT_RDWR);
}

static bool interrupted_now(void)
{
    return interrupted_flag && __atomic_load_n(interrupted_flag, __ATOMIC_RELAXED);
}

static void *watchdog_main(void *arg)
{
    (void)arg;
    for (;;) {
        struct timespec ts = { 0, TICK_NS };
        nanosleep(&ts, NULL);
        int64_t now = pgr_now_ns();
        bool stop = false;
        if (interrupted_now()) {
            int64_t at = atomic_load(&interrupted_at);
            if (!at) atomic_store(&interrupted_at, at = now);
            stop = now - at >= GRACE_NS;
        }
        pthread_mutex_lock(&mu);
        for (watch *w = registry; w; w = w->next) {
            pthread_mutex_lock(&w->wm);
            if (w->state == W_CUT) {
                /* final */
            } else if (stop) {
                if (w->state != W_IDLE) send_cancel(w);
                cut(w, CUT_INTERRUPT);
            } else if (w->state == W_CALL && now >= w->deadline_ns) {
                if (atomic_load(&silent)) {
                    cut(w, CUT_SILENT);
                } else {
                    w->state = W_CANCELLED;
                    w->deadline_ns = now + GRACE_NS;
                    send_cancel(w);
                }
            } else if (w->state == W_CANCELLED && now >= w->deadline_ns) {
                cut(w, CUT_TIMEOUT);
            }
            pthread_mutex_unlock(&w->wm);
        }
        pthread_mutex_unlock(&mu);
    }
    return NULL;
}

static void start_watchdog(void)
{
    if (spawn_detached(watchdog_main, NULL) != 0) fprintf(stderr, "pgrace: cannot start the connection watchdog\n");
}

static int watch_event(PGEventId id, void *info, void *pass);

/* Take w out of the registry; the watchdog never touches it again. */
static void watch_unregister(PGconn *c, watch *w)
{
    PQsetInstanceData(c, watch_event, NULL);
    pthread_mutex_lock(&mu);
    if (w->prev) w->prev->next = w->next; else registry = w->next;
    if (w->next) w->next->prev = w->prev;
    drop_cancel_ref(w->cancel);
    pthread_mutex_unlock(&mu);
    pthread_mutex_destroy(&w->wm);
    free(w);
}

/* libpq calls this when the connection is freed: one closed by PQfinish instead of
 * pgr_disconnect leaves the registry too (its socket already closed: pgr_disconnect is
 * the way, so that the watchdog never shuts down a descriptor reused meanwhile). */
static int watch_event(PGEventId id, void *info, void *pass)
{
    (void)pass;
    if (id == PGEVT_CONNDESTROY) {
        PGconn *c = ((PGEventConnDestroy *)info)->conn;
        watch *w = PQinstanceData(c, watch_event);
        if (w) watch_unregister(c, w);
    }
    return 1;
}

/* Register an open connection; a failure leaves it unwatched (its calls are not bounded). */
static void watch_register(PGconn *c)
{
    pthread_once(&started, start_watchdog);
    watch *w = calloc(1, sizeof *w);
    if (!w) return;
    w->conn = c;
    w->fd = PQsocket(c);
    pthread_mutex_init(&w->wm, NULL);
    PGcancel *pc = PQgetCancel(c);
    if (pc && (w->cancel = malloc(sizeof *w->cancel))) *w->cancel = (cancel_ref){ pc, 1 };
    else if (pc) PQfreeCancel(pc);
    if (!PQregisterEventProc(c, watch_event, "pgrace watchdog", NULL) || !PQsetInstanceData(c, watch_event, w)) {
        if (w->cancel) { PQfreeCancel(w->cancel->pc); free(w->cancel); }
        pthread_mutex_destroy(&w->wm);
        free(w);
        return;
    }
    pthread_mutex_lock(&mu);
    w->next = registry;
    if (registry) registry->prev = w;
    registry = w;
    pthread_mutex_unlock(&mu);
}

void pgr_disconnect(PGconn *c)
{
    if (!c) return;
    watch *w = PQinstanceData(c, watch_event);
    if (w) watch_unregister(c, w);      /* first: the descriptor is still ours */
    PQfinish(c);
}

void pgr_call_begin(PGconn *c, double timeout_s)
{
    watch *w = c ? PQinstanceData(c, watch_event) : NULL;
    if (!w) return;
    if (timeout_s <= 0) timeout_s = default_timeout_s;
    if (atomic_load(&silent) && timeout_s > 1) timeout_s = 1;
    int64_t now = pgr_now_ns();
    pthread_mutex_lock(&w->wm);
    if (w->state != W_CUT) {
        w->state = W_CALL;
        w->timeout_s = timeout_s;
        w->began_ns = now;
        w->deadline_ns = now + (int64_t)(timeout_s * 1e9);
    }
    pthread_mutex_unlock(&w->wm);
}

int pgr_call_end(PGconn *c, char *why, size_t len)
{
    watch *w = c ? PQinstanceData(c, watch_event) : NULL;
    if (!w) return 0;
    pthread_mutex_lock(&w->wm);
    watch_state st = w->state;
    cut_cause cause = w->cause;
    double t = w->timeout_s;
    if (st != W_CUT) w->state = W_IDLE;
    pthread_mutex_unlock(&w->wm);
    if (st == W_IDLE || st == W_CALL) return 0;
    if (!why || !len) return -1;
    if (st == W_CANCELLED)
        snprintf(why, len, "stuck for %.1f s, cancelled by the watchdog (--step-timeout)", t);
    else if (cause == CUT_TIMEOUT)
        snprintf(why, len, "no answer for %.1f s, nor to the watchdog's cancel a second later: the server is "
                 "not responding (stopped or overloaded?); connection closed (--step-timeout)", t);
    else if (cause == CUT_SILENT)
        snprintf(why, len, "no answer for %.1f s: the server is not responding (it left an earlier cancel "
                 "unanswered); connection closed", t);
    else
        snprintf(why, len, "interrupted; connection closed");
    return -1;
}

void pgr_cancel(PGconn *c)
{
    watch *w = c ? PQinstanceData(c, watch_event) : NULL;
    if (!w) return;
    pthread_mutex_lock(&mu);
    send_cancel(w);
    pthread_mutex_unlock(&mu);
}

PGresult *pgr_query(PGconn *c, const char *sql, int nparams, const char *const *params, char *err, size_t errlen)
{
    pgr_call_begin(c, 0);
    PGresult *r = nparams ? PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0) : PQexec(c, sql);
    char why[PGR_ERRLEN];
    if (pgr_call_end(c, why, sizeof why) != 0) {
        PQclear(r);
        snprintf(err, errlen, "%s", why);
        return NULL;
    }
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return r;
    snprintf(err, errlen, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    err[strcspn(err, "\n")] = '\0';
    if (!err[0]) snprintf(err, errlen, "no result (connection lost)");
    PQclear(r);
    return NULL;
}

/* ---- connecting ---- */

static void ignore_notice(void *arg, const char *msg)
{
    (void)arg; (void)msg;
}

/* The connection's connect_timeout in seconds (the DSN's, or pgrace's default of 10). */
static double connect_timeout_of(PGconn *c)
{
    double t = 10;
    PQconninfoOption *o = PQconninfo(c);
    for (PQconninfoOption *p = o; p && p->keyword; p++)
        if (strcmp(p->keyword, "connect_timeout") == 0 && p->val && atoi(p->val) > 0) t = atoi(p->val);
    PQconninfoFree(o);
    return t < 2 ? 2 : t;             /* libpq's own floor */
}

PGconn *pgr_connect(const char *dsn, char *err, size_t errlen)
{
    if (interrupted_now()) { snprintf(err, errlen, "cannot connect to the server: interrupted"); return NULL; }
    /* Earlier keywords are defaults; the DSN (expanded from dbname) overrides them. */
    const char *keys[] = { "connect_timeout", "application_name", "dbname", NULL };
    const char *vals[] = { "10", "pgrace", dsn, NULL };
    PGconn *c = PQconnectStartParams(keys, vals, 1);
    const char *fail = c ? NULL : "out of memory";
    if (c && PQstatus(c) != CONNECTION_BAD) {
        int64_t deadline = pgr_now_ns() + (int64_t)(connect_timeout_of(c) * 1e9);
        PostgresPollingStatusType st = PGRES_POLLING_WRITING;
        while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
            if (interrupted_now()) { fail = "interrupted"; break; }
            if (pgr_now_ns() > deadline) { fail = "timeout expired (connect_timeout)"; break; }
            struct pollfd p = { .fd = PQsocket(c), .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT };
            int r = poll(&p, 1, 100);
            if (r < 0 && errno != EINTR) { fail = strerror(errno); break; }
            if (r > 0) st = PQconnectPoll(c);
        }
    }
    if (fail || PQstatus(c) != CONNECTION_OK) {
        char m[300], shown[400];
        snprintf(m, sizeof m, "%s", fail ? fail : PQerrorMessage(c));
        m[strcspn(m, "\n")] = '\0';
        pgr_dsn_redact(dsn, m, shown, sizeof shown);     /* libpq may quote a value of the DSN */
        snprintf(err, errlen, "cannot connect to the server: %s", shown);
        if (c) PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, ignore_notice, NULL);   /* NOTICEs are not results */
    watch_register(c);
    return c;
}
