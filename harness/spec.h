/*
 * spec.h — spec files: PostgreSQL's isolationtester format, read as it is, and pgrace's
 * extensions. spec_parse.c fills a pgr_spec from text (the parser never touches a server);
 * spec_isolation.c runs its permutations as isolationtester does (`pgrace isolation`);
 * spec_scenario.c turns its variants into a registered scenario (every other mode).
 *
 * The grammar. isolationtester's, unchanged (a spec from PostgreSQL's src/test/isolation
 * parses as it is):
 *
 *   spec        := item*
 *   item        := 'setup' SQL | 'teardown' SQL | session | permutation
 *                | trial | variant | client | http | app | model | case | invariant | statuses
 *                | expect (pgrace)
 *   session     := 'session' NAME '{'? ('setup' SQL)? step+ ('teardown' SQL)? '}'?
 *                  (isolationtester 15 takes `session s1 setup {..} step ..`; the braced
 *                  form, both braces or none, is pgrace's)
 *   step        := 'step' NAME SQL
 *   permutation := 'permutation' pstep+
 *   pstep       := NAME | NAME '(' blocker (',' blocker)* ')'
 *   blocker     := '*' | NAME | NAME 'notices' INT
 *   SQL         := '{' text up to the first '}' '}'     (no nesting, as isolationtester;
 *                  spaces, tabs and CRs right after '{' and right before '}' are dropped,
 *                  newlines kept)
 *   NAME        := identifier [A-Za-z_][A-Za-z0-9_]* | "quoted string"
 *                  (as isolationtester: bytes 0x80-0xff also, '$' after the first; "" is a
 *                  quote inside a quoted name; notices, permutation, session, setup, step
 *                  and teardown are reserved; pgrace's words are not: spec_parse.c)
 *   comments    := '#' to end of line
 *
 * pgrace's extensions (a file that uses none of them is isolationtester's alone):
 *
 *   trial       := 'trial' SQL            per-trial setup: :key is the trial's fresh key,
 *                                         run once per trial in a batch, so thousands of
 *                                         trials share one schema without a pgrace column
 *   variant     := 'variant' NAME ('kind' KIND)? '{' ('setup' SQL)? hstep+ '}'
 *   client      := 'client' NAME ('kind' KIND)? '{' COMMAND '}'   a program is the variant:
 *                  run by /bin/sh once per request (target_program.c); no '}' in COMMAND
 *                  KIND := original | proposed | recommended
 *   http        := 'http' NAME ('kind' KIND)? ('id' PATH)? ('setup' SQL)? REQUEST+
 *                  a request to the application is the variant (target_http.c); session i
 *                  sends REQUEST ((i-1) mod k)+1. PATH: a word or "quoted", dotted, into the
 *                  answer's JSON body (`submission.id`, "items.0.id")
 *   REQUEST     := '{' METHOD /PATH NL (HEADER: VALUE NL)* (NL BODY)? '}'   an HTTP request
 *                  as a .http file writes it; braces inside the body (JSON) are matched, and
 *                  ignored inside its strings; :key, :session, :case substituted at send
 *   app         := 'app' '{' COMMAND '}'  how the application starts (webapp.c): one instance
 *                  per session, PORT and DATABASE_URL (its session's proxy listener) set
 *   model       := 'model' NAME           the built-in scenario these variants model (by
 *                  variant name): `pgrace run` puts both side by side
 *   hstep       := 'step' NAME SQL rule*
 *   rule        := 'if' cond '->' outcome | '->' outcome
 *                  (a bare '->' follows success only: a failed step is taken by
 *                  'if error' or is uncaught, so `COMMIT -> 201` never answers 201 for a
 *                  COMMIT that failed)
 *   cond        := 'rows' OP INT | 'error' SQLSTATE? | COLUMN | 'not' COLUMN
 *                | COLUMN OP ('value' | INT)           OP := = | != | < | > | <= | >=
 *   outcome     := STATUS ('id' COLUMN)? | 'next' | 'goto' NAME | 'retry' INT?
 *                  COLUMN: of this step's first row, or STEP.COLUMN of an earlier step's
 *                  STATUS an HTTP status 100..599: the request's answer, handler ends
 *   case        := 'case' NAME ('weight' INT)? ('sends' INT)? SQL?
 *                  SQL: the case's own per-trial setup instead of `trial` (a missing row:
 *                  `case missing weight 1 { }`); sends: the client sends its request again
 *                  after the answer (a retry)
 *   invariant   := 'invariant' STRING SQL   rows it returns are violations, each explained
 *                | 'invariant' STRING 'statuses' STATUS+      every answer is one of these
 *                | 'invariant' STRING 'exactly' 'one' STATUS  exactly one answer is it
 *                | 'invariant' STRING 'same' 'id'             every 2xx names the same id
 *                  (answers: each session's, and in a `sends` case its first send's too)
 *   expect      := 'expect' NAME ('explore' | 'fault' FAULT)? VERDICT ('at' LEVEL)* ('sessions' INT)?
 *                  ('case' NAME)?
 *                  VERDICT := race | safe; no expectation: the variant must be safe;
 *                  'explore': what exploration finds where stress finds more (a race inside
 *                  one statement); 'fault FAULT' (timeout_retry, kill_backend, error_at,
 *                  lost_commit, or quoted): the fault matrix's verdict
 *
 * In a step's or a block's SQL, parameters: :key (the trial's key), :session (1-based),
 * :NAME.COLUMN (the first row of an earlier step of this request), :case (the case's
 * name). `::` casts are left alone.
 */
#ifndef PGRACE_SPEC_H
#define PGRACE_SPEC_H

#include "pgrace.h"

#include <stddef.h>

/* Where something stood in the file (1-based), for errors "FILE:LINE:COL: what". */
typedef struct pgr_spec_pos { int line, col; } pgr_spec_pos;

/* ---- isolationtester's part ---- */

typedef struct pgr_spec_step {
    char *name;
    char *sql;                       /* the block's text, as isolationtester keeps it */
    pgr_spec_pos pos;
    int session;                     /* index of its session */
    bool used;                       /* named by a permutation (isolationtester warns if not) */
} pgr_spec_step;

typedef struct pgr_spec_session {
    char *name;
    char *setup;                     /* NULL: none */
    char *teardown;
    pgr_spec_step *steps;
    int nsteps;
    pgr_spec_pos pos;
} pgr_spec_session;

typedef struct pgr_spec_blocker {
    char *step;                      /* NULL for '*' */
    int notices;                     /* 'notices N': wait for N notices of that step; 0 none */
    bool by_notices;                 /* 'notices N' was given (N may be 0: never blocks) */
    int session, index;              /* resolved by the parser: the blocking step is
                                      * sessions[session].steps[index]; -1 for '*' */
    pgr_spec_pos pos;
} pgr_spec_blocker;

typedef struct pgr_spec_pstep {
    char *name;
    int session, step;               /* resolved by the parser */
    pgr_spec_blocker *blockers;
    int nblockers;
    pgr_spec_pos pos;
} pgr_spec_pstep;

typedef struct pgr_spec_permutation {
    pgr_spec_pstep *steps;
    int nsteps;
    pgr_spec_pos pos;
} pgr_spec_permutation;

/* ---- pgrace's part ---- */

typedef enum { PGR_COND_ALWAYS, PGR_COND_ROWS, PGR_COND_ERROR, PGR_COND_TRUE, PGR_COND_FALSE,
               PGR_COND_COMPARE } pgr_cond_kind;
typedef enum { PGR_OP_EQ, PGR_OP_NE, PGR_OP_LT, PGR_OP_GT, PGR_OP_LE, PGR_OP_GE } pgr_cond_op;
typedef enum { PGR_OUT_STATUS, PGR_OUT_NEXT, PGR_OUT_GOTO, PGR_OUT_RETRY } pgr_outcome_kind;

typedef struct pgr_spec_rule {
    pgr_cond_kind cond;
    pgr_cond_op op;
    char *column;                    /* TRUE, FALSE, COMPARE */
    char *value;                     /* COMPARE: the literal; ERROR: the SQLSTATE or NULL (any) */
    long long number;                /* ROWS; COMPARE when numeric */
    bool numeric;
    pgr_outcome_kind outcome;
    int status;                      /* STATUS */
    char *id_column;                 /* STATUS: the id in the answer's body; NULL none */
    char *target;                    /* GOTO: a step of the same variant */
    int target_step;                 /* GOTO, resolved */
    int attempts;                    /* RETRY: at most this many attempts in all (default 10) */
    pgr_spec_pos pos;
} pgr_spec_rule;

typedef struct pgr_spec_hstep {
    char *name;
    char *sql;
    pgr_spec_rule *rules;
    int nrules;
    pgr_spec_pos pos;
} pgr_spec_hstep;

/* One HTTP request of an http variant, placeholders (:key, :session, :case) unsubstituted. */
typedef struct pgr_spec_request {
    char *method;                    /* GET, POST, ... */
    char *path;                      /* /..., no blank */
    char **headers;                  /* "Name: value" */
    int nheaders;
    char *body;                      /* NULL: none */
    pgr_spec_pos pos;
} pgr_spec_request;

typedef struct pgr_spec_variant {
    char *name;
    pgr_kind kind;                   /* default: original for the first, proposed between,
                                      * recommended for the last (2+ variants) */
    bool kind_given;
    char *setup;                     /* the variant's own DDL after the spec's setup; NULL none */
    pgr_spec_hstep *steps;
    int nsteps;
    char *client;                    /* `client NAME { CMD }`: a program serves it (no steps) */
    bool http;                       /* `http NAME ... { REQUEST }`: the application serves it */
    pgr_spec_request *requests;      /* http: session i sends requests[i % nrequests] */
    int nrequests;
    char *id_path;                   /* http: the answer's id in its JSON body; NULL none */
    pgr_spec_pos pos;
} pgr_spec_variant;

typedef struct pgr_spec_case {
    char *name;
    int weight;                      /* default 1 */
    int sends;                       /* default 1 */
    char *trial;                     /* NULL: the spec's `trial` */
    pgr_spec_pos pos;
} pgr_spec_case;

typedef enum { PGR_INV_SQL, PGR_INV_STATUSES, PGR_INV_EXACTLY_ONE, PGR_INV_SAME_ID } pgr_inv_kind;

typedef struct pgr_spec_invariant {
    char *name;
    pgr_inv_kind kind;
    char *sql;                       /* SQL */
    int *statuses;                   /* STATUSES, EXACTLY_ONE (one) */
    int nstatuses;
    pgr_spec_pos pos;
} pgr_spec_invariant;

typedef struct pgr_spec_expect {
    char *variant;
    bool explore;                    /* 'expect V explore safe': what exploration finds (a race
                                      * inside one statement, which exploration cannot produce) */
    pgr_fault_kind fault;            /* 'expect V fault KIND race': under that fault; NONE: none */
    pgr_verdict verdict;
    unsigned levels;                 /* bit per pgr_isolation; 0 = every level */
    int sessions;                    /* 0 = any */
    char *kase;                      /* NULL = any */
    pgr_spec_pos pos;
} pgr_spec_expect;

typedef struct pgr_spec {
    char *path;                      /* as given */
    char *name;                      /* the file's base name without .spec, made a valid
                                      * scenario name (a-z, 0-9, _) */
    uint64_t hash;                   /* of the file's bytes: schedule files name it */
    char **setups;
    int nsetups;
    char *teardown;
    pgr_spec_session *sessions;
    int nsessions;
    pgr_spec_permutation *perms;
    int nperms;
    /* pgrace */
    char *trial;
    pgr_spec_variant *variants;
    int nvariants;
    pgr_spec_case *cases;
    int ncases;
    pgr_spec_invariant *invariants;
    int ninvariants;
    pgr_spec_expect *expects;
    int nexpects;
    char *app;                       /* `app { CMD }`: starts the application; NULL none */
    char *model;                     /* `model SCENARIO`; NULL none */
    pgr_spec_pos app_pos, model_pos;
} pgr_spec;

/* Parse a spec from memory (path names it in errors). 0, or -1 with err as one line
 * "PATH:LINE:COL: what is wrong". Bytes that are not text (NUL, other control characters
 * than tab/CR/LF) are an error. *out is filled and must be freed with pgr_spec_free. */
int pgr_spec_parse(const char *path, const char *text, size_t len, pgr_spec *out, char *err, size_t errlen);
/* Read and parse a file. */
int pgr_spec_load(const char *path, pgr_spec *out, char *err, size_t errlen);
void pgr_spec_free(pgr_spec *s);

#endif
