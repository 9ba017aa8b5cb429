/*
 * stress.c — the synchronized stress runner.
 *
 * Each session is a thread with its own connection. Trials come in batches: the
 * coordinator (the calling thread) inserts the batch's rows with one statement per
 * scenario table, then for each trial opens the release gate (release.c) so every
 * session sends its first statement together, and waits until all have answered. After
 * the batch it checks every invariant of every trial with a few batched queries. No
 * TRUNCATE, no round trip per trial outside the sessions' own statements.
 */
#include "release.h"
#include "runner.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct stress_run {
    const pgr_scenario *sc;
    const pgr_variant *v;
    pgr_release gate;
    pgr_trial *volatile current; /* the trial being run; written before the gate opens */
    volatile int stop;
    bool realtime;               /* try SCHED_FIFO for the sessions */
    _Atomic int realtime_failed;
    pgr_session sess[PGR_MAX_SESSIONS];
    int nsessions;
} stress_run;

typedef struct session_arg {
    stress_run *run;
    int index;
} session_arg;

/* Session thread: wait for the gate, run one request through the handler, report. */
static void *session_main(void *p)
{
    session_arg *a = p;
    stress_run *run = a->run;
    pgr_session *s = &run->sess[a->index];
    uint32_t seen = 0;
    if (run->realtime) {
        /* Real-time sessions are not preempted by the backends they wake, so every
         * session gets to send before any backend runs. Needs CAP_SYS_NICE; else normal. */
        struct sched_param sp = { .sched_priority = 1 };
        if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) != 0) run->realtime_failed = 1;
    }
    for (;;) {
        pgr_release_wait(&run->gate, &seen);
        if (run->stop) break;
        pgr_trial *t = run->current;
        s->trace = t->trace + (size_t)a->index * PGR_MAX_STEPS;
        s->nsteps = 0;
        s->attempt = 0;
        s->first_send_ns = 0;
        pgr_request req;
        memset(&req, 0, sizeof req);
        run->sc->request(t, a->index, &req);
        int sends = req.sends > 1 ? req.sends : 1;
        pgr_response resp = { 0 };
        int64_t t0 = pgr_now_ns();
        for (int k = 0; k < sends; k++) {
            resp = (pgr_response){ .status = 0, .id = -1, .sqlstate = "" };
            s->attempt = 0;
            resp.status = run->v->handler(s, &req, &resp);
            pgr_rollback(s);   /* a handler that leaves a transaction open is a handler bug */
            if (k == 0) t->first[a->index] = resp;
        }
        t->sends[a->index] = sends;
        t->latency_ns[a->index] = pgr_now_ns() - t0;
        t->first_send_ns[a->index] = s->first_send_ns;
        t->nsteps[a->index] = s->nsteps;
        t->resp[a->index] = resp;
        pgr_release_done(&run->gate);
    }
    return NULL;
}

static void dist_add(pgr_dist *d, double v)
{
    if (d->n == d->cap) {
        long cap = d->cap ? d->cap * 2 : 4096;
        double *nv = realloc(d->v, (size_t)cap * sizeof *nv);
        if (!nv) return;
        d->v = nv;
        d->cap = cap;
    }
    d->v[d->n++] = v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double pgr_dist_pct(pgr_dist *d, double p)
{
    if (d->n == 0) return 0;
    qsort(d->v, (size_t)d->n, sizeof *d->v, cmp_double);
    long i = (long)(p / 100.0 * (double)(d->n - 1) + 0.5);
    if (i >= d->n) i = d->n - 1;
    return d->v[i];
}

void pgr_tally_sqlstate(pgr_tally *t, const char *code, long long n)
{
    for (int i = 0; i < t->nsqlstates; i++)
        if (strcmp(t->sqlstates[i].code, code) == 0) { t->sqlstates[i].n += n; return; }
    if (t->nsqlstates == PGR_MAX_SQLSTATES) return;
    snprintf(t->sqlstates[t->nsqlstates].code, 6, "%s", code);
    t->sqlstates[t->nsqlstates++].n = n;
}

void pgr_result_free(pgr_result *r)
{
    for (int i = 0; i < r->tally.ncex; i++) free(r->tally.cex[i].steps);
    r->tally.ncex = 0;
    free(r->latency.v);
    free(r->skew.v);
    r->latency.v = r->skew.v = NULL;
}

void pgr_violation(pgr_batch *b, const pgr_trial *tc, int inv, const char *fmt, ...)
{
    pgr_tally *t = b->tally;
    pgr_trial *tr = (pgr_trial *)tc;
    if (inv >= 0 && inv < PGR_MAX_INV) t->inv[inv]++;
    if (tr->violated) return;
    tr->violated = true;
    t->violated_trials++;
    if (t->ncex == PGR_MAX_CEX) return;
    pgr_counterexample *c = &t->cex[t->ncex];
    size_t sz = (size_t)tr->nsessions * PGR_MAX_STEPS * sizeof(pgr_step);
    c->steps = malloc(sz);
    if (!c->steps) return;
    memcpy(c->steps, tr->trace, sz);
    c->trial_no = tr->trial_no;
    c->kase = tr->kase;
    c->invariant = inv;
    c->nsessions = tr->nsessions;
    memcpy(c->resp, tr->resp, sizeof c->resp);
    memcpy(c->nsteps, tr->nsteps, sizeof c->nsteps);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->why, sizeof c->why, fmt, ap);
    va_end(ap);
    t->ncex++;
}

PGresult *pgr_admin(pgr_batch *b, const char *sql, int nparams, const char *const *params)
{
    PGresult *r = PQexecParams(b->admin, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) return r;
    snprintf(b->err, sizeof b->err, "%s", PQresultErrorMessage(r));
    b->err[strcspn(b->err, "\n")] = '\0';
    PQclear(r);
    return NULL;
}

/* Weighted, deterministic choice of the case for trial n. */
static int case_of(const pgr_scenario *sc, long long n)
{
    int total = 0;
    for (int i = 0; i < sc->ncases; i++) total += sc->cases[i].weight;
    int x = (int)(n % total);
    for (int i = 0; i < sc->ncases; i++) {
        if (x < sc->cases[i].weight) return i;
        x -= sc->cases[i].weight;
    }
    return 0;
}

/* Fold one finished trial into the result: statuses, SQLSTATEs, latency, skew. */
static void account_trial(pgr_result *res, const pgr_trial *t)
{
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (int i = 0; i < t->nsessions; i++) {
        int st = t->resp[i].status;
        if (st >= 0 && st < 600) res->tally.statuses[st]++;
        dist_add(&res->latency, (double)t->latency_ns[i] / 1000.0);
        if (t->first_send_ns[i]) {
            if (t->first_send_ns[i] < lo) lo = t->first_send_ns[i];
            if (t->first_send_ns[i] > hi) hi = t->first_send_ns[i];
        }
        int n = t->nsteps[i] < PGR_MAX_STEPS ? t->nsteps[i] : PGR_MAX_STEPS;
        for (int k = 0; k < n; k++)
            pgr_tally_sqlstate(&res->tally, t->trace[(size_t)i * PGR_MAX_STEPS + k].sqlstate, 1);
    }
    if (hi >= lo && t->nsessions > 1) dist_add(&res->skew, (double)(hi - lo) / 1000.0);
    res->tally.case_trials[t->kase]++;
}

static void progress(const pgr_result *res, double elapsed, bool final)
{
    fprintf(stderr, "\r%s/%s %s c=%d: %lld trials, %.0f/s, %lld violating%s",
            res->sc->name, res->v->name, pgr_isolation_name(res->iso), res->sessions,
            res->trials, elapsed > 0 ? (double)res->trials / elapsed : 0.0,
            res->tally.violated_trials, final ? "\n" : "   ");
}

int pgr_stress(const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
               const pgr_stress_opts *o, pgr_result *res)
{
    memset(res, 0, sizeof *res);
    res->sc = sc;
    res->v = v;
    res->iso = o->iso;
    res->sessions = o->sessions;
    res->mode = "stress";
    res->expected = v->expect[o->iso];
    if (res->expected == PGR_RACE && o->sessions < v->race_from[o->iso]) res->expected = PGR_SAFE;

    stress_run *run = calloc(1, sizeof *run);
    pgr_trial *trials = NULL;
    pgr_step *traces = NULL;
    pthread_t th[PGR_MAX_SESSIONS];
    session_arg args[PGR_MAX_SESSIONS];
    int started = 0;
    PGconn *admin = NULL;
    pgr_schema schema = { .name = "" };
    int rc = -1;
    int64_t t_start = 0;
    if (!run) { snprintf(res->error, sizeof res->error, "out of memory"); return -1; }
    run->sc = sc;
    run->v = v;
    run->nsessions = o->sessions;
    run->realtime = !o->no_realtime;
    pgr_release_init(&run->gate);

    admin = pgr_connect(dsn, res->error, sizeof res->error);
    if (!admin) goto out;
    if (pgr_schema_setup(admin, sc, v, &schema, res->error, sizeof res->error) != 0) goto out;
    memcpy(res->seed_sql_error, schema.seed_sql_error, sizeof res->seed_sql_error);

    for (int i = 0; i < o->sessions; i++) {
        pgr_session *s = &run->sess[i];
        s->index = i;
        s->interrupted = o->interrupted;
        s->step_timeout_ns = 30LL * 1000000000;
        s->conn = pgr_connect(dsn, res->error, sizeof res->error);
        if (!s->conn) goto out;
        if (pgr_session_setup(s->conn, &schema, o->iso, &s->backend_pid, res->error, sizeof res->error)) goto out;
    }

    int batch = 4096 / o->sessions;
    if (batch < 16) batch = 16;
    if (batch > PGR_MAX_BATCH) batch = PGR_MAX_BATCH;
    trials = calloc((size_t)batch, sizeof *trials);
    traces = calloc((size_t)batch * o->sessions * PGR_MAX_STEPS, sizeof *traces);
    if (!trials || !traces) { snprintf(res->error, sizeof res->error, "out of memory"); goto out; }

    /* Sessions must not take the signals: the coordinator handles SIGINT/SIGTERM. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    for (; started < o->sessions; started++) {
        args[started] = (session_arg){ run, started };
        if (pthread_create(&th[started], NULL, session_main, &args[started]) != 0) break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < o->sessions) { snprintf(res->error, sizeof res->error, "cannot start session threads"); goto out; }

    t_start = pgr_now_ns();
    int64_t next_progress = t_start + (int64_t)(o->progress_s * 1e9);
    int64_t t_end = o->trials ? INT64_MAX : t_start + (int64_t)(o->seconds * 1e9);
    long long base = schema.run_id * 1000000000LL;
    bool stopping = false;
    while (!stopping) {
        long long left = o->trials ? o->trials - res->trials : batch;
        if (left <= 0) break;
        int nb = left < batch ? (int)left : batch;
        for (int i = 0; i < nb; i++) {
            pgr_trial *t = &trials[i];
            long long n = res->trials + i;
            memset(t, 0, sizeof *t);
            t->trial_no = n;
            t->key = base + n;
            t->kase = case_of(sc, n);
            t->nsessions = o->sessions;
            t->trace = traces + (size_t)i * o->sessions * PGR_MAX_STEPS;
        }
        pgr_batch b = { .admin = admin, .trials = trials, .ntrials = nb, .nsessions = o->sessions,
                        .key_lo = base + res->trials, .key_hi = base + res->trials + nb - 1,
                        .tally = &res->tally };
        if (sc->prepare(&b) != 0) {
            snprintf(res->error, sizeof res->error, "preparing trials: %s", b.err);
            goto out;
        }
        int ran = 0;
        for (; ran < nb; ran++) {
            run->current = &trials[ran];
            pgr_release_open(&run->gate, (uint32_t)o->sessions);
            pgr_release_join(&run->gate);
            for (int i = 0; i < o->sessions; i++) {
                if (run->sess[i].infra_error) {
                    snprintf(res->error, sizeof res->error, "%s", run->sess[i].infra_msg);
                    goto out;
                }
            }
            account_trial(res, &trials[ran]);
            res->trials++;
            int64_t now = pgr_now_ns();
            if (now >= t_end || (o->interrupted && *o->interrupted)) { ran++; stopping = true; break; }
            if (o->progress_s > 0 && !o->quiet && now >= next_progress) {
                progress(res, (double)(now - t_start) / 1e9, false);
                next_progress = now + (int64_t)(o->progress_s * 1e9);
            }
        }
        b.ntrials = ran;
        b.key_hi = b.key_lo + ran - 1;
        if (sc->check(&b) != 0) {
            snprintf(res->error, sizeof res->error, "checking invariants: %s", b.err);
            goto out;
        }
        if (o->interrupted && *o->interrupted) {
            snprintf(res->error, sizeof res->error, "interrupted");
            goto out;
        }
    }
    rc = 0;
out:
    if (t_start) res->seconds = (double)(pgr_now_ns() - t_start) / 1e9;
    if (t_start && o->progress_s > 0 && !o->quiet) progress(res, res->seconds, true);
    if (started) {
        run->stop = 1;
        pgr_release_open(&run->gate, 0);
        for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    }
    for (int i = 0; i < o->sessions; i++) {
        res->statements += run->sess[i].statements;
        if (run->sess[i].res.pg) PQclear(run->sess[i].res.pg);
        if (run->sess[i].conn) PQfinish(run->sess[i].conn);
        free(run->sess[i].stmts);
    }
    res->release = run->realtime && !run->realtime_failed ? "realtime" : "normal";
    pgr_schema_release(admin, &schema);
    if (admin) PQfinish(admin);
    free(trials);
    free(traces);
    free(run);
    res->verdict = res->tally.violated_trials > 0 ? PGR_RACE : PGR_SAFE;
    return rc;
}
