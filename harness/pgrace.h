/*
 * pgrace.h — the scenario API, the statement seam, and the types every mode shares.
 *
 * A scenario (one file under scenarios/) is a set of variants of one write pattern. Each variant is a
 * handler written as straight-line C, the way the application code in the seed is written:
 * it calls pgr_exec() for every statement, branches on what came back, and returns an
 * HTTP status. Modes (stress now; explore, fuzz and replay later) differ only in *when*
 * pgr_exec lets a statement run, never in the handler.
 */
#ifndef PGRACE_H
#define PGRACE_H

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>

#define PGR_VERSION "0.1.0"
#define PGR_MAX_SESSIONS 64
#define PGR_MAX_STEPS 24         /* steps recorded per session per trial; more are counted only */
#define PGR_MAX_BATCH 256        /* trials prepared and checked together */
#define PGR_ERRLEN 512
#define PGR_MAX_FIELDS 6         /* request fields (text[]) */

/* HTTP-ish statuses handlers return; PGR_RETRY is internal (a handler's own retry loop). */
enum { PGR_RETRY = -1 };

#define PGR_LEN(a) ((int)(sizeof(a) / sizeof((a)[0])))      /* a static table's length */
/* Step k of session s in a trace laid out [session][PGR_MAX_STEPS]. */
#define PGR_TRACE_AT(trace, s, k) (&(trace)[(size_t)(s) * PGR_MAX_STEPS + (size_t)(k)])

typedef enum { PGR_RC = 0, PGR_RR = 1, PGR_SER = 2, PGR_NISO = 3 } pgr_isolation;
typedef enum { PGR_ORIGINAL, PGR_PROPOSED, PGR_RECOMMENDED } pgr_kind;
/* A cell's verdict (safe or race). PGR_EITHER is only ever an expectation: the variant races
 * there, but rarely enough that a cell's trials may miss it, so both verdicts match. */
typedef enum { PGR_SAFE = 0, PGR_RACE = 1, PGR_EITHER = 2 } pgr_verdict;

/* Faults the seam injects into one request (issue #7). Each fires at most once per request,
 * on its first send; a client that saw no answer, or a 5xx, then sends the request again. */
typedef enum {
    PGR_FAULT_NONE = 0,
    PGR_FAULT_TIMEOUT,       /* timeout-retry: the step runs, its answer never arrives; the
                              * client gives up and discards the connection */
    PGR_FAULT_KILL,          /* kill-backend: pg_terminate_backend between two steps */
    PGR_FAULT_ERROR,         /* error-at[:STEP]: a real server error instead of that step
                              * (no STEP: any step) */
    PGR_FAULT_LOST_COMMIT,   /* lost-commit: the connection drops during a commit (COMMIT, or
                              * an autocommitted write); whether it committed is unknown */
    PGR_NFAULTS
} pgr_fault_kind;

typedef struct pgr_fault {
    pgr_fault_kind kind;
    char step[48];           /* error-at: the step's label ("create submission"); "" any */
    double rate;             /* stress: share of requests that get the fault, (0, 1] */
} pgr_fault;

const char *pgr_fault_name(pgr_fault_kind k);        /* "timeout-retry", ... */
/* Parse "KIND[@RATE]" (RATE a fraction or a percentage "20%"). 0, or -1 with err. */
int pgr_fault_parse(const char *s, pgr_fault *out, char *err, size_t errlen);
/* "kill-backend@0.2", "error-at:claim@1" */
void pgr_fault_format(const pgr_fault *f, char *out, size_t len);
/* Whether the step labelled `label` is the one error-at names (case, '-', '_', ' ' ignored). */
bool pgr_fault_step_is(const char *want, const char *label);

const char *pgr_isolation_name(pgr_isolation iso);   /* "read-committed", ... */
int pgr_isolation_parse(const char *s, pgr_isolation *out);
const char *pgr_kind_name(pgr_kind k);
const char *pgr_verdict_name(pgr_verdict v);

/* One statement that passed through the seam. Filled by pgr_exec; read by checks/reports. */
typedef struct pgr_step {
    const char *label;           /* handler's name for the step ("claim"); interned (intern.h):
                                  * valid for the process's life, equal texts equal pointers */
    const char *sql;             /* the statement's text; interned */
    char params[96];             /* parameters, comma-joined, truncated */
    char sqlstate[6];            /* "00000" on success */
    char constraint[48];         /* PG_DIAG_CONSTRAINT_NAME on error, else "" */
    char message[96];            /* primary error message, else "" */
    char values[64];             /* first row returned, "col=val, ...", truncated */
    bool waited;                 /* explore: seen waiting on another session's lock */
    short session;
    short attempt;               /* handler's retry attempt (0 first) */
    long rows;                   /* rows returned (SELECT/RETURNING) or affected */
    int64_t t_send_ns;           /* CLOCK_MONOTONIC just before the statement was sent */
    int64_t t_done_ns;           /* when its result was complete */
} pgr_step;

/* A request a session sends: scenario-defined text fields (token, key, ...), declared by
 * the scenario's `fields` (field i is text[i]). */
typedef struct pgr_request {
    char text[PGR_MAX_FIELDS][80];
    long long num[2];            /* num[0]: the trial key where a handler stores it; not a payload */
    int sends;                   /* times this session sends it, one after another (a retry
                                  * after a lost answer); 0 or 1 = once */
    const char *raw[PGR_MAX_FIELDS];          /* when set, field i is these raw_len[i] bytes (NUL bytes,
                                  * invalid UTF-8, 1 MiB ...) instead of text[i]; the
                                  * validator copies a valid one into text[i] */
    size_t raw_len[PGR_MAX_FIELDS];
} pgr_request;

/* What the API accepts in one request field: the schema the web framework validates the
 * body against before the handler runs (pgr_request_validate). */
typedef enum {
    PGR_FIELD_TEXT,              /* any valid UTF-8 without NUL bytes */
    PGR_FIELD_ID,                /* a positive decimal bigint, 1..9223372036854775807, no sign,
                                  * blanks or leading zeros */
    PGR_FIELD_JSON,              /* a JSON object */
    PGR_FIELD_ENUM,              /* one of `values` */
} pgr_field_kind;

typedef struct pgr_field {
    const char *name;            /* as the seed's API calls it: "token", "formId" */
    pgr_field_kind kind;
    int max_len;                 /* bytes, < 80 (text[] holds the value and its NUL) */
    bool optional;               /* empty is allowed (and means something to the handler) */
    const char *const *values;   /* PGR_FIELD_ENUM: the allowed values, NULL-terminated */
} pgr_field;

/* What a handler answers. */
typedef struct pgr_response {
    int status;                  /* 200, 201, 400, 409, 410, 500 ... */
    long long id;                /* id in the body (submission id, ...), -1 when none */
    char sqlstate[6];            /* for a 500: the uncaught SQLSTATE */
    char body[80];               /* an HTTP answer's body, its shape: its start, printable, each
                                  * number written '#' (http variants); "" none */
} pgr_response;

/* Result of one statement. Owned by the session; valid until its next pgr_exec. */
typedef struct pgr_res {
    PGresult *pg;                /* NULL when the statement never reached the server */
    bool ok;                     /* command or tuples OK */
    const char *sqlstate;        /* "00000" when ok */
    long rows;                   /* PQntuples for row-returning, PQcmdTuples otherwise */
} pgr_res;

struct pgr_session;
/* The scheduler's hook into the seam (NULL in stress mode: statements run at once).
 * before() returns when the session may send; after() is told the step completed. */
typedef struct pgr_gate_ops {
    void (*before)(void *ctx, struct pgr_session *s, const pgr_step *step);
    void (*after)(void *ctx, struct pgr_session *s, const pgr_step *step);
    void (*done)(void *ctx, struct pgr_session *s);     /* the session's requests are answered */
    void *ctx;
} pgr_gate_ops;

/* One application session: a thread with its own connection.
 * Fields marked [seam] are written only by pgr_exec; [runner] by the mode driving it. */
typedef struct pgr_session {
    int index;                   /* [runner] 0-based; printed as S1, S2, ... */
    PGconn *conn;                /* [runner] own connection */
    int backend_pid;             /* [runner] for lock-wait detection and faults */
    const pgr_gate_ops *gate;    /* [runner] NULL = run at once */
    void *ctx;                   /* [runner] the variant's context (pgr_variant.ctx): what a
                                  * handler that is data, not C (a spec's), runs */
    int64_t step_timeout_ns;     /* [runner] a step stuck longer is a harness error */
    volatile int *interrupted;   /* [runner] set on SIGINT/SIGTERM: abort steps */

    /* per-trial trace */
    pgr_step *trace;             /* [runner] where this trial's steps go (PGR_MAX_STEPS) */
    int nsteps;                  /* [seam] steps this trial (may exceed PGR_MAX_STEPS) */
    int attempt;                 /* [handler, or pgr_retry] current retry attempt */
    bool in_tx;                  /* [seam] inside BEGIN ... COMMIT/ROLLBACK */
    int64_t first_send_ns;       /* [seam] send time of this trial's first statement */
    int64_t http_sent_ns;        /* [target_http] when the request's last byte was written */
    int outside_request;         /* [target_http] 1 while no request is being served (an
                                  * application starting, or between requests): the proxy then
                                  * passes its statements through, unrecorded and ungated */

    /* fault injection: [runner] arms one fault per request, [seam] fires it */
    const pgr_fault *fault;      /* [runner] the run's fault (NULL none) */
    int fault_site;              /* [runner] fire at this eligible site of the request; -1 none */
    bool fault_applies;          /* [runner] lost-commit: the commit reaches the server first */
    int fault_sites;             /* [seam] eligible sites passed in this request */
    int send_first_step;         /* [runner] nsteps when this send of the request began */
    int fault_fired_at;          /* [seam] index of the step it fired at; -1 not (yet) */
    bool conn_lost;              /* [seam] the fault took the connection: every step fails
                                  * (08006, not a harness error) until the runner reconnects */

    /* totals for the run */
    long long statements;        /* [seam] */
    bool infra_error;            /* [seam] connection lost / server gone: not a race */
    char infra_msg[PGR_ERRLEN];  /* [seam] */

    pgr_res res;                 /* [seam] result of the last statement */
    struct pgr_stmt_cache *stmts;/* [seam] prepared statements of this connection */
} pgr_session;

/* ---- the seam ---- */

/* Run one statement of a handler (the only way a handler talks to the database): the seam
 * (seam.h) around the libpq executor. sql and label may be any text (a constant, a
 * statement read from a file): they are interned, and the statement is prepared once per
 * connection by its text. Records the step; waits for the scheduler's grant first when a
 * gate is set.
 * Never fails the process: a SQL error comes back as !ok with its SQLSTATE; a lost
 * connection also sets s->infra_error so the runner reports a harness error. */
pgr_res *pgr_exec(pgr_session *s, const char *label, const char *sql,
                  int nparams, const char *const *params);

#define PGR_NARGS(...) ((int)(sizeof((const char *[]){__VA_ARGS__}) / sizeof(const char *)))
/* PGR_SQL(s, "label", SQL_CONST, param1, param2, ...) — at least one parameter. */
#define PGR_SQL(s, label, sql, ...) \
    pgr_exec((s), (label), (sql), PGR_NARGS(__VA_ARGS__), (const char *[]){__VA_ARGS__})
#define PGR_SQL0(s, label, sql) pgr_exec((s), (label), (sql), 0, NULL)

pgr_res *pgr_begin(pgr_session *s);
pgr_res *pgr_commit(pgr_session *s);
void pgr_rollback(pgr_session *s);   /* no-op outside a transaction */

/* Run `once` (one attempt of a transaction, answering PGR_RETRY after a serialization
 * failure or deadlock it rolled back) up to `attempts` times, with pgr_retry_pause before
 * each retry; s->attempt counts them. Returns the first other answer, or 503 when every
 * attempt asked to retry. */
int pgr_retry(pgr_session *s, int attempts, int (*once)(pgr_session *, const pgr_request *, pgr_response *),
              const pgr_request *req, pgr_response *resp);

/* Before retry s->attempt (>= 1) of a transaction that failed with 40001/40P01: a jittered
 * pause that doubles per attempt (1 ms, 2 ms, ... 64 ms at most). An immediate retry meets
 * again a transaction that is still committing (flushing its commit record: milliseconds
 * with fsync on); no pause under a scheduler (explore, replay), which runs one statement
 * at a time. */
void pgr_retry_pause(const pgr_session *s);

/* An SQL error the handler does not catch: roll back, answer 500 (as the app would). */
int pgr_uncaught(pgr_session *s, const pgr_res *r, pgr_response *resp);
/* 40001 serialization failure or 40P01 deadlock: a transaction worth retrying. */
bool pgr_retryable(const pgr_res *r);
bool pgr_is(const pgr_res *r, const char *sqlstate);

/* Field accessors on the last result (row 0 unless said). NULL/-1 when absent or NULL. */
const char *pgr_val(const pgr_res *r, int row, int col);
long long pgr_int(const pgr_res *r, int row, int col);
bool pgr_isnull(const pgr_res *r, int row, int col);

/* ---- scenarios ---- */

typedef struct pgr_trial {
    long long key;               /* unique across runs on one schema */
    int kase;                    /* index into scenario->cases */
    int nsessions;
    pgr_response resp[PGR_MAX_SESSIONS];       /* each session's (last) answer */
    pgr_response first[PGR_MAX_SESSIONS];      /* each session's first answer (== resp if sent once) */
    int sends[PGR_MAX_SESSIONS];               /* times each session sent its request */
    pgr_step *trace;             /* [nsessions][PGR_MAX_STEPS] */
    int nsteps[PGR_MAX_SESSIONS];
    int64_t first_send_ns[PGR_MAX_SESSIONS];   /* [runner] for the release skew */
    int64_t http_sent_ns[PGR_MAX_SESSIONS];    /* [runner] an HTTP request's last byte: the spread */
    /* faults: the plan (set before the trial) and what happened */
    short fault_site[PGR_MAX_SESSIONS];        /* eligible site to fire at; -1 none */
    bool fault_applies[PGR_MAX_SESSIONS];      /* lost-commit: the commit goes through */
    short fault_step[PGR_MAX_SESSIONS];        /* [runner] step the fault fired at; -1 none */
    short fault_status[PGR_MAX_SESSIONS];      /* [runner] the faulted attempt's answer; 0 none
                                                * reached the client (timeout, lost commit) */
    bool fault_retried[PGR_MAX_SESSIONS];      /* [runner] the client sent the request again */
    short fault_sites_seen[PGR_MAX_SESSIONS];  /* [runner] eligible sites the first send passed */
    bool fault_dirty[PGR_MAX_SESSIONS];        /* [runner] the faulted attempt failed (5xx) yet
                                                * changed the schema (judged at one session) */
    int64_t latency_ns[PGR_MAX_SESSIONS];      /* [runner] handler start to answer */
    long long trial_no;          /* [runner] 0-based within the run */
    bool violated;               /* [check] some invariant broke in this trial */
    int first_invariant;         /* [check] the first one that broke */
    char why[320];               /* [check] its explanation */
} pgr_trial;

typedef int (*pgr_handler)(pgr_session *s, const pgr_request *req, pgr_response *resp);

typedef struct pgr_variant {
    const char *name;            /* "original" | "proposed" | "recommended" | ... */
    pgr_kind kind;
    const char *ddl;             /* run after the scenario's ddl in this variant's schema */
    const char *ddl_as_written;  /* the seed's own DDL when it does not run on PostgreSQL:
                                  * tried first, its error kept for the report; `ddl` is
                                  * then the closest faithful form. NULL when not needed. */
    const char *rollback_as_written; /* the seed's own rollback plan (SQL that undoes its
                                  * migration): tried after `ddl`, in a savepoint rolled back
                                  * whatever happens, its verdict kept for the report. NULL
                                  * when the seed has none for this variant. */
    pgr_handler handler;
    pgr_verdict expect[PGR_NISO];/* what CI holds it to, per isolation level (measured) */
    int race_from[PGR_NISO];     /* a PGR_RACE expectation needs at least this many sessions
                                  * (0 = any); with fewer, the variant is expected safe (a retry
                                  * loop that absorbs a bounded number of concurrent losers) */
    int race_rare_below[PGR_NISO];/* a PGR_RACE expectation in a stress cell with fewer
                                  * sessions than this is PGR_EITHER: the race happens there
                                  * (measured) but is rare enough that a cell of a few hundred
                                  * trials may miss it, so race and safe both match; from this
                                  * many sessions on it is certain and expected. 0 = never rare.
                                  * Say in a comment how rare it was, and keep a test that
                                  * finds it */
    bool explore_blind[PGR_NISO];/* the race happens only inside one statement (two
                                  * concurrent executions of it), which statement-level
                                  * exploration cannot produce: explore expects safe there */
    const char *summary;         /* one line: what this variant does */
    /* What CI holds it to under each fault (read committed, the scenario's first case, a
     * client that retries once); PGR_SAFE = survives. Measured, like expect. */
    pgr_verdict fault_expect[PGR_NFAULTS];
    void *ctx;                   /* what the handler needs beyond C (a spec's steps); the
                                  * session carries it (pgr_session.ctx). NULL for C handlers */
    const char *client;          /* a program serves the requests, not handler: the command
                                  * (`client NAME { CMD }`, `--client NAME=CMD`); its sessions
                                  * come through the proxy (target_program.c). NULL: handler */
    const struct pgr_http_variant *http;   /* an application serves them over HTTP
                                  * (`http NAME { REQUEST }`, target_http.c); NULL: not */
} pgr_variant;

/* An HTTP variant's request template: :key, :session, :case are substituted at send. */
typedef struct pgr_http_request {
    const char *method, *path;
    const char *const *headers;  /* "Name: value" */
    int nheaders;
    const char *body;            /* NULL: none */
} pgr_http_request;

/* An HTTP variant: the application (one instance per session, app.c) and its requests. */
typedef struct pgr_http_variant {
    const char *app;             /* the command that starts it (`app { CMD }`, --app CMD) */
    const char *id_path;         /* the answer's id in its JSON body; NULL none */
    const pgr_http_request *requests;      /* session i sends requests[i % nrequests] */
    int nrequests;
} pgr_http_variant;

/* Served through the wire (a program, an application): its sessions' statements come
 * through the proxy, not a connection of the pool's. */
static inline bool pgr_variant_wire(const pgr_variant *v) { return v->client || v->http; }

typedef struct pgr_case {
    const char *name;            /* "double_submit", "missing_invite", ... */
    int weight;                  /* share of trials */
    const char *summary;
} pgr_case;

/* Per-batch context for prepare() and check(): admin connection and the trials. */
struct pgr_scenario;
typedef struct pgr_scenario pgr_scenario;
typedef struct pgr_batch {
    const pgr_scenario *sc;
    void *ctx;                   /* the scenario's context (pgr_scenario.ctx) */
    PGconn *admin;               /* search_path set to the variant's schema */
    pgr_trial *trials;
    int ntrials;
    int nsessions;
    long long key_lo, key_hi;    /* inclusive range of the batch's keys */
    /* filled by check() through pgr_violation() */
    struct pgr_tally *tally;
    char err[PGR_ERRLEN];
} pgr_batch;

/* A claim the seed makes about its fix, judged by measurement: it holds when invariant
 * `invariant` was never violated by variant `variant` in any cell that ran. */
typedef struct pgr_claim {
    const char *text;            /* the seed's words, quoted */
    const char *variant;         /* "proposed" */
    int invariant;               /* index into the scenario's invariants */
} pgr_claim;

struct pgr_scenario {
    const char *name;
    const char *seed;            /* "001"; NULL for a pattern that is not from a seed (a team's own) */
    const char *title;
    const char *ddl;             /* tables of the pattern; runs once, into the pool's own new
                                  * schema (so a spec's plain CREATE TABLE works) */
    const pgr_variant *variants;
    int nvariants;
    const pgr_case *cases;
    int ncases;
    const char *const *invariants;   /* names a person understands */
    int ninvariants;
    const pgr_claim *claims;     /* the seed's claims about its fix, to mark held or broken */
    int nclaims;
    /* Invariants (bit i = invariant i) about the exact status every request gets ("exactly
     * one 201"): they assume every answer arrives, so they are not judged in a trial where a
     * fault lost an answer and the client retried. Invariants on the stored state and on
     * the ids the client saw are always judged. */
    unsigned answer_invariants;
    /* Cases (bit i = case i) whose request is meant to fail, a 5xx being its right answer:
     * the retry-after-fault invariant does not apply to them. */
    unsigned failing_cases;
    /* Insert each trial's rows (one or a few statements for the whole batch). 0 or -1+err. */
    int (*prepare)(pgr_batch *b);
    /* The request session `session` sends in trial t. ctx is the scenario's. */
    void (*request)(void *ctx, const pgr_trial *t, int session, pgr_request *req);
    /* Check every invariant of every trial of the batch (batched queries). 0 or -1+err. */
    int (*check)(pgr_batch *b);
    const pgr_field *fields;     /* what request() fills: fields[i] is text[i] */
    int nfields;
    void *ctx;                   /* what its callbacks need beyond C (a loaded spec); given to
                                  * request() and, through the batch, to prepare() and check() */
};

/* The harness's own invariants under faults (negative indexes in violations). */
#define PGR_INV_RETRY (-2)
#define PGR_INV_RETRY_NAME "after a fault, the client's retry gets a definite answer (never 5xx)"
#define PGR_INV_ATOMIC (-3)
#define PGR_INV_ATOMIC_NAME "a request that failed (5xx) left nothing behind (nothing half-committed)"
const char *pgr_invariant_name(const pgr_scenario *sc, int inv);

/* Record that trial t broke invariant inv; the first explanation per trial is kept. An
 * answer invariant (scenario->answer_invariants) of a trial whose answer was lost to a
 * fault is not judged. */
void pgr_violation(pgr_batch *b, const pgr_trial *t, int inv, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Admin-side query for prepare/check (not through the seam). NULL + b->err on error. */
PGresult *pgr_admin(pgr_batch *b, const char *sql, int nparams, const char *const *params);

/* The usual prepare(): one statement for the whole batch, with $1 = first key, $2 = last
 * key, $3 = one letter per trial, code[its case] ('-' where code has none), and, when
 * nparams is 4, $4 = the session count. 0, or -1 with b->err. */
int pgr_prepare_by_case(pgr_batch *b, const char *sql, const char *code, int nparams);

/* The web framework's body parsing and schema validation (payload.c): 0 when every
 * declared field of req is valid (raw fields are then copied into text[]), else the
 * status to answer, 400 (malformed) or 413 (longer than the field's max), with the reason
 * in why (may be NULL). */
int pgr_request_validate(const pgr_scenario *sc, pgr_request *req, char *why, size_t len);

/* ---- the registry: every scenario this process knows, in registration order ---- */

/* Add sc (it must outlive its use). 0, or -1 with err: a name already taken or malformed,
 * no variant, no case, a variant without a handler, a callback missing. */
int pgr_register(const pgr_scenario *sc, char *err, size_t errlen);
/* The seven seed scenarios, in seed order (registry.c). 0, or -1 with err. */
int pgr_register_builtins(char *err, size_t errlen);
int pgr_scenario_count(void);
const pgr_scenario *pgr_scenario_at(int i);
const pgr_scenario *pgr_find_scenario(const char *name);

/* What a statement does, for the explorer's independence relation and for faults. */
enum { PGR_SQL_NOOP, PGR_SQL_READ, PGR_SQL_WRITE };
int pgr_sql_kind(const char *sql);
bool pgr_sql_is_commit(const char *sql);     /* COMMIT or END */
bool pgr_sql_is_rollback(const char *sql);   /* ROLLBACK or ABORT */

/* Small utilities */
int64_t pgr_now_ns(void);
/* splitmix64's output function: a well-mixed 64-bit value of x (x + k*golden steps it). */
uint64_t pgr_splitmix64(uint64_t x);
void pgr_fmt_ll(char *buf, long long v);   /* buf >= 24 */
/* Copy src (NULL: "") into dst of cap bytes, cut to fit, always terminated. */
void pgr_copy_trunc(char *dst, size_t cap, const char *src);
/* Block SIGINT, SIGTERM and SIGHUP in this thread (old: the mask to restore), so that a
 * thread started now leaves them to the main thread, which handles them. */
void pgr_block_run_signals(sigset_t *old);
/* A target's harness error on session s: "session S<n>: <what>: <message>" (what: "client
 * 'NAME'", "http variant 'NAME'"), unless s has one already; the run then stops with exit 2. */
void pgr_target_error(pgr_session *s, const char *what, const char *fmt, va_list ap);

#endif
