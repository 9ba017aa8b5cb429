/*
 * explore.c — deterministic interleaving exploration over a real server.
 *
 * The scheduler sits at the seam's gate: before each statement a session parks (READY)
 * and waits for a grant; the coordinator grants one statement at a time, then waits
 * until the system is quiescent again: every session parked, finished, or BLOCKED on a
 * lock held by another session. Blocked is read from a monitor connection with
 * pg_isolation_test_session_is_blocked() (as isolationtester does), but only when a
 * granted statement has not come back within ~120 us, and re-asked at once rather than
 * on a 10 ms polling floor. A schedule is the sequence of sessions granted; re-running
 * it on a fresh trial re-creates the same interleaving (replay), which is what makes
 * exhaustive search, saved counterexamples and minimization possible.
 *
 * Strategies: exhaustive (stateless depth-first search with sleep sets: BEGIN commutes
 * with everything and two plain SELECTs commute, so orders that differ only there are
 * pruned), random (uniform among ready sessions), and PCT (random priorities with d-1
 * priority change points; finds a depth-d bug with probability >= 1/(n*k^(d-1))).
 */
#include "explore.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Session states, as the coordinator sees them. */
typedef enum {
    SS_RUNNING,  /* running client code, or its granted statement is in flight and not seen
                    waiting: moved on when the session parks at the seam (READY), finishes
                    (DONE), or the monitor sees its statement wait on a lock (BLOCKED) */
    SS_READY,    /* parked at the seam before a statement: moved on only by a grant (RUNNING) */
    SS_BLOCKED,  /* its statement waits on a lock held by another session: moved on when the
                    statement completes (READY or DONE), or the monitor sees it move (RUNNING) */
    SS_DONE,     /* answered its request(s): moved on by the next trial */
} sess_state;

enum { K_NOOP = PGR_SQL_NOOP, K_READ = PGR_SQL_READ, K_WRITE = PGR_SQL_WRITE };   /* for the independence relation */

typedef struct node {               /* one decision of the depth-first search */
    uint64_t ready, sleep, done;
    int chosen;
    unsigned char kind[PGR_MAX_SESSIONS];
} node;

typedef struct sched_run {          /* what one schedule did */
    int grants[PGR_MAX_GRANTS];     /* session granted, in order */
    uint64_t ready[PGR_MAX_GRANTS]; /* who was ready at that grant */
    bool waited[PGR_MAX_GRANTS];    /* that statement was seen waiting on a lock */
    int n;
    pgr_fault_at fat;               /* the fault of this schedule (kind NONE: none) */
    int diverged_at;                /* forced schedule: first grant not possible; -1 none */
    bool pruned;                    /* exhaustive: every enabled choice was asleep */
} sched_run;

typedef struct explorer {
    pgr_pool *pool;
    int n;
    pthread_mutex_t mu;
    pthread_cond_t cv;                          /* a session changed state */
    pthread_cond_t cv_s[PGR_MAX_SESSIONS];      /* session i was granted */
    sess_state st[PGR_MAX_SESSIONS];
    bool granted[PGR_MAX_SESSIONS];
    bool abort;                                 /* let every session through (harness error) */
    const char *pending_sql[PGR_MAX_SESSIONS];
    int current_grant[PGR_MAX_SESSIONS];        /* grant index of the session's in-flight step */
    PGconn *monitor;
    pgr_gate_ops ops;
    volatile int *interrupted;
    pgr_fault fault;                            /* the pool's fault (kind NONE: none) */
    double step_timeout_s;                      /* 0: the pool's default */
    pgr_fault_at fat;                           /* where it fires in the next schedule */
    /* strategy */
    pgr_strategy strategy;
    uint64_t rng;
    int depth;
    int k_estimate;
    int prio[PGR_MAX_SESSIONS];
    int change_at[8];
    node *stack;                                /* exhaustive */
    int nstack;
    const uint8_t *bytes;                       /* fuzzing: decision g = bytes[g] among ready */
    size_t nbytes;
    const int *forced;                          /* forced prefix (DFS path, replay, minimize) */
    int nforced;
    bool nonpreemptive_after;                   /* after the forced prefix: keep the last session */
} explorer;

/* ---- gate ops: run in the session threads ---- */

static void gate_before(void *ctx, pgr_session *s, const pgr_step *step)
{
    explorer *x = ctx;
    pthread_mutex_lock(&x->mu);
    x->pending_sql[s->index] = step->sql;
    x->st[s->index] = SS_READY;
    pthread_cond_signal(&x->cv);
    while (!x->granted[s->index] && !x->abort) pthread_cond_wait(&x->cv_s[s->index], &x->mu);
    x->granted[s->index] = false;
    pthread_mutex_unlock(&x->mu);
}

static void gate_after(void *ctx, pgr_session *s, const pgr_step *step)
{
    (void)ctx; (void)s; (void)step;
}

static void gate_done(void *ctx, pgr_session *s)
{
    explorer *x = ctx;
    pthread_mutex_lock(&x->mu);
    x->st[s->index] = SS_DONE;
    pthread_cond_signal(&x->cv);
    pthread_mutex_unlock(&x->mu);
}

/* ---- helpers ---- */

static uint64_t rnd(explorer *x)
{
    uint64_t v = x->rng;       /* xorshift64* */
    v ^= v >> 12; v ^= v << 25; v ^= v >> 27;
    x->rng = v;
    return v * 2685821657736338717ULL;
}

static bool independent(int a, int b)
{
    return a == K_NOOP || b == K_NOOP || (a == K_READ && b == K_READ);
}

static void add_ns(struct timespec *ts, long ns)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_nsec += ns;
    while (ts->tv_nsec >= 1000000000L) { ts->tv_nsec -= 1000000000L; ts->tv_sec++; }
}

/* A session's backend; a fault's reconnect changes it (written by the session thread). */
static int pid_of(explorer *x, int i)
{
    return __atomic_load_n(&pgr_pool_session(x->pool, i)->backend_pid, __ATOMIC_ACQUIRE);
}

/* Ask the monitor which of the in-flight sessions wait on a lock held by another session.
 * Called without the mutex. -1 on a monitor failure. */
static int query_blocked(explorer *x, const int *which, int n, bool *blocked)
{
    char a[PGR_MAX_SESSIONS * 12 + 4], all[PGR_MAX_SESSIONS * 12 + 4];
    size_t off = 0, offa = 0;
    a[off++] = '{';
    all[offa++] = '{';
    for (int i = 0; i < n; i++) off += (size_t)snprintf(a + off, sizeof a - off, "%s%d", i ? "," : "", pid_of(x, which[i]));
    for (int i = 0; i < x->n; i++) offa += (size_t)snprintf(all + offa, sizeof all - offa, "%s%d", i ? "," : "", pid_of(x, i));
    snprintf(a + off, sizeof a - off, "}");
    snprintf(all + offa, sizeof all - offa, "}");
    const char *p[2] = { a, all };
    PGresult *r = PQexecPrepared(x->monitor, "blocked", 2, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != n) { PQclear(r); return -1; }
    for (int i = 0; i < n; i++) blocked[i] = PQgetvalue(r, i, 0)[0] == 't';
    PQclear(r);
    return 0;
}

/* Wait until no session is RUNNING: each is READY, DONE, or BLOCKED by another session.
 * Returns 0, or -1 with err (stuck past the limit, interrupted, monitor lost). */
static int quiesce(explorer *x, sched_run *out, char *err, size_t errlen)
{
    int64_t deadline = pgr_now_ns() + 10LL * 1000000000;
    long wait_ns = 120000;        /* a statement's usual round trip; then ask the monitor */
    for (;;) {
        int inflight[PGR_MAX_SESSIONS], nin = 0, nrun = 0;
        pthread_mutex_lock(&x->mu);
        for (int i = 0; i < x->n; i++) {
            if (x->st[i] == SS_RUNNING) nrun++;
            if (x->st[i] == SS_RUNNING || x->st[i] == SS_BLOCKED) inflight[nin++] = i;
        }
        if (nin == 0) { pthread_mutex_unlock(&x->mu); return 0; }
        if (nrun > 0) {
            /* give a granted statement its chance to come back before asking the server */
            struct timespec ts;
            add_ns(&ts, wait_ns);
            int rc = pthread_cond_timedwait(&x->cv, &x->mu, &ts);
            pthread_mutex_unlock(&x->mu);
            if (rc == 0) continue;              /* something moved: look again */
            wait_ns = 50000;
        } else {
            pthread_mutex_unlock(&x->mu);
        }
        if (x->interrupted && *x->interrupted) { snprintf(err, errlen, "interrupted"); return -1; }
        if (pgr_now_ns() > deadline) {
            snprintf(err, errlen, "every live session has waited on a lock for 10 s: a cycle the server does not resolve");
            return -1;
        }
        bool blocked[PGR_MAX_SESSIONS];
        if (query_blocked(x, inflight, nin, blocked) != 0) {
            snprintf(err, errlen, "monitor connection: %s", PQerrorMessage(x->monitor));
            err[strcspn(err, "\n")] = '\0';
            return -1;
        }
        bool all_blocked = true;
        pthread_mutex_lock(&x->mu);
        for (int j = 0; j < nin; j++) {
            int i = inflight[j];
            if (x->st[i] != SS_RUNNING && x->st[i] != SS_BLOCKED) continue;   /* moved meanwhile */
            if (blocked[j]) {
                x->st[i] = SS_BLOCKED;
                if (out && x->current_grant[i] >= 0) out->waited[x->current_grant[i]] = true;
            } else {
                x->st[i] = SS_RUNNING;
                all_blocked = false;
            }
        }
        if (all_blocked) {
            /* everyone in flight waits on someone: quiescent, unless nobody can move */
            bool any_ready = false;
            for (int i = 0; i < x->n; i++) any_ready |= x->st[i] == SS_READY;
            if (any_ready) { pthread_mutex_unlock(&x->mu); return 0; }
            /* all live sessions blocked: the server's deadlock detector will break a cycle */
            struct timespec ts;
            add_ns(&ts, 2000000);
            pthread_cond_timedwait(&x->cv, &x->mu, &ts);
        }
        pthread_mutex_unlock(&x->mu);
    }
}

/* Cancel whatever is in flight and let every session run to the end (harness error path). */
static void abort_trial(explorer *x)
{
    pthread_mutex_lock(&x->mu);
    x->abort = true;
    for (int i = 0; i < x->n; i++) pthread_cond_signal(&x->cv_s[i]);
    pthread_mutex_unlock(&x->mu);
    for (int i = 0; i < x->n; i++) {
        PGcancel *c = PQgetCancel(pgr_pool_session(x->pool, i)->conn);
        char eb[64];
        if (c) { PQcancel(c, eb, sizeof eb); PQfreeCancel(c); }
    }
}

/* ---- choosing the next session ---- */

static int lowest(uint64_t m) { return m ? __builtin_ctzll(m) : -1; }

static int choose(explorer *x, sched_run *out, uint64_t ready, const unsigned char *kind)
{
    int g = out->n;
    if (x->bytes) {
        int cnt = __builtin_popcountll(ready);
        int pick = (size_t)g < x->nbytes ? x->bytes[g] % cnt : 0;
        for (int i = 0; i < x->n; i++)
            if ((ready >> i & 1) && pick-- == 0) return i;
        return lowest(ready);
    }
    if (g < x->nforced) {
        int want = x->forced[g];
        if (want >= 0 && want < x->n && (ready >> want & 1)) {
            if (x->strategy == PGR_EXHAUSTIVE && g < x->nstack) x->stack[g].ready = ready;
            return want;
        }
        if (out->diverged_at < 0) out->diverged_at = g;
    }
    if (x->nonpreemptive_after || x->nforced > 0) {
        if (x->strategy != PGR_EXHAUSTIVE || out->diverged_at >= 0) {
            int last = g > 0 ? out->grants[g - 1] : -1;
            return (last >= 0 && (ready >> last & 1)) ? last : lowest(ready);
        }
    }
    switch (x->strategy) {
    case PGR_EXHAUSTIVE: {
        if (out->pruned) return lowest(ready);
        node *nd = &x->stack[g];
        nd->ready = ready;
        memcpy(nd->kind, kind, sizeof nd->kind);
        nd->sleep = 0;
        if (g > 0) {
            node *pa = &x->stack[g - 1];
            uint64_t cand = (pa->sleep | pa->done) & ~(1ULL << pa->chosen);
            for (int u = 0; u < x->n; u++)
                if ((cand >> u & 1) && independent(pa->kind[u], pa->kind[pa->chosen])) nd->sleep |= 1ULL << u;
        }
        uint64_t awake = ready & ~nd->sleep;
        if (!awake) {                   /* every order from here was covered elsewhere */
            out->pruned = true;
            x->nstack = g;
            return lowest(ready);
        }
        nd->chosen = lowest(awake);
        nd->done = 1ULL << nd->chosen;
        x->nstack = g + 1;
        return nd->chosen;
    }
    case PGR_RANDOM: {
        int cnt = __builtin_popcountll(ready);
        int pick = (int)(rnd(x) % (uint64_t)cnt);
        for (int i = 0; i < x->n; i++)
            if ((ready >> i & 1) && pick-- == 0) return i;
        return lowest(ready);
    }
    case PGR_PCT: {
        int best = -1;
        for (int i = 0; i < x->n; i++)
            if ((ready >> i & 1) && (best < 0 || x->prio[i] > x->prio[best])) best = i;
        for (int j = 0; j < x->depth - 1; j++)
            if (x->change_at[j] == g + 1) {
                x->prio[best] = j;      /* below every initial priority */
                best = -1;
                for (int i = 0; i < x->n; i++)
                    if ((ready >> i & 1) && (best < 0 || x->prio[i] > x->prio[best])) best = i;
            }
        return best;
    }
    }
    return lowest(ready);
}

static void pct_reset(explorer *x)
{
    for (int i = 0; i < x->n; i++) x->prio[i] = x->depth + i;
    for (int i = x->n - 1; i > 0; i--) {           /* random permutation of priorities */
        int j = (int)(rnd(x) % (uint64_t)(i + 1));
        int t = x->prio[i]; x->prio[i] = x->prio[j]; x->prio[j] = t;
    }
    for (int j = 0; j < x->depth - 1; j++) x->change_at[j] = 1 + (int)(rnd(x) % (uint64_t)x->k_estimate);
}

/* Run trial t under the scheduler. 0, or -1 with err (harness error). */
static int run_schedule(explorer *x, pgr_trial *t, sched_run *out, pgr_result *res)
{
    memset(out, 0, sizeof *out);
    out->diverged_at = -1;
    pthread_mutex_lock(&x->mu);
    x->abort = false;
    for (int i = 0; i < x->n; i++) {
        x->st[i] = SS_RUNNING;
        x->granted[i] = false;
        x->current_grant[i] = -1;
    }
    pthread_mutex_unlock(&x->mu);
    if (x->strategy == PGR_PCT) pct_reset(x);
    out->fat = x->fat;
    if (x->fat.fault.kind != PGR_FAULT_NONE && x->fat.session < t->nsessions) {
        t->fault_site[x->fat.session] = (short)x->fat.site;
        t->fault_applies[x->fat.session] = x->fat.applies;
    }
    if (pgr_pool_start(x->pool, t, res) != 0) return -1;
    char err[PGR_ERRLEN] = "";
    for (;;) {
        if (quiesce(x, out, err, sizeof err) != 0) break;
        uint64_t ready = 0;
        bool all_done = true;
        unsigned char kind[PGR_MAX_SESSIONS] = { 0 };
        pthread_mutex_lock(&x->mu);
        for (int i = 0; i < x->n; i++) {
            if (x->st[i] == SS_READY) { ready |= 1ULL << i; kind[i] = (unsigned char)pgr_sql_kind(x->pending_sql[i]); }
            if (x->st[i] != SS_DONE) all_done = false;
        }
        pthread_mutex_unlock(&x->mu);
        if (all_done) break;
        if (!ready) continue;                     /* only blocked sessions: quiesce waits */
        if (out->n == PGR_MAX_GRANTS) { snprintf(err, sizeof err, "schedule longer than %d statements", PGR_MAX_GRANTS); break; }
        int c = choose(x, out, ready, kind);
        out->grants[out->n] = c;
        out->ready[out->n] = ready;
        pthread_mutex_lock(&x->mu);
        x->current_grant[c] = out->n;
        x->st[c] = SS_RUNNING;
        x->granted[c] = true;
        pthread_cond_signal(&x->cv_s[c]);
        pthread_mutex_unlock(&x->mu);
        out->n++;
    }
    if (err[0]) abort_trial(x);
    int rc = pgr_pool_finish(x->pool, res);
    for (int g = 0; g < out->n; g++) {          /* sessions are idle now: mark lock waits */
        if (!out->waited[g]) continue;
        int s = out->grants[g], k = 0;
        for (int i = 0; i < g; i++) k += out->grants[i] == s;
        if (k < PGR_MAX_STEPS) t->trace[(size_t)s * PGR_MAX_STEPS + k].waited = true;
    }
    if (err[0] && !res->error[0]) snprintf(res->error, sizeof res->error, "%s", err);
    return (err[0] || rc != 0) ? -1 : 0;
}

/* ---- explaining a schedule ---- */

static const pgr_step *step_of(const pgr_trial *t, const sched_run *sr, int g, int *session)
{
    int s = sr->grants[g], k = 0;
    for (int i = 0; i < g; i++) k += sr->grants[i] == s;
    *session = s;
    if (k >= PGR_MAX_STEPS || k >= t->nsteps[s]) return NULL;
    return &t->trace[(size_t)s * PGR_MAX_STEPS + k];
}

/* "S2 ran 'find invite' (rows=1) before S1's 'mark used' committed" when the schedule
 * shows a read that saw the state from before another session's write committed. */
static void explain_order(const pgr_trial *t, const sched_run *sr, char *out, size_t len)
{
    out[0] = '\0';
    for (int w = 0; w < sr->n; w++) {
        int a;
        const pgr_step *ws = step_of(t, sr, w, &a);
        if (!ws || pgr_sql_kind(ws->sql) != K_WRITE || strcasecmp(ws->sql, "COMMIT") == 0 ||
            strcasecmp(ws->sql, "ROLLBACK") == 0 || ws->rows <= 0)
            continue;
        int commit = w;                      /* autocommit, unless a COMMIT of a follows */
        bool in_tx = false;
        for (int g = 0; g < w; g++) {
            int s2;
            const pgr_step *st = step_of(t, sr, g, &s2);
            if (s2 == a && st) {
                if (strcasecmp(st->sql, "BEGIN") == 0) in_tx = true;
                if (strcasecmp(st->sql, "COMMIT") == 0 || strcasecmp(st->sql, "ROLLBACK") == 0) in_tx = false;
            }
        }
        if (in_tx)
            for (int g = w + 1; g < sr->n; g++) {
                int s2;
                const pgr_step *st = step_of(t, sr, g, &s2);
                if (s2 == a && st && strcasecmp(st->sql, "COMMIT") == 0) { commit = g; break; }
            }
        /* the last read by another session that still saw the state before that commit */
        for (int r = commit - 1; r >= 0; r--) {
            int b;
            const pgr_step *rs = step_of(t, sr, r, &b);
            if (!rs || b == a || pgr_sql_kind(rs->sql) != K_READ) continue;
            char seen[96];
            if (rs->values[0]) snprintf(seen, sizeof seen, "read %s", rs->values);
            else snprintf(seen, sizeof seen, "found %ld rows", rs->rows);
            snprintf(out, len, "S%d's '%s' %s before S%d's '%s' committed", b + 1, rs->label, seen, a + 1, ws->label);
            return;
        }
    }
}

static int count_switches(const sched_run *sr)
{
    int n = 0;
    for (int g = 1; g < sr->n; g++)
        if (sr->grants[g] != sr->grants[g - 1] && (sr->ready[g] >> sr->grants[g - 1] & 1)) n++;
    return n;
}

/* The interleaving as a session-by-session table, then the explanation. */
static void describe(const pgr_trial *t, const sched_run *sr, char *out, size_t len)
{
    size_t off = 0;
#define PUT(...) do { int w_ = snprintf(out + off, off < len ? len - off : 0, __VA_ARGS__); if (w_ > 0) off += (size_t)w_; } while (0)
    PUT("    %3s ", "#");
    for (int s = 0; s < t->nsessions; s++) PUT(" %-34s", (char[8]){ 'S', (char)('1' + s), 0 });
    PUT("\n");
    for (int g = 0; g < sr->n; g++) {
        int s;
        const pgr_step *st = step_of(t, sr, g, &s);
        char cell[64];
        int nth = 0;
        for (int i = 0; i < g; i++) nth += sr->grants[i] == sr->grants[g];
        bool fault = st && t->fault_step[s] == nth;
        if (st)
            snprintf(cell, sizeof cell, "%.20s rows=%ld%s%s%s", st->label, st->rows,
                     strcmp(st->sqlstate, "00000") ? " " : "", strcmp(st->sqlstate, "00000") ? st->sqlstate : "",
                     fault ? " FAULT" : "");
        else
            snprintf(cell, sizeof cell, "...");
        PUT("    %3d ", g + 1);
        for (int k = 0; k < s; k++) PUT(" %-34s", "");
        PUT(" %s%s\n", cell, sr->waited[g] ? " (waited for a lock)" : "");
        if (fault) {
            for (int j = 0; j <= s; j++) PUT(" %-34s", "");
            PUT("     ^ %s\n", st->message);
        }
    }
    PUT("    answers:");
    for (int s = 0; s < t->nsessions; s++) {
        PUT(" S%d=%d", s + 1, t->resp[s].status);
        if (t->resp[s].id >= 0) PUT("(id %lld)", t->resp[s].id);
        if (t->fault_retried[s]) PUT("[retry after the fault]");
    }
    char order[400];
    explain_order(t, sr, order, sizeof order);
    PUT("\n    why: %s%s%s\n", order, order[0] ? "; then " : "", t->why);
#undef PUT
}

/* ---- schedule files ---- */

typedef struct sched_file {
    char scenario[64], variant[64], kase[64], violation[200], explanation[400];
    pgr_isolation iso;
    int sessions;
    int grants[PGR_MAX_GRANTS];
    int ngrants;
    pgr_fault_at fat;
} sched_file;

static int write_schedule(const char *path, const pgr_scenario *sc, const pgr_variant *v, pgr_isolation iso,
                          const pgr_trial *t, const sched_run *sr, const char *table)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "# pgrace schedule: replay with `pgrace replay %s`\n", path);
    fprintf(f, "scenario %s\nvariant %s\nisolation %s\nsessions %d\ncase %s\ngrants", sc->name, v->name,
            pgr_isolation_name(iso), t->nsessions, sc->cases[t->kase].name);
    for (int g = 0; g < sr->n; g++) fprintf(f, " %d", sr->grants[g] + 1);
    if (sr->fat.fault.kind != PGR_FAULT_NONE)       /* session, site, commit applied, kind */
        fprintf(f, "\nfault %d %d %d %s%s%s", sr->fat.session + 1, sr->fat.site + 1, sr->fat.applies ? 1 : 0,
                pgr_fault_name(sr->fat.fault.kind), sr->fat.fault.step[0] ? ":" : "", sr->fat.fault.step);
    fprintf(f, "\nviolation %s\nexplanation %s\n#\n",
            t->violated ? pgr_invariant_name(sc, t->first_invariant) : "none", t->violated ? t->why : "");
    for (const char *p = table; *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        fprintf(f, "#%.*s\n", (int)n, p);
        p += n + (nl ? 1 : 0);
    }
    return fclose(f) == 0 ? 0 : -1;
}

/* Parse a schedule file. 0, or -1 with err naming the file and the line. */
static int parse_schedule(FILE *f, const char *path, sched_file *sf, char *err, size_t errlen);

static int read_schedule(const char *path, sched_file *sf, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) { snprintf(err, errlen, "cannot read schedule %s: %s", path, strerror(errno)); return -1; }
    return parse_schedule(f, path, sf, err, errlen);
}

int pgr_schedule_check(const char *data, size_t n, char *err, size_t errlen)
{
    sched_file sf;
    FILE *f = fmemopen((void *)data, n, "r");
    if (!f) { snprintf(err, errlen, "fmemopen: %s", strerror(errno)); return -1; }
    return parse_schedule(f, "<memory>", &sf, err, errlen);
}

/* Parse a schedule (closes f). 0, or -1 with err naming the file and the line. */
static int parse_schedule(FILE *f, const char *path, sched_file *sf, char *err, size_t errlen)
{
    memset(sf, 0, sizeof *sf);
    sf->sessions = -1;
    sf->iso = PGR_NISO;
    char line[2048];
    int lineno = 0;
    bool have_grants = false;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0') continue;
        char *sp = strchr(line, ' ');
        char *val = sp ? sp + 1 : line + strlen(line);
        if (sp) *sp = '\0';
        if (strcmp(line, "scenario") == 0) snprintf(sf->scenario, sizeof sf->scenario, "%s", val);
        else if (strcmp(line, "variant") == 0) snprintf(sf->variant, sizeof sf->variant, "%s", val);
        else if (strcmp(line, "case") == 0) snprintf(sf->kase, sizeof sf->kase, "%s", val);
        else if (strcmp(line, "violation") == 0) snprintf(sf->violation, sizeof sf->violation, "%s", val);
        else if (strcmp(line, "explanation") == 0) snprintf(sf->explanation, sizeof sf->explanation, "%s", val);
        else if (strcmp(line, "isolation") == 0) {
            if (pgr_isolation_parse(val, &sf->iso) != 0) {
                snprintf(err, errlen, "%s:%d: bad isolation '%s'", path, lineno, val);
                fclose(f);
                return -1;
            }
        } else if (strcmp(line, "sessions") == 0) {
            char *end;
            long v = strtol(val, &end, 10);
            if (*val == '\0' || *end || v < 1 || v > 8) {
                snprintf(err, errlen, "%s:%d: sessions must be 1..8, got '%s'", path, lineno, val);
                fclose(f);
                return -1;
            }
            sf->sessions = (int)v;
        } else if (strcmp(line, "grants") == 0) {
            have_grants = true;
            char *p = val, *end;
            while (*p) {
                while (*p == ' ') p++;
                if (!*p) break;
                long g = strtol(p, &end, 10);
                if (end == p || (*end && *end != ' ') || g < 1 || g > 8 || sf->ngrants == PGR_MAX_GRANTS) {
                    snprintf(err, errlen, "%s:%d: grants must be session numbers 1..8", path, lineno);
                    fclose(f);
                    return -1;
                }
                sf->grants[sf->ngrants++] = (int)g - 1;
                p = end;
            }
        } else if (strcmp(line, "fault") == 0) {
            int fs, site, applied, used = 0;
            char kerr[PGR_ERRLEN];
            if (sscanf(val, "%d %d %d %n", &fs, &site, &applied, &used) != 3 || fs < 1 || fs > 8 || site < 1 ||
                site > PGR_MAX_STEPS || (applied != 0 && applied != 1) || !val[used] ||
                pgr_fault_parse(val + used, &sf->fat.fault, kerr, sizeof kerr) != 0 || strchr(val + used, '@')) {
                snprintf(err, errlen, "%s:%d: fault must be 'SESSION SITE APPLIED KIND', got '%s'", path, lineno, val);
                fclose(f);
                return -1;
            }
            sf->fat.session = fs - 1;
            sf->fat.site = site - 1;
            sf->fat.applies = applied;
        } else {
            snprintf(err, errlen, "%s:%d: unknown key '%s'", path, lineno, line);
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    const char *missing = !sf->scenario[0] ? "scenario" : !sf->variant[0] ? "variant" : sf->iso == PGR_NISO ? "isolation"
                        : sf->sessions < 0 ? "sessions" : !sf->kase[0] ? "case" : !have_grants ? "grants"
                        : !sf->violation[0] ? "violation" : NULL;
    if (missing) { snprintf(err, errlen, "%s: not a pgrace schedule (no '%s' line)", path, missing); return -1; }
    if (sf->fat.fault.kind != PGR_FAULT_NONE && sf->fat.session >= sf->sessions) {
        snprintf(err, errlen, "%s: the fault names session %d of %d", path, sf->fat.session + 1, sf->sessions);
        return -1;
    }
    for (int g = 0; g < sf->ngrants; g++)
        if (sf->grants[g] >= sf->sessions) {
            snprintf(err, errlen, "%s: grant %d names session %d of %d", path, g + 1, sf->grants[g] + 1, sf->sessions);
            return -1;
        }
    return 0;
}

/* ---- the explorer's life cycle ---- */

static explorer *explorer_new(volatile int *interrupted)
{
    explorer *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
    for (int i = 0; i < PGR_MAX_SESSIONS; i++) pthread_cond_init(&x->cv_s[i], NULL);
    x->ops = (pgr_gate_ops){ .before = gate_before, .after = gate_after, .done = gate_done, .ctx = x };
    x->interrupted = interrupted;
    x->rng = 0x9E3779B97F4A7C15ULL;
    x->depth = 2;
    x->k_estimate = 8;
    x->stack = calloc(PGR_MAX_GRANTS, sizeof *x->stack);
    return x;
}

static void explorer_free(explorer *x)
{
    if (!x) return;
    if (x->monitor) PQfinish(x->monitor);
    free(x->stack);
    free(x);
}

/* Open the pool (sessions gated by x) and the monitor connection. */
static int explorer_open_opts(explorer *x, const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                              int sessions, pgr_isolation iso, bool per_trial, const pgr_fault *fault, pgr_result *res)
{
    x->n = sessions;
    if (fault) x->fault = *fault;
    pgr_pool_opts po = { .sessions = sessions, .iso = iso, .realtime = false, .gate = &x->ops,
                         .thread_per_trial = per_trial, .fault = &x->fault, .step_timeout_s = x->step_timeout_s,
                         .interrupted = x->interrupted };
    x->pool = pgr_pool_open(dsn, sc, v, &po, res);
    if (!x->pool) return -1;
    x->monitor = pgr_connect(dsn, res->error, sizeof res->error);
    if (!x->monitor) return -1;
    PGresult *r = PQprepare(x->monitor, "blocked",
        "SELECT pg_isolation_test_session_is_blocked(p, $2::int[]) "
        "FROM unnest($1::int[]) WITH ORDINALITY AS u(p, o) ORDER BY o", 2, NULL);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) snprintf(res->error, sizeof res->error, "monitor: %s", PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

static int explorer_open(explorer *x, const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                         int sessions, pgr_isolation iso, const pgr_fault *fault, pgr_result *res)
{
    return explorer_open_opts(x, dsn, sc, v, sessions, iso, false, fault, res);
}

static void explorer_close(explorer *x, pgr_result *res)
{
    if (x->monitor) { PQfinish(x->monitor); x->monitor = NULL; }
    if (x->pool) { pgr_pool_close(x->pool, res); x->pool = NULL; }
}

/* Run one forced schedule on a fresh trial of the pool; the trial is prepared and checked.
 * t_out receives the checked trial (trace pointer valid until the next run). */
static int run_forced(explorer *x, const int *grants, int n, int kase, long long trial_no,
                      pgr_result *res, pgr_trial **t_out, sched_run *sr)
{
    pgr_batch b;
    pgr_result scratch;
    memset(&scratch, 0, sizeof scratch);
    scratch.sc = res->sc;
    if (pgr_pool_prepare(x->pool, trial_no, 1, kase, &b, &scratch) != 0) {
        snprintf(res->error, sizeof res->error, "%s", scratch.error);
        return -1;
    }
    pgr_strategy saved = x->strategy;
    x->strategy = PGR_RANDOM;      /* unused: forced + non-preemptive decide everything */
    x->forced = grants;
    x->nforced = n;
    x->nonpreemptive_after = true;
    int rc = run_schedule(x, &b.trials[0], sr, res);
    x->strategy = saved;
    x->forced = NULL;
    x->nforced = 0;
    x->nonpreemptive_after = false;
    if (rc != 0) { pgr_result_free(&scratch); return -1; }
    if (pgr_pool_check(x->pool, &b, 1, &scratch) != 0) {
        snprintf(res->error, sizeof res->error, "%s", scratch.error);
        pgr_result_free(&scratch);
        return -1;
    }
    pgr_result_free(&scratch);
    *t_out = &b.trials[0];
    return 0;
}

/* Shrink a failing schedule: the shortest forced prefix that, run on without preemption,
 * still breaks the same invariant. Fills best (the run) and returns its trial. */
static pgr_trial *minimize(explorer *x, const sched_run *failing, int kase, int inv, long long *trial_no,
                           pgr_result *res, sched_run *best)
{
    pgr_trial *t = NULL;
    for (int prefix = 0; prefix <= failing->n; prefix++) {
        if (run_forced(x, failing->grants, prefix, kase, (*trial_no)++, res, &t, best) != 0) return NULL;
        if (t->violated && t->first_invariant == inv) return t;
    }
    return NULL;
}

/* Try the failing schedule with each session left out, on a pool one session smaller.
 * Returns that pool's explorer (failing rewritten to its schedule) when the same invariant
 * still breaks, else NULL. */
static explorer *fewer_sessions(explorer *x, const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                                pgr_isolation iso, sched_run *failing, int kase, int inv, long long *trial_no)
{
    pgr_result sink;
    pgr_result_init(&sink, sc, v, iso, x->n - 1, "explore");
    explorer *y = explorer_new(x->interrupted);
    if (!y || explorer_open(y, dsn, sc, v, x->n - 1, iso, NULL, &sink) != 0) {
        if (y) { explorer_close(y, &sink); explorer_free(y); }
        pgr_result_free(&sink);
        return NULL;
    }
    for (int drop = x->n - 1; drop >= 0; drop--) {
        int grants[PGR_MAX_GRANTS], n = 0;
        for (int g = 0; g < failing->n; g++)
            if (failing->grants[g] != drop) grants[n++] = failing->grants[g] - (failing->grants[g] > drop);
        pgr_trial *t;
        sched_run *sr = calloc(1, sizeof *sr);
        if (!sr) break;
        if (run_forced(y, grants, n, kase, (*trial_no)++, &sink, &t, sr) != 0) { free(sr); break; }
        if (t->violated && t->first_invariant == inv) {
            *failing = *sr;
            free(sr);
            pgr_result_free(&sink);
            return y;
        }
        free(sr);
    }
    explorer_close(y, &sink);
    explorer_free(y);
    pgr_result_free(&sink);
    return NULL;
}

/* Invariant (scenario's >= 0, the harness's < 0) to a slot of per-invariant arrays. */
static int inv_slot(int inv) { return inv >= 0 ? inv : PGR_MAX_INV + 1 + inv; }
static int slot_inv(int slot) { return slot < PGR_MAX_INV - 2 ? slot : slot - PGR_MAX_INV - 1; }

/* The fault sites of a variant's requests, learned from one schedule run without firing:
 * (session, site, commit outcome) triples. Returns how many. */
static int fault_sites(explorer *x, int kase, long long *trial_no, pgr_result *res, pgr_fault_at *out, int cap)
{
    pgr_trial *t;
    sched_run *sr = calloc(1, sizeof *sr);
    if (!sr) return -1;
    x->fat = (pgr_fault_at){ .session = -1 };
    int rc = run_forced(x, NULL, 0, kase, (*trial_no)++, res, &t, sr);
    free(sr);
    if (rc != 0) return -1;
    int n = 0;
    for (int s = 0; s < t->nsessions; s++)
        for (int site = 0; site < t->fault_sites_seen[s]; site++)
            for (int a = 0; a < (x->fault.kind == PGR_FAULT_LOST_COMMIT ? 2 : 1) && n < cap; a++)
                out[n++] = (pgr_fault_at){ .fault = x->fault, .session = s, .site = site, .applies = a };
    return n;
}

int pgr_explore(const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                const pgr_explore_opts *o, pgr_result *res)
{
    pgr_result_init(res, sc, v, o->iso, o->sessions, "explore");
    if (v->explore_blind[o->iso]) res->expected = PGR_SAFE;
    bool faults = o->fault.kind != PGR_FAULT_NONE;
    if (faults) {                /* concurrency's verdict (from 2 sessions on) or the fault's */
        res->fault = o->fault;
        if (o->sessions < 2) res->expected = PGR_SAFE;
        if (v->fault_expect[o->fault.kind] == PGR_RACE) res->expected = PGR_RACE;
    }
    static const char *const names[] = { "exhaustive", "random", "pct" };
    res->ex.strategy = names[o->strategy];
    res->ex.seed = o->seed;
    res->ex.depth = o->depth;
    int kase = o->force_case >= 0 ? o->force_case : 0;
    long long cap = o->max_schedules > 0 ? o->max_schedules : (o->strategy == PGR_EXHAUSTIVE ? 100000 : 1000);

    explorer *x = explorer_new(o->interrupted);
    if (!x) { snprintf(res->error, sizeof res->error, "out of memory"); return -1; }
    x->strategy = o->strategy;
    x->step_timeout_s = o->step_timeout_s;
    x->depth = o->depth > 0 ? o->depth : 2;
    if (x->depth > 8) x->depth = 8;
    x->rng ^= o->seed * 0xD1B54A32D192ED03ULL + 1;
    if (explorer_open(x, dsn, sc, v, o->sessions, o->iso, faults ? &o->fault : NULL, res) != 0) {
        explorer_close(x, res);
        explorer_free(x);
        return -1;
    }

    sched_run *runs = calloc(PGR_MAX_BATCH, sizeof *runs);
    sched_run *fails = calloc(PGR_MAX_INV, sizeof *fails);
    bool have_fail[PGR_MAX_INV] = { false };
    sched_run *minrun = calloc(1, sizeof *minrun);
    int rc = -1, saves = 0;
    long long trial_no = 0;
    int64_t t_start = pgr_now_ns(), next_progress = t_start + (int64_t)(o->progress_s * 1e9);
    char seen[8][PGR_MAX_GRANTS * 3];
    int nseen = 0;
    if (!runs || !minrun || !fails) { snprintf(res->error, sizeof res->error, "out of memory"); goto out; }
    if (o->save_dir && mkdir(o->save_dir, 0755) != 0 && errno != EEXIST) {
        snprintf(res->error, sizeof res->error, "cannot create %s: %s", o->save_dir, strerror(errno));
        goto out;
    }
    int dfs_prefix[PGR_MAX_GRANTS];
    bool finished = false, dfs_started = false;
    /* with a fault: every schedule fires it at one site; exhaustive explores every site's
     * interleavings in turn, random and pct pick a site per schedule */
    static pgr_fault_at sites[PGR_MAX_SESSIONS * PGR_MAX_STEPS * 2];
    int nsites = 0, fidx = 0;
    x->fat = (pgr_fault_at){ .session = -1 };
    if (faults) {
        nsites = fault_sites(x, kase, &trial_no, res, sites, (int)(sizeof sites / sizeof sites[0]));
        if (nsites < 0) goto out;
        if (nsites > 0) x->fat = sites[0];
    }
    while (!finished && res->ex.schedules < cap) {
        int nb = 64;
        if (cap - res->ex.schedules < nb) nb = (int)(cap - res->ex.schedules);
        pgr_batch b;
        if (pgr_pool_prepare(x->pool, trial_no, nb, kase, &b, res) != 0) goto out;
        trial_no += nb;
        int ran = 0;
        for (; ran < nb; ran++) {
            if (o->strategy == PGR_EXHAUSTIVE) {
                if (dfs_started) {
                    /* backtrack to the deepest decision with an untried, awake choice */
                    int d = x->nstack - 1;
                    for (; d >= 0; d--) {
                        node *nd = &x->stack[d];
                        uint64_t alt = nd->ready & ~nd->sleep & ~nd->done;
                        if (alt) {
                            nd->chosen = lowest(alt);
                            nd->done |= 1ULL << nd->chosen;
                            break;
                        }
                    }
                    if (d < 0 && fidx + 1 < nsites) {           /* the next fault site, afresh */
                        x->fat = sites[++fidx];
                        dfs_started = false;
                    } else if (d < 0) {
                        finished = true;
                        res->ex.complete = true;
                        break;
                    } else {
                        x->nstack = d + 1;
                        for (int i = 0; i <= d; i++) dfs_prefix[i] = x->stack[i].chosen;
                        x->forced = dfs_prefix;
                        x->nforced = d + 1;
                    }
                }
                if (!dfs_started) {
                    x->nstack = 0;
                    x->forced = NULL;
                    x->nforced = 0;
                    dfs_started = true;
                }
            } else if (nsites > 0) {
                x->fat = sites[rnd(x) % (uint64_t)nsites];
            }
            sched_run *sr = &runs[ran];
            if (run_schedule(x, &b.trials[ran], sr, res) != 0) goto out;
            x->forced = NULL;
            x->nforced = 0;
            if (o->strategy == PGR_EXHAUSTIVE && sr->pruned) res->ex.pruned++;
            if (sr->n > res->ex.max_steps) res->ex.max_steps = sr->n;
            if (sr->n > x->k_estimate) x->k_estimate = sr->n;
            pgr_account_trial(res, &b.trials[ran]);
            res->ex.schedules++;
            res->trials++;
            if (o->interrupted && *o->interrupted) { ran++; break; }
        }
        if (pgr_pool_check(x->pool, &b, ran, res) != 0) goto out;
        for (int i = 0; i < ran; i++) {
            pgr_trial *t = &b.trials[i];
            if (!t->violated) continue;
            if (!res->ex.first_violation) res->ex.first_violation = res->ex.schedules - ran + i + 1;
            int slot = inv_slot(t->first_invariant);
            if (slot >= 0 && slot < PGR_MAX_INV && !have_fail[slot]) { have_fail[slot] = true; fails[slot] = runs[i]; }
        }
        int64_t now = pgr_now_ns();
        if (o->progress_s > 0 && !o->quiet && now >= next_progress) {
            fprintf(stderr, "\r%s/%s %s: %lld schedules, %lld violating   ", sc->name, v->name, res->ex.strategy,
                    res->ex.schedules, res->tally.violated_trials);
            next_progress = now + (int64_t)(o->progress_s * 1e9);
        }
        if (o->interrupted && *o->interrupted) { snprintf(res->error, sizeof res->error, "interrupted"); goto out; }
    }
    /* Minimize one failing schedule per broken invariant, the scenario's first invariant
     * first (it is the race the seed is about), and save the distinct ones. */
    for (int slot = 0; slot < PGR_MAX_INV && saves < (o->max_saves > 0 ? o->max_saves : 5); slot++) {
        if (!have_fail[slot]) continue;
        {
            int inv = slot_inv(slot);
            sched_run failing = fails[slot];
            x->fat = failing.fat;               /* the fault fires where it did */
            /* fewer sessions first: drop one session's statements, re-run on a pool one
             * session smaller, keep it while the same invariant still breaks */
            explorer *mx = x;
            while (mx->n > 2 && !faults) {
                explorer *smaller = fewer_sessions(mx, dsn, sc, v, o->iso, &failing, kase, inv, &trial_no);
                if (!smaller) break;
                if (mx != x) { pgr_result sink; memset(&sink, 0, sizeof sink); explorer_close(mx, &sink); explorer_free(mx); }
                mx = smaller;
            }
            pgr_trial *mt = minimize(mx, &failing, kase, inv, &trial_no, res, minrun);
            if (res->error[0]) goto out_mx;
            if (!mt) {
                /* no shorter prefix broke the same invariant: keep the schedule as found,
                 * re-run on a fresh trial (the batch's trial slots were reused meanwhile) */
                if (run_forced(mx, failing.grants, failing.n, kase, trial_no++, res, &mt, minrun) != 0) goto out_mx;
                if (!mt->violated) goto next_mx;
            }
            char key[PGR_MAX_GRANTS * 3];
            size_t ko = 0;
            for (int g = 0; g < minrun->n; g++) ko += (size_t)snprintf(key + ko, sizeof key - ko, "%d ", minrun->grants[g]);
            bool dup = false;
            for (int k = 0; k < nseen; k++) dup |= strcmp(seen[k], key) == 0;
            if (dup) goto next_mx;
            if (nseen < 8) snprintf(seen[nseen++], sizeof seen[0], "%s", key);
            char table[8192];
            describe(mt, minrun, table, sizeof table);
            if (saves == 0) {
                mt->why[sizeof mt->why - 1] = '\0';
                char order[400], why[sizeof mt->why];
                explain_order(mt, minrun, order, sizeof order);
                if (order[0]) {
                    snprintf(why, sizeof why, "%s; then %s", order, mt->why);
                    snprintf(mt->why, sizeof mt->why, "%s", why);
                }
                pgr_result_lead_counterexample(res, mt);
                snprintf(res->ex.minimal, sizeof res->ex.minimal, "%s", table);
                res->ex.minimal_sessions = mt->nsessions;
                res->ex.minimal_steps = minrun->n;
                res->ex.minimal_switches = count_switches(minrun);
            }
            if (o->save_dir && res->ex.nsaved < 8) {
                char *path = res->ex.saved[res->ex.nsaved];
                snprintf(path, sizeof res->ex.saved[0], "%s/%s-%s-%s-%d.schedule", o->save_dir, sc->name, v->name,
                         pgr_isolation_name(o->iso), res->ex.nsaved + 1);
                if (write_schedule(path, sc, v, o->iso, mt, minrun, table) != 0) {
                    snprintf(res->error, sizeof res->error, "cannot write %s: %s", path, strerror(errno));
                    goto out_mx;
                }
                res->ex.nsaved++;
            }
            saves++;
        next_mx:
        out_mx:
            if (mx != x) { pgr_result sink; memset(&sink, 0, sizeof sink); explorer_close(mx, &sink); explorer_free(mx); }
            if (res->error[0]) goto out;
        }
    }
    rc = 0;
out:
    res->seconds = (double)(pgr_now_ns() - t_start) / 1e9;
    if (o->progress_s > 0 && !o->quiet && res->seconds > o->progress_s) fprintf(stderr, "\n");
    if (o->strategy == PGR_PCT) {
        double k = res->ex.max_steps > 0 ? res->ex.max_steps : 1, b = 1.0 / o->sessions;
        for (int i = 1; i < x->depth; i++) b /= k;
        res->ex.pct_bound = b;
        res->ex.depth = x->depth;
    }
    explorer_close(x, res);
    explorer_free(x);
    free(runs);
    free(fails);
    free(minrun);
    res->verdict = res->tally.violated_trials > 0 ? PGR_RACE : PGR_SAFE;
    return rc;
}

/* ---- replay ---- */

int pgr_replay(const char *dsn, char **files, int nfiles, int repeat, bool quiet, volatile int *interrupted)
{
    sched_file *sfs = calloc((size_t)nfiles, sizeof *sfs);
    if (!sfs) return 2;
    for (int i = 0; i < nfiles; i++) {
        char err[PGR_ERRLEN];
        if (read_schedule(files[i], &sfs[i], err, sizeof err) != 0) {
            fprintf(stderr, "pgrace: %s\n", err);
            free(sfs);
            return 2;
        }
        const pgr_scenario *sc = pgr_find_scenario(sfs[i].scenario);
        if (!sc) {
            fprintf(stderr, "pgrace: %s: unknown scenario '%s'\n", files[i], sfs[i].scenario);
            free(sfs);
            return 2;
        }
    }
    int status = 0;
    for (int i = 0; i < nfiles && status != 2; i++) {
        sched_file *sf = &sfs[i];
        const pgr_scenario *sc = pgr_find_scenario(sf->scenario);
        const pgr_variant *v = NULL;
        int kase = -1;
        for (int j = 0; j < sc->nvariants; j++) if (strcmp(sc->variants[j].name, sf->variant) == 0) v = &sc->variants[j];
        for (int j = 0; j < sc->ncases; j++) if (strcmp(sc->cases[j].name, sf->kase) == 0) kase = j;
        if (!v || kase < 0) {
            fprintf(stderr, "pgrace: %s: unknown %s '%s'\n", files[i], !v ? "variant" : "case", !v ? sf->variant : sf->kase);
            status = 2;
            break;
        }
        pgr_result res;
        pgr_result_init(&res, sc, v, sf->iso, sf->sessions, "replay");
        explorer *x = explorer_new(interrupted);
        if (!x || explorer_open(x, dsn, sc, v, sf->sessions, sf->iso, &sf->fat.fault, &res) != 0) {
            fprintf(stderr, "pgrace: %s\n", res.error[0] ? res.error : "out of memory");
            if (x) { explorer_close(x, &res); explorer_free(x); }
            status = 2;
            break;
        }
        x->fat = sf->fat;
        sched_run *sr = calloc(1, sizeof *sr);
        int same = 0, diverged = 0;
        char first_diff[600] = "";
        for (int rep = 0; rep < repeat && sr; rep++) {
            pgr_trial *t;
            if (run_forced(x, sf->grants, sf->ngrants, kase, rep, &res, &t, sr) != 0) { status = 2; break; }
            const char *got = t->violated ? pgr_invariant_name(sc, t->first_invariant) : "none";
            bool steps_same = sr->diverged_at < 0 && sr->n == sf->ngrants;
            if (steps_same && strcmp(got, sf->violation) == 0) { same++; continue; }
            diverged++;
            if (!first_diff[0]) {
                if (sr->diverged_at >= 0)
                    snprintf(first_diff, sizeof first_diff, "diverged at step %d: S%d was not ready to run",
                             sr->diverged_at + 1, sf->grants[sr->diverged_at] + 1);
                else if (sr->n != sf->ngrants)
                    snprintf(first_diff, sizeof first_diff, "diverged at step %d: the schedule has %d steps, the run %d",
                             (sr->n < sf->ngrants ? sr->n : sf->ngrants) + 1, sf->ngrants, sr->n);
                else
                    snprintf(first_diff, sizeof first_diff, "same steps, different outcome: recorded '%s', got '%s'",
                             sf->violation, got);
            }
        }
        if (status != 2) {
            if (diverged == 0) {
                printf("%s: reproduced (%s/%s %s, %d sessions, %d steps: %s)%s\n", files[i], sc->name, v->name,
                       pgr_isolation_name(sf->iso), sf->sessions, sf->ngrants, sf->violation,
                       repeat > 1 ? "" : "");
                if (repeat > 1) printf("  %d of %d replays identical\n", same, repeat);
            } else {
                printf("%s: NOT reproduced in %d of %d replays: %s\n", files[i], diverged, repeat, first_diff);
                status = 1;
            }
            if (!quiet && sr) {
                char table[8192];
                pgr_trial *t;
                if (run_forced(x, sf->grants, sf->ngrants, kase, repeat, &res, &t, sr) == 0) {
                    describe(t, sr, table, sizeof table);
                    fputs(table, stdout);
                }
            }
        } else {
            fprintf(stderr, "pgrace: %s: %s\n", files[i], res.error);
        }
        free(sr);
        explorer_close(x, &res);
        explorer_free(x);
        pgr_result_free(&res);
    }
    free(sfs);
    return status;
}

/* ---- fuzzing ---- */

#define FUZZ_POOLS 48          /* every recommended target x level x 2-3 sessions: 42 */

struct pgr_fuzzer {
    char dsn[4096];
    struct {
        explorer *x;
        const pgr_variant *v;
        pgr_isolation iso;
        int n;
        long long next_trial;
        long long used;                 /* last use, for eviction */
    } pool[FUZZ_POOLS];
    long long clock;
    sched_run run;
};

pgr_fuzzer *pgr_fuzzer_new(const char *dsn)
{
    pgr_fuzzer *fz = calloc(1, sizeof *fz);
    if (fz) snprintf(fz->dsn, sizeof fz->dsn, "%s", dsn);
    return fz;
}

void pgr_fuzzer_free(pgr_fuzzer *fz)
{
    if (!fz) return;
    for (int i = 0; i < FUZZ_POOLS; i++)
        if (fz->pool[i].x) {
            pgr_result sink;
            memset(&sink, 0, sizeof sink);
            explorer_close(fz->pool[i].x, &sink);
            explorer_free(fz->pool[i].x);
        }
    free(fz);
}

static uint32_t mix(uint32_t h, uint32_t v)
{
    h ^= v + 0x9E3779B9u + (h << 6) + (h >> 2);
    return h;
}

int pgr_fuzz_one(pgr_fuzzer *fz, const pgr_scenario *sc, const pgr_variant *v, pgr_isolation iso,
                 int sessions, int kase, const pgr_fault_at *fault, const uint8_t *choices, size_t nchoices,
                 const char *save_path, pgr_fuzz_outcome *out, char *err, size_t errlen)
{
    pgr_fault_kind fk = fault ? fault->fault.kind : PGR_FAULT_NONE;
    memset(out, 0, sizeof *out);
    fz->clock++;
    int slot = -1, victim = 0;
    for (int i = 0; i < FUZZ_POOLS; i++) {
        if (fz->pool[i].x && fz->pool[i].v == v && fz->pool[i].iso == iso && fz->pool[i].n == sessions &&
            fz->pool[i].x->fault.kind == fk && (!fault || strcmp(fz->pool[i].x->fault.step, fault->fault.step) == 0))
            slot = i;
        if (fz->pool[i].used < fz->pool[victim].used) victim = i;
    }
    pgr_result res;
    pgr_result_init(&res, sc, v, iso, sessions, "fuzz");
    if (slot < 0) {
        slot = victim;
        if (fz->pool[slot].x) {
            pgr_result sink;
            memset(&sink, 0, sizeof sink);
            explorer_close(fz->pool[slot].x, &sink);
            explorer_free(fz->pool[slot].x);
            fz->pool[slot].x = NULL;
        }
        explorer *x = explorer_new(NULL);
        if (!x || explorer_open_opts(x, fz->dsn, sc, v, sessions, iso, true, fault ? &fault->fault : NULL, &res) != 0) {
            snprintf(err, errlen, "%s", res.error[0] ? res.error : "out of memory");
            if (x) { explorer_close(x, &res); explorer_free(x); }
            return -1;
        }
        fz->pool[slot].x = x;
        fz->pool[slot].v = v;
        fz->pool[slot].iso = iso;
        fz->pool[slot].n = sessions;
        fz->pool[slot].next_trial = 0;
    }
    fz->pool[slot].used = fz->clock;
    explorer *x = fz->pool[slot].x;

    pgr_batch b;
    if (pgr_pool_prepare(x->pool, fz->pool[slot].next_trial++, 1, kase, &b, &res) != 0) {
        snprintf(err, errlen, "%s", res.error);
        return -1;
    }
    x->bytes = choices;
    x->nbytes = nchoices;
    x->fat = fault && fk != PGR_FAULT_NONE && fault->session < sessions ? *fault : (pgr_fault_at){ .session = -1 };
    sched_run *sr = &fz->run;
    int rc = run_schedule(x, &b.trials[0], sr, &res);
    x->bytes = NULL;
    x->nbytes = 0;
    if (rc != 0 || pgr_pool_check(x->pool, &b, 1, &res) != 0) {
        snprintf(err, errlen, "%s", res.error);
        pgr_result_free(&res);
        return -1;
    }
    pgr_trial *t = &b.trials[0];
    /* the interleaving signal: each step's outcome, and each switch between sessions */
    for (int g = 0; g < sr->n && out->nsignal < PGR_MAX_GRANTS; g++) {
        int s, sp;
        const pgr_step *st = step_of(t, sr, g, &s);
        uint32_t h = mix(mix(0x1234567u, (uint32_t)(v - sc->variants) * 31u + (uint32_t)iso), (uint32_t)s);
        if (st) h = mix(mix(mix(h, (uint32_t)(uintptr_t)st->label), (uint32_t)st->rows), (uint32_t)st->sqlstate[1]);
        if (g > 0 && sr->grants[g - 1] != s) {
            const pgr_step *prev = step_of(t, sr, g - 1, &sp);
            h = mix(mix(h, 0xABCDu + (uint32_t)sp), prev ? (uint32_t)(uintptr_t)prev->label : 0u);
        }
        if (sr->waited[g]) h = mix(h, 0x5151u);
        out->signal[out->nsignal++] = h;
    }
    out->violated = t->violated;
    if (t->violated) {
        out->invariant = t->first_invariant;
        char order[400];
        explain_order(t, sr, order, sizeof order);
        snprintf(out->why, sizeof out->why, "%s%s%s", order, order[0] ? "; then " : "", t->why);
        describe(t, sr, out->table, sizeof out->table);
        if (save_path && write_schedule(save_path, sc, v, iso, t, sr, out->table) != 0) {
            snprintf(err, errlen, "cannot write %s: %s", save_path, strerror(errno));
            pgr_result_free(&res);
            return -1;
        }
    }
    pgr_result_free(&res);
    return 0;
}
