/*
 * scheduler.c — the scheduler: the gate ops, blocked detection, quiescence, choosing the
 * next session (exhaustive with sleep sets, random, PCT), running one schedule, and the
 * explorer's life cycle (the pool of gated sessions and the monitor connection).
 *
 * The scheduler sits at the seam's gate: before each statement a session parks (READY)
 * and waits for a grant; the coordinator grants one statement at a time, then waits
 * until the system is quiescent again: every session parked, finished, or BLOCKED on a
 * lock held by another session. Blocked is read from a monitor connection with
 * pg_isolation_test_session_is_blocked() (as isolationtester does), but only when a
 * granted statement has not come back within twice its usual time (a moving average of
 * the statements that came back by themselves; at least 120 us, at most 1 ms), and re-asked
 * after that usual time rather than on a 10 ms polling floor. A schedule is the sequence of sessions granted; re-running
 * it on a fresh trial re-creates the same interleaving (replay), which is what makes
 * exhaustive search, saved counterexamples and minimization possible.
 *
 * The decision itself (decide_locked) is made under the mutex by whoever sees the system
 * quiescent first. A session thread that parks, or finishes, when every other session is
 * parked or finished makes it and, when it chose itself, goes straight on: no coordinator
 * wake-up and no hand-back on the common path (two thread switches per statement fewer).
 * The coordinator decides only when someone is blocked (which only it can tell, by asking
 * the monitor), and for programs' sessions (wire), which are busy between statements. It
 * keeps watching meanwhile: a granted statement that has not come back while no new grant
 * was made within twice the usual round trip is asked about, as before. Who decides does
 * not change what is decided: the same state gives the same choice.
 *
 * Strategies: exhaustive (stateless depth-first search), random (uniform among ready
 * sessions), and PCT (random priorities with d-1 priority change points; finds a depth-d
 * bug with probability >= 1/(n*k^(d-1))).
 *
 * The exhaustive search reduces by default with dynamic partial-order reduction
 * (Flanagan and Godefroid, POPL 2005) and sleep sets, on the dependency relation of
 * footprint.c. While a schedule runs, the trace keeps each grant's footprint and a vector
 * clock of happens-before; before each decision, every ready session's next step is
 * checked against the trace for the last dependent step that does not happen before it (a
 * race), and that step's decision gets the session in its backtrack set (or every session
 * ready there, when it was not). Between schedules the search backtracks only to sessions
 * in a backtrack set, not asleep, not done. It explores at least one schedule of every
 * Mazurkiewicz trace (every class of schedules equal up to swapping adjacent independent
 * steps), so it finds every violation a full search finds, given a sound relation.
 * `--reduction sleep` keeps the old search (sleep sets alone, every step a conflict but
 * BEGIN and plain SELECTs); `none` runs every interleaving.
 */
#include "scheduler.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int decide_locked(explorer *x, int self);

/* ---- gate ops: run in the session threads ---- */

static void gate_before(void *ctx, pgr_session *s, const pgr_step *step)
{
    explorer *x = ctx;
    pthread_mutex_lock(&x->mu);
    if (x->wire && (x->st[s->index] == SS_DONE || x->abort)) {
        /* a statement of a program whose request is over (killed at the step timeout, its
         * connection not yet seen closed): not part of any schedule, never parked */
        pthread_mutex_unlock(&x->mu);
        return;
    }
    x->pending_sql[s->index] = step->sql;
    x->st[s->index] = SS_READY;
    if (x->delegate) {
        sched_run *out = x->run_out;
        int g = x->current_grant[s->index];
        if (g >= 0 && !out->waited[g]) {        /* its statement came back by itself: time it */
            int64_t took = pgr_now_ns() - x->grant_ns[s->index];
            x->rtt_ns = x->rtt_ns ? (x->rtt_ns * 7 + took) / 8 : took;
        }
    }
    if (!x->delegate || decide_locked(x, s->index) < 0) pthread_cond_signal(&x->cv);
    while (!x->granted[s->index] && !x->abort && x->st[s->index] != SS_DONE)
        pthread_cond_wait(&x->cv_s[s->index], &x->mu);
    x->granted[s->index] = false;
    pthread_mutex_unlock(&x->mu);
}

static void gate_after(void *ctx, pgr_session *s, const pgr_step *step)
{
    (void)step;
    explorer *x = ctx;
    if (!x->wire) return;
    pthread_mutex_lock(&x->mu);
    x->inflight[s->index] = false;       /* the program has its answer: busy until it parks */
    pthread_cond_signal(&x->cv);
    pthread_mutex_unlock(&x->mu);
}

static void gate_done(void *ctx, pgr_session *s)
{
    explorer *x = ctx;
    pthread_mutex_lock(&x->mu);
    x->st[s->index] = SS_DONE;
    if (!x->delegate || decide_locked(x, s->index) < 0) pthread_cond_signal(&x->cv);
    pthread_cond_signal(&x->cv_s[s->index]);   /* a program's statement parked after its end */
    pthread_mutex_unlock(&x->mu);
}

/* ---- helpers ---- */

uint64_t pgr_sched_rnd(explorer *x)
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
 * Called without the mutex. -1 with err on a monitor failure. */
static int query_blocked(explorer *x, const int *which, int n, bool *blocked, char *err, size_t errlen)
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
    pthread_mutex_lock(&x->monitor_mu);     /* a deciding session may ask the catalog */
    pgr_call_begin(x->monitor, 0);          /* (the watchdog keeps one call per connection) */
    PGresult *r = PQexecPrepared(x->monitor, "blocked", 2, p, NULL, NULL, 0);
    int crc = pgr_call_end(x->monitor, err, errlen);
    pthread_mutex_unlock(&x->monitor_mu);
    if (crc != 0) { PQclear(r); return -1; }
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != n) {
        snprintf(err, errlen, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(x->monitor));
        err[strcspn(err, "\n")] = '\0';
        PQclear(r);
        return -1;
    }
    for (int i = 0; i < n; i++) blocked[i] = PQgetvalue(r, i, 0)[0] == 't';
    PQclear(r);
    return 0;
}

/* The first wait for a granted statement: twice its usual round trip, 120 us to 1 ms. */
static long first_wait_ns(int64_t rtt)
{
    return rtt * 2 < 120000 ? 120000 : rtt * 2 > 1000000 ? 1000000 : (long)(rtt * 2);
}

/* Wait until no session is RUNNING: each is READY, DONE, or BLOCKED by another session.
 * Returns 0, or -1 with err (stuck past the limit, interrupted, monitor lost). */
/* A program's session between two statements (its answer in hand, its next statement not
 * yet sent) or before its first: it is running its own code, and only it can move on. */
static bool busy(const explorer *x, int i)
{
    return x->wire && x->st[i] == SS_RUNNING && !x->inflight[i];
}

static int quiesce(explorer *x, sched_run *out, char *err, size_t errlen)
{
    int64_t deadline = pgr_now_ns() + 10LL * 1000000000;
    int64_t busy_limit = (int64_t)((x->step_timeout_s > 0 ? x->step_timeout_s : 30) * 1e9);
    int64_t busy_since = 0;
    /* twice a statement's usual round trip; then ask the monitor (a slow machine, or a
     * sanitizer build, would otherwise ask about most statements) */
    pthread_mutex_lock(&x->mu);         /* delegating sessions time their statements too */
    int64_t rtt = x->rtt_ns, t0 = pgr_now_ns();
    pthread_mutex_unlock(&x->mu);
    long wait_ns = first_wait_ns(rtt);
    bool timing = false, asked = false;
    int seen_n = -1;                     /* delegating: the grants made when last looked */
    for (;;) {
        int inflight[PGR_MAX_SESSIONS], nin = 0, nrun = 0, nbusy = 0, first_busy = -1;
        pthread_mutex_lock(&x->mu);
        if (seen_n < 0 && out) seen_n = out->n;
        for (int i = 0; i < x->n; i++) {
            if (busy(x, i)) {
                if (first_busy < 0) first_busy = i;
                nbusy++;
                continue;
            }
            if (x->st[i] == SS_RUNNING) nrun++;
            if (x->st[i] == SS_RUNNING || x->st[i] == SS_BLOCKED) inflight[nin++] = i;
        }
        if (nbusy > 0) {
            /* a program busy between statements: wait for it to send or finish (the settle),
             * within the step timeout; its statements in flight meanwhile are asked about below */
            int64_t now = pgr_now_ns();
            if (!busy_since) busy_since = now;
            deadline = now + 10LL * 1000000000;          /* lock waits are counted without it */
            if (now - busy_since > busy_limit) {
                pthread_mutex_unlock(&x->mu);
                snprintf(err, errlen, "session S%d: its program neither sent a statement nor finished within %.0f s "
                         "(--step-timeout)", first_busy + 1, (double)busy_limit / 1e9);
                return -1;
            }
            if (nin == 0) {
                struct timespec ts;
                add_ns(&ts, 2000000);
                pthread_cond_timedwait(&x->cv, &x->mu, &ts);
                pthread_mutex_unlock(&x->mu);
                if (x->interrupted && *x->interrupted) { snprintf(err, errlen, "interrupted"); return -1; }
                continue;
            }
        } else {
            busy_since = 0;
        }
        if (nin == 0) {
            if (timing && !asked && !x->delegate) {   /* it came back by itself: its time counts */
                int64_t took = pgr_now_ns() - t0;
                x->rtt_ns = x->rtt_ns ? (x->rtt_ns * 7 + took) / 8 : took;
            }
            pthread_mutex_unlock(&x->mu);
            return 0;
        }
        if (nrun > 0) {
            timing |= !asked;
            /* give a granted statement its chance to come back before asking the server */
            struct timespec ts;
            add_ns(&ts, wait_ns);
            int rc = pthread_cond_timedwait(&x->cv, &x->mu, &ts);
            int n_now = out ? out->n : 0;
            int64_t r = x->rtt_ns;
            pthread_mutex_unlock(&x->mu);
            if (rc == 0) continue;              /* something moved: look again */
            if (x->delegate && n_now != seen_n) {
                /* the sessions decided meanwhile: statements are coming back; wait again */
                seen_n = n_now;
                deadline = pgr_now_ns() + 10LL * 1000000000;
                wait_ns = first_wait_ns(r);
                continue;
            }
            wait_ns = rtt < 50000 ? 50000 : rtt > 1000000 ? 1000000 : (long)rtt;
        } else {
            pthread_mutex_unlock(&x->mu);
        }
        if (x->interrupted && *x->interrupted) { snprintf(err, errlen, "interrupted"); return -1; }
        if (pgr_now_ns() > deadline) {
            snprintf(err, errlen, "every live session has waited on a lock for 10 s: a cycle the server does not resolve");
            return -1;
        }
        bool blocked[PGR_MAX_SESSIONS];
        char why[PGR_ERRLEN];
        asked = true;
        if (query_blocked(x, inflight, nin, blocked, why, sizeof why) != 0) {
            snprintf(err, errlen, "monitor connection: %s", why);
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
            bool any_ready = false, any_busy = false;
            for (int i = 0; i < x->n; i++) {
                any_ready |= x->st[i] == SS_READY;
                any_busy |= busy(x, i);
            }
            if (any_ready && !any_busy) { pthread_mutex_unlock(&x->mu); return 0; }
            if (any_busy) {          /* a program still to park: wait for it */
                struct timespec ts;
                add_ns(&ts, 1000000);
                pthread_cond_timedwait(&x->cv, &x->mu, &ts);
                pthread_mutex_unlock(&x->mu);
                continue;
            }
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
    for (int i = 0; i < x->n; i++) pgr_cancel(pgr_pool_session(x->pool, i)->conn);
}

/* ---- choosing the next session ---- */

/* DPOR with source sets (Abdulla, Aronis, Jonsson and Sagonas's races, on backtrack sets
 * and sleep sets). Before decision g, for each ready session u with next step p: every step
 * i of another session that races with p (dependent, not happening before u's last step,
 * and no step after i happens after i and before p) could be reversed. The schedules that
 * reverse it start at i with one of the initials of v: the steps after i that do not happen
 * after i, then p (the sessions whose first step in v has no step of v happening before it).
 * When none of those is in i's backtrack set, one is added (u when it can, else the lowest);
 * when none of them could run at i (a session blocked or not yet parked there), every
 * session ready at i is. Taking only the last race of each step (Flanagan and Godefroid's
 * rule) missed orders at three sessions: a session's race with a later step hid its race
 * with an earlier one, whose reversal needed a third session to start first. */
static void dpor_races(explorer *x, int g, uint64_t ready, const pgr_fp *pend)
{
    dpor_trace *tr = x->trace;
    for (int u = 0; u < x->n; u++) {
        if (!(ready >> u & 1)) continue;
        unsigned short vp[PGR_MAX_EXPLORE_SESSIONS];        /* what happens before p */
        memcpy(vp, tr->last_vc[u], sizeof vp);
        bool dep[PGR_MAX_GRANTS];
        for (int j = 0; j < g; j++) {
            dep[j] = tr->sess[j] != u && pgr_fp_dependent(&tr->fp[j], &pend[u]);
            if (dep[j])
                for (int k = 0; k < x->n; k++)
                    if (tr->vc[j][k] > vp[k]) vp[k] = tr->vc[j][k];
        }
        for (int i = g - 1; i >= 0; i--) {
            int s = tr->sess[i];
            if (!dep[i] || tr->last_vc[u][s] > i || i >= x->nstack) continue;
            bool immediate = true;
            for (int e = i + 1; e < g && immediate; e++)
                if (tr->vc[e][s] > i && vp[tr->sess[e]] > e) immediate = false;
            if (!immediate) continue;
            /* the initials of v */
            uint64_t initials = 0, seen = 0;
            for (int e = i + 1; e < g; e++) {
                int q = tr->sess[e];
                if (tr->vc[e][s] > i || (seen >> q & 1)) continue;          /* after i, or not q's first */
                seen |= 1ULL << q;
                bool first = true;
                for (int f = i + 1; f < e && first; f++)
                    if (tr->sess[f] != q && tr->vc[f][s] <= i && tr->vc[e][tr->sess[f]] > f) first = false;
                if (first) initials |= 1ULL << q;
            }
            if (!(seen >> u & 1)) {
                bool first = true;
                for (int f = i + 1; f < g && first; f++)
                    if (tr->vc[f][s] <= i && vp[tr->sess[f]] > f) first = false;
                if (first) initials |= 1ULL << u;
            }
            node *ni = &x->stack[i];
            uint64_t can = initials & ni->ready;
            if (!can) ni->backtrack |= ni->ready;
            else if (!(ni->backtrack & can)) ni->backtrack |= 1ULL << ((can >> u & 1) ? u : pgr_sched_lowest(can));
        }
    }
}

/* Grant g went to session c, whose step has footprint fp: extend the trace's clocks. */
static void dpor_record(explorer *x, int g, int c, const pgr_fp *fp)
{
    dpor_trace *tr = x->trace;
    unsigned short vc[PGR_MAX_EXPLORE_SESSIONS];
    memcpy(vc, tr->last_vc[c], sizeof vc);
    for (int i = 0; i < g; i++) {
        if (tr->sess[i] == c || !pgr_fp_dependent(&tr->fp[i], fp)) continue;
        for (int k = 0; k < x->n; k++)
            if (tr->vc[i][k] > vc[k]) vc[k] = tr->vc[i][k];
    }
    vc[c] = (unsigned short)(g + 1);
    tr->sess[g] = c;
    tr->fp[g] = *fp;
    memcpy(tr->vc[g], vc, sizeof vc);
    memcpy(tr->last_vc[c], vc, sizeof vc);
    tr->n = g + 1;
}

uint64_t pgr_sched_trace_hash(const explorer *x)
{
    const dpor_trace *tr = x->trace;
    bool picked[PGR_MAX_GRANTS] = { false };
    uint64_t h = 1469598103934665603ULL;
    for (int step = 0; step < tr->n; step++) {
        /* the lowest session whose earliest unpicked step has every dependent step before it picked */
        int pick = -1;
        for (int s = 0; s < x->n && pick < 0; s++) {
            int e = -1;
            for (int i = 0; i < tr->n; i++)
                if (!picked[i] && tr->sess[i] == s) { e = i; break; }
            if (e < 0) continue;
            bool free_ = true;
            for (int j = 0; j < e && free_; j++)
                if (!picked[j] && pgr_fp_dependent(&tr->fp[j], &tr->fp[e])) free_ = false;
            if (free_) pick = e;
        }
        if (pick < 0) break;
        picked[pick] = true;
        h = (h ^ (uint64_t)(tr->sess[pick] + 1)) * 1099511628211ULL;
    }
    return h;
}

/* PCT: the ready session of highest priority; at a change point, it drops below every
 * initial priority first. */
static int pct_pick(explorer *x, uint64_t ready, int g)
{
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

static int choose(explorer *x, sched_run *out, uint64_t ready, const unsigned char *kind, const pgr_fp *pend)
{
    int g = out->n;
    if (x->bytes) {
        int cnt = __builtin_popcountll(ready);
        int pick = 0;
        if ((size_t)g < x->nbytes) pick = x->bytes[g] % cnt;
        else if (x->tail_seed && x->tail_pct) return pct_pick(x, ready, g);
        else if (x->tail_seed) pick = (int)(pgr_splitmix64(x->tail_seed + (uint64_t)g) % (uint64_t)cnt);
        for (int i = 0; i < x->n; i++)
            if ((ready >> i & 1) && pick-- == 0) return i;
        return pgr_sched_lowest(ready);
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
            return (last >= 0 && (ready >> last & 1)) ? last : pgr_sched_lowest(ready);
        }
    }
    switch (x->strategy) {
    case PGR_EXHAUSTIVE: {
        if (out->pruned) return pgr_sched_lowest(ready);
        node *nd = &x->stack[g];
        nd->ready = ready;
        memcpy(nd->kind, kind, sizeof nd->kind);
        if (pend) memcpy(nd->fp, pend, sizeof nd->fp);
        nd->sleep = 0;
        if (g > 0 && x->reduction != PGR_POR_NONE) {
            node *pa = &x->stack[g - 1];
            uint64_t cand = (pa->sleep | pa->done) & ~(1ULL << pa->chosen);
            for (int u = 0; u < x->n; u++) {
                if (!(cand >> u & 1)) continue;
                bool indep = x->reduction == PGR_POR_DPOR ? !pgr_fp_dependent(&pa->fp[u], &pa->fp[pa->chosen])
                                                          : independent(pa->kind[u], pa->kind[pa->chosen]);
                if (indep) nd->sleep |= 1ULL << u;
            }
        }
        uint64_t awake = ready & ~nd->sleep;
        if (!awake) {                   /* every order from here was covered elsewhere */
            out->pruned = true;
            x->nstack = g;
            return pgr_sched_lowest(ready);
        }
        nd->chosen = pgr_sched_lowest(awake);
        nd->done = 1ULL << nd->chosen;
        nd->backtrack = nd->done;
        x->nstack = g + 1;
        return nd->chosen;
    }
    case PGR_RANDOM: {
        int cnt = __builtin_popcountll(ready);
        int pick = (int)(pgr_sched_rnd(x) % (uint64_t)cnt);
        for (int i = 0; i < x->n; i++)
            if ((ready >> i & 1) && pick-- == 0) return i;
        return pgr_sched_lowest(ready);
    }
    case PGR_PCT:
        return pct_pick(x, ready, g);
    }
    return pgr_sched_lowest(ready);
}

static void pct_reset(explorer *x)
{
    for (int i = 0; i < x->n; i++) x->prio[i] = x->depth + i;
    for (int i = x->n - 1; i > 0; i--) {           /* random permutation of priorities */
        int j = (int)(pgr_sched_rnd(x) % (uint64_t)(i + 1));
        int t = x->prio[i]; x->prio[i] = x->prio[j]; x->prio[j] = t;
    }
    for (int j = 0; j < x->depth - 1; j++) x->change_at[j] = 1 + (int)(pgr_sched_rnd(x) % (uint64_t)x->k_estimate);
}

/* Under mu: grant session c the next step of schedule out (ready: who could have run). */
static void grant_locked(explorer *x, sched_run *out, int c, uint64_t ready)
{
    out->grants[out->n] = c;
    out->ready[out->n] = ready;
    x->current_grant[c] = out->n;
    x->inflight[c] = true;
    x->st[c] = SS_RUNNING;
    x->granted[c] = true;
    x->grant_ns[c] = pgr_now_ns();
    out->n++;
}

/* Under mu, when nobody runs (and, for a session thread, self >= 0, nobody waits on a
 * lock either: only the coordinator knows who is blocked): choose the next session and
 * grant it, waking it unless it is self. The coordinator decides after quiescing; with
 * delegation on, a session thread that parks or finishes decides too. The session granted;
 * -1 someone runs or waits, or nobody is ready; -2 every session is done; -3 the schedule
 * is full. */
static int decide_locked(explorer *x, int self)
{
    sched_run *out = x->run_out;
    uint64_t ready = 0;
    bool all_done = true;
    unsigned char kind[PGR_MAX_SESSIONS] = { 0 };
    for (int i = 0; i < x->n; i++) {
        if (x->st[i] == SS_RUNNING || (self >= 0 && x->st[i] == SS_BLOCKED)) return -1;
        if (x->st[i] == SS_READY) { ready |= 1ULL << i; kind[i] = (unsigned char)pgr_sql_kind(x->pending_sql[i]); }
        if (x->st[i] != SS_DONE) all_done = false;
    }
    if (all_done) return -2;
    if (!ready) return -1;                  /* only blocked sessions: quiesce waits */
    if (out->n == PGR_MAX_GRANTS) return -3;
    pgr_fp pend[PGR_MAX_EXPLORE_SESSIONS];
    if (x->track) {                         /* parked sessions: their statements stay put */
        pthread_mutex_lock(&x->monitor_mu);
        for (int i = 0; i < x->n; i++)
            if (ready >> i & 1) pend[i] = pgr_fp_pending(x->ft, i, x->pending_sql[i]);
        pthread_mutex_unlock(&x->monitor_mu);
        if (x->reduction == PGR_POR_DPOR && !out->pruned && out->diverged_at < 0) dpor_races(x, out->n, ready, pend);
    }
    int c = choose(x, out, ready, kind, x->track ? pend : NULL);
    if (x->track) {
        pthread_mutex_lock(&x->monitor_mu);
        pgr_fp_granted(x->ft, c, x->pending_sql[c]);
        pthread_mutex_unlock(&x->monitor_mu);
        dpor_record(x, out->n, c, &pend[c]);
    }
    grant_locked(x, out, c, ready);
    if (c != self) pthread_cond_signal(&x->cv_s[c]);
    return c;
}

/* Run trial t under the scheduler. 0, or -1 with err (harness error). */
int pgr_sched_run(explorer *x, pgr_trial *t, sched_run *out, pgr_result *res)
{
    memset(out, 0, sizeof *out);
    out->diverged_at = -1;
    if (x->strategy == PGR_PCT || (x->bytes && x->tail_pct)) pct_reset(x);
    out->fat = x->fat;
    if (x->fat.fault.kind != PGR_FAULT_NONE && x->fat.session < t->nsessions) {
        t->fault_site[x->fat.session] = (short)x->fat.site;
        t->fault_applies[x->fat.session] = x->fat.applies;
    }
    bool track = x->ft && x->trace && x->strategy == PGR_EXHAUSTIVE && !x->bytes && x->n <= PGR_MAX_EXPLORE_SESSIONS;
    if (track) {
        pgr_fp_reset(x->ft);
        memset(x->trace->last_vc, 0, sizeof x->trace->last_vc);
        x->trace->n = 0;
    }
    pthread_mutex_lock(&x->mu);
    x->abort = false;
    for (int i = 0; i < x->n; i++) {
        x->st[i] = SS_RUNNING;
        x->inflight[i] = false;
        x->granted[i] = false;
        x->current_grant[i] = -1;
    }
    x->run_out = out;
    x->track = track;
    /* a program's session is busy between its statements, which only the coordinator sees */
    x->delegate = !x->wire;
    pthread_mutex_unlock(&x->mu);
    pgr_pool_start(x->pool, t);
    char err[PGR_ERRLEN] = "";
    for (;;) {
        if (quiesce(x, out, err, sizeof err) != 0) break;
        pthread_mutex_lock(&x->mu);
        int c = decide_locked(x, -1);
        pthread_mutex_unlock(&x->mu);
        if (c == -2) break;
        if (c == -3) { snprintf(err, sizeof err, "schedule longer than %d statements", PGR_MAX_GRANTS); break; }
    }
    pthread_mutex_lock(&x->mu);
    x->delegate = false;
    x->run_out = NULL;
    pthread_mutex_unlock(&x->mu);
    if (err[0]) abort_trial(x);
    int rc = pgr_pool_finish(x->pool, res);
    for (int g = 0; g < out->n; g++) {          /* sessions are idle now: mark lock waits */
        if (!out->waited[g]) continue;
        int s = out->grants[g], k = 0;
        for (int i = 0; i < g; i++) k += out->grants[i] == s;
        if (k < PGR_MAX_STEPS) PGR_TRACE_AT(t->trace, s, k)->waited = true;
    }
    if (err[0] && !res->error[0]) snprintf(res->error, sizeof res->error, "%s", err);
    return (err[0] || rc != 0) ? -1 : 0;
}

/* ---- the explorer's life cycle ---- */

explorer *pgr_explorer_new(volatile int *interrupted)
{
    explorer *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
    pthread_mutex_init(&x->monitor_mu, NULL);
    for (int i = 0; i < PGR_MAX_SESSIONS; i++) pthread_cond_init(&x->cv_s[i], NULL);
    x->ops = (pgr_gate_ops){ .before = gate_before, .after = gate_after, .done = gate_done, .ctx = x };
    x->interrupted = interrupted;
    x->rng = 0x9E3779B97F4A7C15ULL;
    x->depth = 2;
    x->k_estimate = 8;
    x->stack = calloc(PGR_MAX_GRANTS, sizeof *x->stack);
    return x;
}

void pgr_explorer_free(explorer *x)
{
    if (!x) return;
    pgr_disconnect(x->monitor);
    pgr_fp_free(x->ft);
    free(x->trace);
    free(x->stack);
    free(x);
}

/* Open the pool (sessions gated by x) and the monitor connection. */
int pgr_explorer_open(explorer *x, const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                      int sessions, pgr_isolation iso, const pgr_fault *fault, pgr_result *res)
{
    x->n = sessions;
    if (fault) x->fault = *fault;
    pgr_pool_opts po = { .sessions = sessions, .iso = iso, .realtime = false, .gate = &x->ops,
                         .fault = &x->fault, .step_timeout_s = x->step_timeout_s,
                         .interrupted = x->interrupted };
    x->wire = pgr_variant_wire(v);
    x->pool = pgr_pool_open(dsn, sc, v, &po, res);
    if (!x->pool) return -1;
    x->monitor = pgr_connect(dsn, res->error, sizeof res->error);
    if (!x->monitor) return -1;
    pgr_call_begin(x->monitor, 0);
    PGresult *r = PQprepare(x->monitor, "blocked",
        "SELECT pg_isolation_test_session_is_blocked(p, $2::int[]) "
        "FROM unnest($1::int[]) WITH ORDINALITY AS u(p, o) ORDER BY o", 2, NULL);
    char why[PGR_ERRLEN] = "";
    bool ok = pgr_call_end(x->monitor, why, sizeof why) == 0 && PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok) snprintf(res->error, sizeof res->error, "monitor: %s", why[0] ? why : PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

void pgr_explorer_close(explorer *x, pgr_result *res)
{
    pthread_mutex_lock(&x->mu);          /* nothing stays parked: the proxy joins its threads */
    x->abort = true;
    for (int i = 0; i < PGR_MAX_SESSIONS; i++) pthread_cond_signal(&x->cv_s[i]);
    pthread_mutex_unlock(&x->mu);
    pgr_fp_free(x->ft);
    x->ft = NULL;
    pgr_disconnect(x->monitor);
    x->monitor = NULL;
    if (x->pool) { pgr_pool_close(x->pool, res); x->pool = NULL; }
}

/* Run one forced schedule on a fresh trial of the pool; the trial is prepared and checked.
 * t_out receives the checked trial (trace pointer valid until the next run). */
int pgr_sched_run_forced(explorer *x, const int *grants, int n, int kase, long long trial_no,
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
    int rc = pgr_sched_run(x, &b.trials[0], sr, res);
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
