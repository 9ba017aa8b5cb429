/*
 * pool.c — the sessions of a run, shared by every mode.
 *
 * A pool is one variant's schema, an admin connection for batch preparation and checks,
 * and N session threads, each with its own connection. A trial starts when the
 * coordinator opens the release gate (release.c): every session builds its request and
 * runs the variant's handler; statements go through the seam, which waits for the
 * pool's gate ops when a scheduler is set (explore/replay) and runs them at once when not
 * (stress). Trials come in batches: one prepare() for the batch's rows, one check() for
 * its invariants, never a round trip per trial outside the sessions' own statements.
 */
#include "proxy.h"
#include "release.h"
#include "runner.h"
#include "seam.h"
#include "target.h"
#include "webapp.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct session_arg {
    struct pgr_pool *pool;
    int index;
} session_arg;

struct pgr_pool {
    const pgr_scenario *sc;
    const pgr_variant *v;
    int nsessions;
    pgr_release gate;
    pgr_trial *volatile current;     /* the trial being run; written before the gate opens */
    volatile int stop;
    bool realtime;                   /* try SCHED_FIFO for the sessions */
    _Atomic int realtime_failed;
    const pgr_fault *fault;          /* the run's fault; NULL none */
    pgr_target target;               /* what serves the requests */
    pgr_inproc inproc;               /* the in-process target's context, when it is that */
    pgr_proxy *proxy;                /* a program variant's (v->client): a listener per session */
    pgr_session *bound[PGR_MAX_SESSIONS];
    pgr_program program;             /* the program target's context */
    pgr_webapp *app;                 /* an http variant's application, an instance per session */
    pgr_http_target *http;           /* the HTTP target's context */
    /* stress with programs: the wire's release barrier. A program's first statement waits
     * until every session's program has reached its first statement (or finished), so the
     * programs race from there as C handlers do from the release, not from their start-up */
    pgr_gate_ops barrier;
    pthread_mutex_t b_mu;
    pthread_cond_t b_cv;
    int b_waiting;                   /* sessions at their first statement or finished, this trial */
    bool b_arrived[PGR_MAX_SESSIONS];
    pgr_isolation iso;
    _Atomic int fault_sites;         /* most eligible fault sites seen in one request */
    char dsn[1024];                  /* to reconnect a session whose connection a fault took */
    pgr_session sess[PGR_MAX_SESSIONS];
    pthread_t th[PGR_MAX_SESSIONS];
    session_arg args[PGR_MAX_SESSIONS];   /* each thread's argument; several pools may live at once */
    int started;
    PGconn *admin;
    pgr_schema schema;
    long long base;                  /* key of trial 0 */
    pgr_trial trials[PGR_MAX_BATCH];
    pgr_step *traces;                /* [PGR_MAX_BATCH][nsessions][PGR_MAX_STEPS] */
};

/* A fault took the session's connection: connect again, as the application's pool would.
 * A server that cannot be reached now is a harness error. */
static void reconnect(pgr_pool *pool, pgr_session *s)
{
    char err[PGR_ERRLEN];
    pgr_disconnect(s->conn);
    pgr_stmt_cache_free(s);
    s->conn_lost = false;
    s->conn = pgr_connect(pool->dsn, err, sizeof err);
    int pid = 0;
    if (!s->conn || pgr_session_setup(s->conn, &pool->schema, pool->iso, &pid, err, sizeof err) != 0) {
        s->infra_error = true;
        snprintf(s->infra_msg, sizeof s->infra_msg, "session S%d: reconnecting after a fault: %s", s->index + 1, err);
        return;
    }
    __atomic_store_n(&s->backend_pid, pid, __ATOMIC_RELEASE);
}

/* Digest of the variant's schema (one session only: the admin connection is the
 * coordinator's, idle while the only session runs). NULL on failure (infra error). */
static char *schema_digest(pgr_pool *pool, pgr_session *s)
{
    char err[PGR_ERRLEN];
    char *d = pgr_schema_digest(pool->admin, err, sizeof err);
    if (!d) {
        s->infra_error = true;
        snprintf(s->infra_msg, sizeof s->infra_msg, "schema digest: %s", err);
    }
    return d;
}

/* One session's part of trial t, the client's side: build its request, send it to the
 * target (once or more), record. What serves it (pool->target) is not the client's business.
 * With a fault armed, the first send may lose its answer (or get a 5xx): the client then
 * sends the request again, once, and that attempt is not part of the request's answers. */
static void run_request(pgr_pool *pool, int index, pgr_trial *t)
{
    pgr_session *s = &pool->sess[index];
    s->trace = PGR_TRACE_AT(t->trace, index, 0);
    s->nsteps = 0;
    s->attempt = 0;
    s->first_send_ns = 0;
    s->http_sent_ns = 0;
    t->fault_step[index] = -1;
    pgr_request req;
    memset(&req, 0, sizeof req);
    pool->sc->request(pool->sc->ctx, t, index, &req);
    int sends = req.sends > 1 ? req.sends : 1;
    pgr_response resp = { 0 };
    /* alone, a request whose faulted attempt fails must leave the schema as it found it */
    char *before = NULL;
    bool atomic = pool->fault && pool->nsessions == 1 && t->fault_site[index] >= 0 &&
                  (pool->fault->kind == PGR_FAULT_KILL || pool->fault->kind == PGR_FAULT_ERROR);
    if (atomic) before = schema_digest(pool, s);
    int64_t t0 = pgr_now_ns();
    for (int k = 0; k < sends && !s->infra_error; k++) {
        resp = (pgr_response){ .status = 0, .id = -1, .sqlstate = "" };
        s->attempt = 0;
        s->fault_sites = 0;
        s->send_first_step = s->nsteps;
        s->fault_fired_at = -1;
        s->fault_site = k == 0 && !t->fault_retried[index] ? t->fault_site[index] : -1;
        s->fault_applies = t->fault_applies[index];
        pool->target.ops->serve(pool->target.ctx, s, &req, &resp);
        if (pool->fault && k == 0 && !t->fault_retried[index]) t->fault_sites_seen[index] = (short)s->fault_sites;
        if (pool->fault && k == 0) {
            int seen = atomic_load(&pool->fault_sites);
            while (s->fault_sites > seen && !atomic_compare_exchange_weak(&pool->fault_sites, &seen, s->fault_sites)) {}
        }
        if (s->fault_fired_at >= 0) {
            bool lost = pool->fault->kind == PGR_FAULT_TIMEOUT || pool->fault->kind == PGR_FAULT_LOST_COMMIT;
            t->fault_step[index] = (short)s->fault_fired_at;
            t->fault_status[index] = (short)(lost ? 0 : resp.status);
            if (s->conn_lost && !pool->proxy) reconnect(pool, s);   /* a program reconnects by itself */
            if (atomic && before && resp.status >= 500 && !s->infra_error) {
                char *after = schema_digest(pool, s);
                t->fault_dirty[index] = after && strcmp(before, after) != 0;
                free(after);
            }
            if (s->infra_error) break;
            if (lost || resp.status >= 500) {        /* no answer, or a 5xx: the client retries */
                t->fault_retried[index] = true;
                k--;
                continue;
            }
        }
        if (k == 0) t->first[index] = resp;
    }
    free(before);
    t->sends[index] = sends;
    t->latency_ns[index] = pgr_now_ns() - t0;
    t->first_send_ns[index] = s->first_send_ns;
    t->http_sent_ns[index] = s->http_sent_ns;
    t->nsteps[index] = s->nsteps;
    t->resp[index] = resp;
    if (s->gate && s->gate->done) s->gate->done(s->gate->ctx, s);
}

/* Session thread: wait for the gate, run the trial, report. */
static void *session_main(void *p)
{
    session_arg *a = p;
    pgr_pool *pool = a->pool;
    uint32_t seen = 0;
    if (pool->realtime) {
        /* Real-time sessions are not preempted by the backends they wake, so every
         * session gets to send before any backend runs. Needs CAP_SYS_NICE; else normal. */
        struct sched_param sp = { .sched_priority = 1 };
        if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) != 0) pool->realtime_failed = 1;
    }
    for (;;) {
        pgr_release_wait(&pool->gate, &seen);
        if (pool->stop) break;
        run_request(pool, a->index, pool->current);
        pgr_release_done(&pool->gate);
    }
    return NULL;
}

/* Start one thread per session running fn; sessions must not take SIGINT/SIGTERM/SIGHUP
 * (the coordinator handles them). 0, or -1 when not all could start. */
static int start_threads(pgr_pool *pool)
{
    sigset_t old;
    pgr_block_run_signals(&old);
    for (pool->started = 0; pool->started < pool->nsessions; pool->started++)
        if (pthread_create(&pool->th[pool->started], NULL, session_main, &pool->args[pool->started]) != 0) break;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return pool->started == pool->nsessions ? 0 : -1;
}

static int port_of(void *ctx, int i) { return pgr_proxy_port(ctx, i); }
static int sync_of(void *ctx, int i, double wait_s) { return pgr_proxy_sync(ctx, i, wait_s); }

static void barrier_arrive(pgr_pool *pool, int i, bool wait)
{
    pthread_mutex_lock(&pool->b_mu);
    if (!pool->b_arrived[i]) {
        pool->b_arrived[i] = true;
        pool->b_waiting++;
        pthread_cond_broadcast(&pool->b_cv);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 2;               /* a program this late to its first statement: go anyway */
        while (wait && pool->b_waiting < pool->nsessions && !pool->stop &&
               pthread_cond_timedwait(&pool->b_cv, &pool->b_mu, &until) == 0) {}
    }
    pthread_mutex_unlock(&pool->b_mu);
}

static void barrier_before(void *ctx, pgr_session *s, const pgr_step *st)
{
    (void)st;
    barrier_arrive(ctx, s->index, true);
}

static void barrier_after(void *ctx, pgr_session *s, const pgr_step *st) { (void)ctx; (void)s; (void)st; }
static void barrier_done(void *ctx, pgr_session *s) { barrier_arrive(ctx, s->index, false); }

/* A variant served through the wire (a program, an application): a proxy with a listener
 * bound to each session. */
static int open_proxy(pgr_pool *pool, const char *dsn, const pgr_pool_opts *o, pgr_result *res)
{
    for (int i = 0; i < pool->nsessions; i++) pool->bound[i] = &pool->sess[i];
    double step = o->step_timeout_s > 0 ? o->step_timeout_s : 30;
    pgr_proxy_opts po = { .dsn = dsn, .nsessions = pool->nsessions, .sessions = pool->bound,
                          .step_timeout_s = step, .interrupted = o->interrupted };
    pool->proxy = pgr_proxy_open(&po, res->error, sizeof res->error);
    if (!pool->proxy) return -1;
    if (pgr_proxy_start(pool->proxy) != 0) {
        snprintf(res->error, sizeof res->error, "cannot start the proxy");
        return -1;
    }
    return 0;
}

/* Where a program or an application connects: the admin connection's database, user and
 * password, the variant's schema, the cell's level (the port is each session's listener). */
static pgr_client_env_opts client_env_of(pgr_pool *pool, const pgr_pool_opts *o)
{
    const char *pw = PQpass(pool->admin);
    return (pgr_client_env_opts){ .host = pgr_proxy_socket_dir(pool->proxy), .dbname = PQdb(pool->admin),
                                  .user = PQuser(pool->admin), .password = pw && pw[0] ? pw : NULL,
                                  .schema = pool->schema.name, .iso = o->iso };
}

/* A program variant: the proxy, and the program target. */
static int open_program(pgr_pool *pool, const char *dsn, const pgr_variant *v, const pgr_pool_opts *o, pgr_result *res)
{
    if (open_proxy(pool, dsn, o, res) != 0) return -1;
    double step = o->step_timeout_s > 0 ? o->step_timeout_s : 30;
    pgr_client_env_opts eo = client_env_of(pool, o);
    pgr_program *p = &pool->program;
    *p = (pgr_program){ .name = v->name, .cmd = v->client, .host = eo.host,
                        .port_of = port_of, .sync = sync_of, .port_ctx = pool->proxy, .iso = o->iso, .timeout_s = step,
                        .interrupted = o->interrupted };
    snprintf(p->dbname, sizeof p->dbname, "%s", eo.dbname);
    snprintf(p->user, sizeof p->user, "%s", eo.user);
    p->password = eo.password;
    snprintf(p->schema, sizeof p->schema, "%s", pool->schema.name);
    pool->target = pgr_target_program(p);
    if (!o->gate && pool->nsessions > 1) {
        pool->barrier = (pgr_gate_ops){ barrier_before, barrier_after, barrier_done, pool };
        for (int i = 0; i < pool->nsessions; i++) pool->sess[i].gate = &pool->barrier;
    }
    return 0;
}

/* An http variant: the proxy, an instance of the application per session (listening before
 * this returns), and the HTTP target, with last-byte sync under stress. */
static int open_http(pgr_pool *pool, const char *dsn, const pgr_variant *v, const pgr_pool_opts *o, pgr_result *res)
{
    for (int i = 0; i < pool->nsessions; i++) pool->sess[i].outside_request = 1;   /* the apps' start-up */
    if (open_proxy(pool, dsn, o, res) != 0) return -1;
    double step = o->step_timeout_s > 0 ? o->step_timeout_s : 30;
    pgr_webapp_opts ao = { .cmd = v->http->app, .ninstances = pool->nsessions,
                           .env = client_env_of(pool, o), .port_of = port_of, .port_ctx = pool->proxy,
                           .ready_timeout_s = step, .interrupted = o->interrupted };
    char err[PGR_ERRLEN - 64];
    pool->app = pgr_webapp_start(&ao, err, sizeof err);
    if (!pool->app) {
        snprintf(res->error, sizeof res->error, "http variant '%s': %s", v->name, err);
        return -1;
    }
    pgr_http_target_opts ho = { .v = v, .app = pool->app, .nsessions = pool->nsessions,
                                .last_byte = !o->gate && pool->nsessions > 1, .sync = sync_of,
                                .port_ctx = pool->proxy, .timeout_s = step, .interrupted = o->interrupted };
    pool->http = pgr_http_target_new(&ho);
    if (!pool->http) { snprintf(res->error, sizeof res->error, "out of memory"); return -1; }
    pool->target = pgr_target_http(pool->http);
    return 0;
}

pgr_pool *pgr_pool_open(const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                        const pgr_pool_opts *o, pgr_result *res)
{
    pgr_pool *pool = calloc(1, sizeof *pool);
    if (!pool) { snprintf(res->error, sizeof res->error, "out of memory"); return NULL; }
    pool->sc = sc;
    pool->v = v;
    pool->nsessions = o->sessions;
    pool->realtime = o->realtime && !v->client;   /* a program's session thread only waits; an http one
                                                   * writes every last byte (target_http.c) */
    pool->iso = o->iso;
    pool->fault = o->fault && o->fault->kind != PGR_FAULT_NONE ? o->fault : NULL;
    pool->target = o->target ? *o->target : pgr_target_inproc(&pool->inproc, sc, v);
    snprintf(pool->dsn, sizeof pool->dsn, "%s", dsn);
    pgr_release_init(&pool->gate);
    pthread_mutex_init(&pool->b_mu, NULL);
    pthread_cond_init(&pool->b_cv, NULL);
    pool->traces = calloc((size_t)PGR_MAX_BATCH * o->sessions * PGR_MAX_STEPS, sizeof *pool->traces);
    if (!pool->traces) { snprintf(res->error, sizeof res->error, "out of memory"); goto fail; }

    pool->admin = pgr_connect(dsn, res->error, sizeof res->error);
    if (!pool->admin) goto fail;
    if (pgr_schema_setup(pool->admin, sc, v, &pool->schema, res->error, sizeof res->error) != 0) goto fail;
    memcpy(res->seed_sql, pool->schema.seed_sql, sizeof res->seed_sql);
    res->nseed_sql = pool->schema.nseed_sql;
    pool->base = pool->schema.run_id * 1000000000LL;

    for (int i = 0; i < o->sessions; i++) {
        pgr_session *s = &pool->sess[i];
        s->index = i;
        s->interrupted = o->interrupted;
        s->step_timeout_ns = (int64_t)((o->step_timeout_s > 0 ? o->step_timeout_s : 30) * 1e9);
        s->gate = o->gate;
        s->ctx = v->ctx;
        s->fault = pool->fault;
        s->fault_site = -1;
        if (pgr_variant_wire(v)) continue;     /* the program's connections are the session's */
        s->conn = pgr_connect(dsn, res->error, sizeof res->error);
        if (!s->conn) goto fail;
        if (pgr_session_setup(s->conn, &pool->schema, o->iso, &s->backend_pid, res->error, sizeof res->error))
            goto fail;
    }
    if (v->client && open_program(pool, dsn, v, o, res) != 0) goto fail;
    if (v->http && open_http(pool, dsn, v, o, res) != 0) goto fail;

    for (int i = 0; i < o->sessions; i++) pool->args[i] = (session_arg){ pool, i };
    if (start_threads(pool) != 0) {
        snprintf(res->error, sizeof res->error, "cannot start session threads");
        goto fail;
    }
    return pool;
fail:
    pgr_pool_close(pool, res);
    return NULL;
}

void pgr_pool_close(pgr_pool *pool, pgr_result *res)
{
    if (!pool) return;
    if (pool->started) {
        pool->stop = 1;
        pgr_release_open(&pool->gate, 0);
        for (int i = 0; i < pool->started; i++) pthread_join(pool->th[i], NULL);
    }
    pgr_http_target_free(pool->http);
    pgr_webapp_stop(pool->app);                      /* before the proxy: its pool closes cleanly */
    if (pool->proxy) pgr_proxy_close(pool->proxy);   /* every program connection closed */
    for (int i = 0; i < pool->nsessions; i++) {
        pgr_session *s = &pool->sess[i];
        res->statements += s->statements;
        if (s->res.pg) PQclear(s->res.pg);
        pgr_disconnect(s->conn);
        pgr_stmt_cache_free(s);
    }
    res->release = pool->realtime && !pool->realtime_failed ? "realtime" : "normal";
    pgr_schema_release(pool->admin, &pool->schema);
    pgr_disconnect(pool->admin);
    free(pool->traces);
    pthread_mutex_destroy(&pool->b_mu);
    pthread_cond_destroy(&pool->b_cv);
    free(pool);
}

pgr_session *pgr_pool_session(pgr_pool *pool, int i) { return &pool->sess[i]; }
const char *pgr_pool_schema(const pgr_pool *pool) { return pool->schema.name; }
int pgr_pool_fault_sites(pgr_pool *pool) { return atomic_load(&pool->fault_sites); }

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

int pgr_pool_prepare(pgr_pool *pool, long long first, int n, int force_case, pgr_batch *b, pgr_result *res)
{
    if (n > PGR_MAX_BATCH) n = PGR_MAX_BATCH;
    for (int i = 0; i < n; i++) {
        pgr_trial *t = &pool->trials[i];
        memset(t, 0, sizeof *t);
        t->trial_no = first + i;
        t->key = pool->base + first + i;
        t->kase = force_case >= 0                 ? force_case
                  : force_case == PGR_CASES_IN_TURN ? i % pool->sc->ncases
                                                    : case_of(pool->sc, first + i);
        t->nsessions = pool->nsessions;
        t->trace = pool->traces + (size_t)i * pool->nsessions * PGR_MAX_STEPS;
        for (int j = 0; j < pool->nsessions; j++) t->fault_site[j] = t->fault_step[j] = -1;
    }
    *b = (pgr_batch){ .sc = pool->sc, .ctx = pool->sc->ctx, .admin = pool->admin, .trials = pool->trials, .ntrials = n, .nsessions = pool->nsessions,
                      .key_lo = pool->base + first, .key_hi = pool->base + first + n - 1, .tally = &res->tally };
    if (pool->sc->prepare(b) != 0) {
        snprintf(res->error, sizeof res->error, "preparing trials: %s", b->err);
        return -1;
    }
    return 0;
}

void pgr_pool_start(pgr_pool *pool, pgr_trial *t)
{
    pool->current = t;
    pthread_mutex_lock(&pool->b_mu);
    pool->b_waiting = 0;
    memset(pool->b_arrived, 0, sizeof pool->b_arrived);
    pthread_mutex_unlock(&pool->b_mu);
    pgr_release_open(&pool->gate, (uint32_t)pool->nsessions);
}

int pgr_pool_finish(pgr_pool *pool, pgr_result *res)
{
    pgr_release_join(&pool->gate);
    for (int i = 0; i < pool->nsessions; i++) {
        if (pool->sess[i].infra_error) {
            snprintf(res->error, sizeof res->error, "%s", pool->sess[i].infra_msg);
            return -1;
        }
    }
    return 0;
}

int pgr_pool_check(pgr_pool *pool, pgr_batch *b, int ran, pgr_result *res)
{
    if (ran <= 0) return 0;
    b->ntrials = ran;
    b->key_hi = b->key_lo + ran - 1;
    if (pool->sc->check(b) != 0) {
        snprintf(res->error, sizeof res->error, "checking invariants: %s", b->err);
        return -1;
    }
    for (int i = 0; i < ran; i++) {      /* the harness's own invariants under faults */
        const pgr_trial *t = &b->trials[i];
        for (int j = 0; j < t->nsessions; j++)
            if (t->fault_dirty[j]) {
                const pgr_step *st = PGR_TRACE_AT(t->trace, j, t->fault_step[j]);
                pgr_violation(b, t, PGR_INV_ATOMIC, "S%d's request answered %d after the fault at its step %d (%s), "
                              "but left changes behind", j + 1, t->fault_status[j], t->fault_step[j] + 1,
                              t->fault_step[j] < PGR_MAX_STEPS ? st->label : "?");
                break;
            }
        for (int j = 0; j < t->nsessions && !(pool->sc->failing_cases >> t->kase & 1u); j++)
            if (t->fault_retried[j] && t->resp[j].status >= 500) {
                pgr_violation(b, t, PGR_INV_RETRY, "S%d's retry after the fault (at its step %d) answered %d%s%s",
                              j + 1, t->fault_step[j] + 1, t->resp[j].status, t->resp[j].sqlstate[0] ? ", SQLSTATE " : "",
                              t->resp[j].sqlstate);
                break;
            }
    }
    return 0;
}
