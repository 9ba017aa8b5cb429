/*
 * scheduler.h — private to the explorer's files (scheduler.c, explore.c, schedule_file.c,
 * explain.c, minimize.c, replay.c, fuzz_entry.c); scenarios and main use explore.h.
 * The session states, the scheduler's state (explorer), what one schedule did (sched_run),
 * a schedule file's contents (sched_file), and the functions those files share.
 */
#ifndef PGRACE_SCHEDULER_H
#define PGRACE_SCHEDULER_H

#include "explore.h"

#include <pthread.h>

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

/* ---- the dependency relation (footprint.c) ---- */

/* A step's footprint: sets of relations (bits of the explorer's fp_table). */
typedef struct pgr_fp {
    uint64_t read;                  /* relations whose committed state it reads */
    uint64_t lock;                  /* relations it writes or locks (held until its transaction ends) */
    uint64_t nklock;                /* relations it writes by an UPDATE of no key: FOR NO KEY UPDATE */
    uint64_t klock;                 /* relations whose rows its FK checks lock FOR KEY SHARE */
    uint64_t pub;                   /* relations whose writes it makes visible (commit, autocommit) */
    uint64_t sread, swrite;         /* SERIALIZABLE: its transaction's reads and writes so far,
                                     * this step's included (SSI's conflicts are per transaction) */
    unsigned flags;                 /* FP_* */
} pgr_fp;
enum {
    FP_NOOP = 1,                    /* BEGIN, SET, SAVEPOINT: commutes with every step */
    FP_ALL = 2,                     /* unresolvable: dependent on every step but a no-op */
    FP_SNAP = 4,                    /* takes its transaction's snapshot (RR, SERIALIZABLE) */
    FP_SER = 8,                     /* in a SERIALIZABLE transaction (SSI's predicate locks) */
    FP_SER_END = 16,                /* ends a SERIALIZABLE transaction that read or wrote something
                                     * (SSI may abort it or another) */
};
typedef struct fp_table fp_table;   /* statements, relations and sessions' transactions */

/* A table on the monitor connection (its search_path set to schema); NULL out of memory. */
fp_table *pgr_fp_new(PGconn *monitor, const char *schema, pgr_isolation iso);
void pgr_fp_free(fp_table *ft);
/* Every session outside a transaction (a schedule starts). */
void pgr_fp_reset(fp_table *ft);
/* The footprint of session's next statement sql, were it granted now. A catalog question
 * that fails makes it FP_ALL. */
pgr_fp pgr_fp_pending(fp_table *ft, int session, const char *sql);
/* Session's statement sql was granted: its transaction's state moves on. */
void pgr_fp_granted(fp_table *ft, int session, const char *sql);
/* May two steps of different sessions not commute? */
bool pgr_fp_dependent(const pgr_fp *a, const pgr_fp *b);

typedef struct node {               /* one decision of the depth-first search */
    uint64_t ready, sleep, done;
    uint64_t backtrack;             /* DPOR: the sessions whose step must be tried here */
    int chosen;
    unsigned char kind[PGR_MAX_SESSIONS];               /* sleep sets alone: the old relation */
    pgr_fp fp[PGR_MAX_EXPLORE_SESSIONS];                /* DPOR: each ready session's next step */
} node;

/* The executed prefix of a schedule as DPOR sees it: each grant's session and footprint,
 * and vector clocks of happens-before (grant index + 1 of the latest event of each session
 * that precedes it; 0 none). */
typedef struct dpor_trace {
    int sess[PGR_MAX_GRANTS];
    pgr_fp fp[PGR_MAX_GRANTS];
    unsigned short vc[PGR_MAX_GRANTS][PGR_MAX_EXPLORE_SESSIONS];
    unsigned short last_vc[PGR_MAX_EXPLORE_SESSIONS][PGR_MAX_EXPLORE_SESSIONS];
    int n;
} dpor_trace;

typedef struct sched_run {          /* what one schedule did */
    int grants[PGR_MAX_GRANTS];     /* session granted, in order */
    uint64_t ready[PGR_MAX_GRANTS]; /* who was ready at that grant */
    bool waited[PGR_MAX_GRANTS];    /* that statement was seen waiting on a lock */
    int n;
    pgr_fault_at fat;               /* the fault of this schedule (kind NONE: none) */
    int diverged_at;                /* forced schedule: first grant not possible; -1 none */
    bool pruned;                    /* exhaustive: every enabled choice was asleep */
} sched_run;

/* The scheduler's state for one pool of gated sessions. Who writes each field:
 *   [life]   pgr_explorer_new, pgr_explorer_open, pgr_explorer_close (scheduler.c)
 *   [gate]   under mu: the gate ops in the session threads and the coordinator
 *            (pgr_sched_run, quiesce, abort_trial in scheduler.c)
 *   [caller] the one about to run a schedule: pgr_explore (explore.c), pgr_replay,
 *            pgr_fuzz_one, pgr_sched_run_forced
 *   [choose] pct_reset before a schedule; while it runs, under mu, whoever decides
 *            (decide_locked: the coordinator, or a delegating session thread)
 * Everyone else only reads. */
typedef struct explorer {
    pgr_pool *pool;                             /* [life] */
    int n;                                      /* [life] sessions */
    pthread_mutex_t mu;                         /* [life] */
    pthread_cond_t cv;                          /* [life] a session changed state */
    pthread_cond_t cv_s[PGR_MAX_SESSIONS];      /* [life] session i was granted */
    sess_state st[PGR_MAX_SESSIONS];            /* [gate] */
    bool granted[PGR_MAX_SESSIONS];             /* [gate] set by a grant, cleared by the session */
    bool abort;                                 /* [gate] let every session through (harness error) */
    const char *pending_sql[PGR_MAX_SESSIONS];  /* [gate] the statement the session parked before */
    int current_grant[PGR_MAX_SESSIONS];        /* [gate] grant index of the session's in-flight step */
    int64_t grant_ns[PGR_MAX_SESSIONS];         /* [gate] when it was granted */
    PGconn *monitor;                            /* [life] */
    pgr_gate_ops ops;                           /* [life] */
    volatile int *interrupted;                  /* [life] */
    pgr_fault fault;                            /* [life] the pool's fault (kind NONE: none) */
    double step_timeout_s;                      /* [caller, before open] 0: the pool's default */
    pgr_fault_at fat;                           /* [caller] where it fires in the next schedule */
    /* strategy */
    pgr_strategy strategy;                      /* [caller] pgr_explore; pgr_sched_run_forced
                                                 * overrides it for its run */
    uint64_t rng;                               /* [life] seeded; pgr_explore mixes its seed in;
                                                 * pgr_sched_rnd advances it */
    int depth;                                  /* [caller] pgr_explore (default 2); pgr_fuzz_one
                                                 * for an input's PCT tail */
    int k_estimate;                             /* [caller] pgr_explore (default 8); pgr_fuzz_one */
    int prio[PGR_MAX_SESSIONS];                 /* [choose] */
    int change_at[8];                           /* [choose] */
    node *stack;                                /* [choose] exhaustive; between schedules
                                                 * pgr_explore's DFS backtracks on it */
    pgr_reduction reduction;                    /* [caller] exhaustive: dpor, sleep sets, none */
    fp_table *ft;                               /* [life] footprints (exhaustive, not sleep) */
    dpor_trace *trace;                          /* [choose] the schedule so far (when ft) */
    int nstack;                                 /* [choose], and pgr_explore's DFS */
    const uint8_t *bytes;                       /* [caller] fuzzing: decision g = bytes[g] among ready */
    size_t nbytes;
    bool tail_pct;                              /* [caller] fuzzing: past the bytes, PCT (its
                                                 * priorities, depth and k from tail_seed)
                                                 * instead of a uniform choice */
    uint64_t tail_seed;                         /* [caller] fuzzing: decisions past the bytes come from
                                                 * a generator seeded with this (0: the lowest ready) */
    const int *forced;                          /* [caller] forced prefix (DFS path, replay, minimize) */
    int nforced;
    bool nonpreemptive_after;                   /* [caller] after the forced prefix: keep the last session */
    bool wire;                                  /* [life] the sessions are programs' (v->client):
                                                 * one between two statements is busy, not blocked */
    bool inflight[PGR_MAX_SESSIONS];            /* [gate] its granted statement has not completed */
    int64_t rtt_ns;                             /* [quiesce] a granted statement's usual time to
                                                 * come back by itself (moving average) */
    sched_run *run_out;                         /* [gate] the schedule running, while sessions may
                                                 * decide (delegate); NULL otherwise */
    bool delegate;                              /* [gate] a session that parks or finishes when no
                                                 * other is running or blocked makes the next
                                                 * decision itself, saving the coordinator's hop
                                                 * (every gated pool but programs') */
    bool track;                                 /* [gate] this schedule keeps footprints and the
                                                 * DPOR trace */
    pthread_mutex_t monitor_mu;                 /* [life] the monitor connection: the coordinator's
                                                 * blocked question, a decider's catalog question */
} explorer;

static inline int pgr_sched_lowest(uint64_t m) { return m ? __builtin_ctzll(m) : -1; }

/* ---- the scheduler (scheduler.c) ---- */

/* The canonical form of the last schedule's Mazurkiewicz trace under the dependency
 * relation, hashed (equal for schedules that differ only in the order of independent steps). */
uint64_t pgr_sched_trace_hash(const explorer *x);
/* The next number of x's random stream (xorshift64*). */
uint64_t pgr_sched_rnd(explorer *x);
/* Run trial t under the scheduler. 0, or -1 with err (harness error). */
int pgr_sched_run(explorer *x, pgr_trial *t, sched_run *out, pgr_result *res);
/* Run one forced schedule on a fresh trial of the pool; the trial is prepared and checked.
 * t_out receives the checked trial (trace pointer valid until the next run). */
int pgr_sched_run_forced(explorer *x, const int *grants, int n, int kase, long long trial_no,
                         pgr_result *res, pgr_trial **t_out, sched_run *sr);

/* NULL when out of memory. */
explorer *pgr_explorer_new(volatile int *interrupted);
void pgr_explorer_free(explorer *x);
/* Open the pool (sessions gated by x) and the monitor connection. 0, or -1 with res->error. */
int pgr_explorer_open(explorer *x, const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                      int sessions, pgr_isolation iso, const pgr_fault *fault, pgr_result *res);
/* Close the monitor and the pool (its statement counts go to res); x can be freed or reopened. */
void pgr_explorer_close(explorer *x, pgr_result *res);

/* ---- explaining a schedule (explain.c) ---- */

/* The step grant g of sr ran, and its session; NULL when the trace does not hold it. */
const pgr_step *pgr_sched_step_of(const pgr_trial *t, const sched_run *sr, int g, int *session);
/* The read that saw the state from before another session's write committed ("" none). */
void pgr_sched_explain_order(const pgr_trial *t, const sched_run *sr, char *out, size_t len);
/* Context switches: grants to another session while the last one was still ready. */
int pgr_sched_count_switches(const sched_run *sr);
/* The interleaving as a session-by-session table, then the explanation. */
void pgr_sched_describe(const pgr_trial *t, const sched_run *sr, char *out, size_t len);

/* ---- minimizing a failing schedule (minimize.c) ---- */

/* The shortest forced prefix of failing that still breaks invariant inv: its trial (best
 * filled), or NULL (none did, or a harness error in res->error). */
pgr_trial *pgr_sched_minimize(explorer *x, const sched_run *failing, int kase, int inv, long long *trial_no,
                              pgr_result *res, sched_run *best);
/* failing on a pool one session smaller: that pool's explorer (failing rewritten) when inv
 * still breaks, else NULL. */
explorer *pgr_sched_fewer_sessions(explorer *x, const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                                   pgr_isolation iso, sched_run *failing, int kase, int inv, long long *trial_no);

/* ---- schedule files (schedule_file.c) ---- */

typedef struct sched_file {
    char scenario[64], variant[64], kase[64], violation[200], explanation[400];
    char spec[1024];                /* the spec file the scenario came from; "" a C one */
    char client[1024];              /* the program that is the variant ("" a handler) */
    unsigned long long spec_hash;   /* its content's hash when the schedule was saved */
    pgr_isolation iso;
    int sessions;
    int grants[PGR_MAX_GRANTS];
    int ngrants;
    pgr_fault_at fat;
} sched_file;

/* Write trial t's schedule sr, with table as a comment, to path. 0, or -1 (errno). */
int pgr_schedule_write(const char *path, const pgr_scenario *sc, const pgr_variant *v, pgr_isolation iso,
                       const pgr_trial *t, const sched_run *sr, const char *table);
/* Read a schedule file. 0, or -1 with err naming the file (and the line). */
int pgr_schedule_read(const char *path, sched_file *sf, char *err, size_t errlen);

#endif
