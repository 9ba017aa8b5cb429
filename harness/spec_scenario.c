/*
 * spec_scenario.c — a spec file's variants as a registered scenario, so that every mode
 * (stress, explore, replay, the fuzzer, run, ci, the reports) takes it as it takes a C one.
 *
 * The scenario's context is the compiled spec: each step's SQL with its :parameters turned
 * into $1..$n (prepared once per connection like any statement, by the seam), the rules
 * after it, the cases' per-trial setup, the invariants. One handler interprets a variant:
 * run a step through pgr_exec, take the first rule whose condition holds, and go on, jump,
 * retry the transaction or answer. An error no rule takes is the application's uncaught
 * error: a rollback and 500, as a C handler's pgr_uncaught.
 *
 * Trials never touch the user's schema design: a trial's setup is the spec's `trial`
 * block with :key replaced by the trial's fresh key, sent for a whole batch in one round
 * trip; an SQL invariant is the user's query with :key replaced, one per trial, also sent
 * in one round trip per batch. The keys come from the schema's run sequence, so trials of
 * one run and of every run on the same schema never share a row.
 */
#include "conn.h"
#include "spec_scenario.h"
#include "results.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPEC_MAX_PARAMS 16
#define SPEC_MAX_COLS 16

typedef enum { P_KEY, P_SESSION, P_CASE, P_STEPCOL } param_kind;

typedef struct param {
    param_kind kind;
    int step;                        /* P_STEPCOL: the step of this variant */
    char *column;
} param;

typedef struct cstep {               /* a variant's step, compiled */
    const pgr_spec_hstep *h;
    char *sql;                       /* :names replaced by $n */
    param params[SPEC_MAX_PARAMS];
    int nparams;
} cstep;

typedef struct cvariant {
    struct spec_scenario *owner;
    const pgr_spec_variant *v;
    cstep *steps;
    pgr_http_variant http;           /* an http variant's: the app and the requests */
    pgr_http_request *requests;
} cvariant;

/* The scenario's context. */
typedef struct spec_scenario {
    pgr_spec spec;
    pgr_scenario sc;
    pgr_variant *variants;
    cvariant *cv;
    pgr_case *cases;
    const pgr_spec_case *scases;     /* the spec's cases, or the one default case */
    const char **invariant_names;
    char **inv_sql;                  /* SQL invariants, :key and :case as $n, wrapped so that each
                                      * trial's run is one result */
    param_kind inv_params[PGR_MAX_INV][2];   /* what $1, $2 of each are */
    int inv_nparams[PGR_MAX_INV];
    char *ddl;                       /* the setup blocks, joined */
} spec_scenario;

/* ---- compiling :parameters ---- */

static bool ident_char(char c) { return isalnum((unsigned char)c) || c == '_'; }

/* Append n bytes of s to a growing buffer. */
typedef struct buf { char *p; size_t n, cap; } buf;

static int put(buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = (b->n + n + 1) * 2;
        char *p = realloc(b->p, cap);
        if (!p) return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
    return 0;
}

static int putf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int putf(buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    return w < 0 ? -1 : put(b, tmp, (size_t)w < sizeof tmp ? (size_t)w : sizeof tmp - 1);
}

/* Walk sql, calling `on` for every :name or :name.column outside quotes, comments and
 * dollar quotes ('::' casts are left alone); everything else is copied to out. */
typedef int (*param_fn)(void *arg, const char *name, size_t nlen, const char *col, size_t clen, buf *out);

static int walk_params(const char *sql, buf *out, param_fn on, void *arg)
{
    const char *p = sql;
    while (*p) {
        if (*p == '\'' || *p == '"') {                     /* a quoted literal or identifier */
            char q = *p;
            const char *e = p + 1;
            while (*e && !(*e == q && e[1] != q)) e += (*e == q) ? 2 : 1;
            if (*e) e++;
            if (put(out, p, (size_t)(e - p))) return -1;
            p = e;
        } else if (p[0] == '-' && p[1] == '-') {            /* a comment to the end of the line */
            const char *e = strchr(p, '\n');
            if (!e) e = p + strlen(p);
            if (put(out, p, (size_t)(e - p))) return -1;
            p = e;
        } else if (*p == '$' && (p[1] == '$' || isalpha((unsigned char)p[1]))) {   /* $tag$ ... $tag$ */
            const char *t = p + 1;
            while (ident_char(*t)) t++;
            if (*t != '$') { if (put(out, p, 1)) return -1; p++; continue; }
            size_t tl = (size_t)(t - p) + 1;
            const char *e = strstr(t + 1, "");
            e = t + 1;
            while (*e && strncmp(e, p, tl) != 0) e++;
            if (*e) e += tl;
            if (put(out, p, (size_t)(e - p))) return -1;
            p = e;
        } else if (p[0] == ':' && p[1] == ':') {
            if (put(out, p, 2)) return -1;
            p += 2;
        } else if (p[0] == ':' && (isalpha((unsigned char)p[1]) || p[1] == '_')) {
            const char *n = p + 1, *e = n;
            while (ident_char(*e)) e++;
            const char *c = NULL;
            size_t clen = 0;
            if (*e == '.' && (isalpha((unsigned char)e[1]) || e[1] == '_')) {
                c = e + 1;
                const char *ce = c;
                while (ident_char(*ce)) ce++;
                clen = (size_t)(ce - c);
                if (on(arg, n, (size_t)(e - n), c, clen, out)) return -1;
                p = ce;
            } else {
                if (on(arg, n, (size_t)(e - n), NULL, 0, out)) return -1;
                p = e;
            }
        } else {
            if (put(out, p, 1)) return -1;
            p++;
        }
    }
    if (!out->p && put(out, "", 0)) return -1;
    return 0;
}

typedef struct step_ctx {
    cstep *cs;
    const pgr_spec_variant *v;
    int self;
    char *err;
    size_t errlen;
} step_ctx;

static int step_param(void *arg, const char *name, size_t nlen, const char *col, size_t clen, buf *out)
{
    step_ctx *x = arg;
    param pm = { 0 };
    if (!col && nlen == 3 && strncmp(name, "key", 3) == 0) pm.kind = P_KEY;
    else if (!col && nlen == 7 && strncmp(name, "session", 7) == 0) pm.kind = P_SESSION;
    else if (!col && nlen == 4 && strncmp(name, "case", 4) == 0) pm.kind = P_CASE;
    else if (col) {
        pm.kind = P_STEPCOL;
        pm.step = -1;
        for (int k = 0; k < x->self; k++)
            if (strlen(x->v->steps[k].name) == nlen && strncmp(x->v->steps[k].name, name, nlen) == 0) pm.step = k;
        if (pm.step < 0) {
            snprintf(x->err, x->errlen, "%d:%d: step '%s' uses :%.*s.%.*s, but no earlier step of variant '%s' is "
                     "named '%.*s'", x->cs->h->pos.line, x->cs->h->pos.col, x->cs->h->name, (int)nlen, name, (int)clen,
                     col, x->v->name, (int)nlen, name);
            return -1;
        }
        pm.column = strndup(col, clen);
        if (!pm.column) return -1;
    } else {
        snprintf(x->err, x->errlen, "%d:%d: step '%s': unknown parameter :%.*s (use :key, :session, :case or "
                 ":STEP.COLUMN)", x->cs->h->pos.line, x->cs->h->pos.col, x->cs->h->name, (int)nlen, name);
        return -1;
    }
    for (int i = 0; i < x->cs->nparams; i++) {        /* the same parameter twice: one $n */
        param *q = &x->cs->params[i];
        if (q->kind == pm.kind && q->step == pm.step &&
            (pm.kind != P_STEPCOL || strcmp(q->column, pm.column) == 0)) {
            free(pm.column);
            return putf(out, "$%d", i + 1);
        }
    }
    if (x->cs->nparams == SPEC_MAX_PARAMS) {
        free(pm.column);
        snprintf(x->err, x->errlen, "%d:%d: step '%s': more than %d parameters", x->cs->h->pos.line, x->cs->h->pos.col,
                 x->cs->h->name, SPEC_MAX_PARAMS);
        return -1;
    }
    x->cs->params[x->cs->nparams++] = pm;
    return putf(out, "$%d", x->cs->nparams);
}

/* An SQL invariant's parameters: :key and :case become $1/$2 in order of first use. */
typedef struct inv_ctx {
    struct spec_scenario *x;
    int k;
    const pgr_spec_invariant *inv;
    char *err;
    size_t errlen;
} inv_ctx;

static int inv_param(void *arg, const char *name, size_t nlen, const char *col, size_t clen, buf *out);

/* Literal substitution for the trial setup and the invariants (one statement per trial,
 * sent together): :key and :case as quoted literals (unknown type, so they take the
 * column's). */
typedef struct lit_ctx {
    long long key;
    const char *kase;
    const char *where;               /* "trial", "invariant 'name'" */
    char *err;
    size_t errlen;
} lit_ctx;

static int literal_param(void *arg, const char *name, size_t nlen, const char *col, size_t clen, buf *out)
{
    lit_ctx *x = arg;
    (void)clen;
    if (!col && nlen == 3 && strncmp(name, "key", 3) == 0) return putf(out, "'%lld'", x->key);
    if (!col && nlen == 4 && strncmp(name, "case", 4) == 0) return putf(out, "'%s'", x->kase);
    snprintf(x->err, x->errlen, "%s: unknown parameter :%.*s%s (only :key and :case here)", x->where, (int)nlen, name,
             col ? ".COLUMN" : "");
    return -1;
}

static int inv_param(void *arg, const char *name, size_t nlen, const char *col, size_t clen, buf *out)
{
    inv_ctx *x = arg;
    (void)clen;
    param_kind kind;
    if (!col && nlen == 3 && strncmp(name, "key", 3) == 0) kind = P_KEY;
    else if (!col && nlen == 4 && strncmp(name, "case", 4) == 0) kind = P_CASE;
    else {
        snprintf(x->err, x->errlen, "%d:%d: invariant '%s': unknown parameter :%.*s%s (only :key and :case here)",
                 x->inv->pos.line, x->inv->pos.col, x->inv->name, (int)nlen, name, col ? ".COLUMN" : "");
        return -1;
    }
    int *n = &x->x->inv_nparams[x->k];
    for (int q = 0; q < *n; q++)
        if (x->x->inv_params[x->k][q] == kind) return putf(out, "$%d", q + 1);
    x->x->inv_params[x->k][(*n)++] = kind;
    return putf(out, "$%d", *n);
}

static char *substitute(const char *sql, long long key, const char *kase, const char *where, char *err, size_t errlen)
{
    buf b = { 0 };
    lit_ctx x = { key, kase, where, err, errlen };
    if (walk_params(sql, &b, literal_param, &x) != 0) { free(b.p); return NULL; }
    return b.p;
}

/* ---- the handler: one variant, interpreted ---- */

/* The first row of each step run so far in this request, by column name. */
typedef struct row {
    bool have;
    int ncols;
    char *name[SPEC_MAX_COLS];
    char *value[SPEC_MAX_COLS];      /* NULL: SQL NULL */
} row;

static void row_clear(row *r)
{
    for (int i = 0; i < r->ncols; i++) { free(r->name[i]); free(r->value[i]); }
    memset(r, 0, sizeof *r);
}

static void row_keep(row *r, const pgr_res *res)
{
    row_clear(r);
    if (!res->ok || !res->pg || PQresultStatus(res->pg) != PGRES_TUPLES_OK || PQntuples(res->pg) == 0) return;
    r->have = true;
    for (int c = 0; c < PQnfields(res->pg) && c < SPEC_MAX_COLS; c++) {
        r->name[c] = strdup(PQfname(res->pg, c));
        r->value[c] = PQgetisnull(res->pg, 0, c) ? NULL : strdup(PQgetvalue(res->pg, 0, c));
        r->ncols++;
    }
}

/* The column's value in r: *found false when r has no such column (or no row). */
static const char *row_get(const row *r, const char *col, bool *found)
{
    *found = false;
    for (int c = 0; c < r->ncols; c++)
        if (r->name[c] && strcmp(r->name[c], col) == 0) { *found = true; return r->value[c]; }
    return NULL;
}

static bool is_true(const char *v)
{
    return v && (strcmp(v, "t") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

static bool numeric(const char *s, long long *out)
{
    if (!s || !*s) return false;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end) return false;
    *out = v;
    return true;
}

static bool compare(pgr_cond_op op, int c)
{
    switch (op) {
    case PGR_OP_EQ: return c == 0;
    case PGR_OP_NE: return c != 0;
    case PGR_OP_LT: return c < 0;
    case PGR_OP_GT: return c > 0;
    case PGR_OP_LE: return c <= 0;
    case PGR_OP_GE: return c >= 0;
    }
    return false;
}

static bool holds(const pgr_spec_rule *ru, const pgr_res *r, const row *first)
{
    bool found;
    const char *v;
    switch (ru->cond) {
    case PGR_COND_ALWAYS: return r->ok;     /* `-> OUT` is what follows success: a failed step
                                             * (a COMMIT that fails 40001) is only taken by
                                             * `if error`, else it is uncaught (500) */
    case PGR_COND_ROWS: return r->ok && compare(ru->op, (r->rows > ru->number) - (r->rows < ru->number));
    case PGR_COND_ERROR: return !r->ok && (!ru->value || strcmp(r->sqlstate, ru->value) == 0);
    case PGR_COND_TRUE:
        v = row_get(first, ru->column, &found);
        return r->ok && is_true(v);
    case PGR_COND_FALSE:
        v = row_get(first, ru->column, &found);
        return r->ok && !is_true(v);
    case PGR_COND_COMPARE: {
        v = row_get(first, ru->column, &found);
        if (!r->ok || !found || !v) return false;
        long long a;
        if (ru->numeric && numeric(v, &a)) return compare(ru->op, (a > ru->number) - (a < ru->number));
        return compare(ru->op, strcmp(v, ru->value ? ru->value : ""));
    }
    }
    return false;
}

static int spec_handler(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    const cvariant *cv = s->ctx;
    const pgr_spec_variant *v = cv->v;
    row *rows = calloc((size_t)v->nsteps, sizeof *rows);
    if (!rows) { resp->sqlstate[0] = '\0'; return 500; }
    int status = 200, idx = 0, guard = 0;
    s->attempt = 0;
    while (idx < v->nsteps) {
        if (++guard > 10000) { status = 508; break; }        /* a goto loop with no way out */
        const cstep *cs = &cv->steps[idx];
        const char *vals[SPEC_MAX_PARAMS] = { NULL };
        for (int i = 0; i < cs->nparams; i++) {
            const param *pm = &cs->params[i];
            bool found;
            switch (pm->kind) {
            case P_KEY: vals[i] = req->text[0]; break;
            case P_SESSION: vals[i] = req->text[1]; break;
            case P_CASE: vals[i] = req->text[2]; break;
            case P_STEPCOL: vals[i] = row_get(&rows[pm->step], pm->column, &found); break;
            }
        }
        pgr_res *r = pgr_exec(s, cs->h->name, cs->sql, cs->nparams, vals);
        /* COMMIT of an aborted transaction "succeeds" as ROLLBACK: not a commit (as pgr_commit) */
        if (r->ok && r->pg && pgr_sql_is_commit(cs->sql) && strcmp(PQcmdStatus(r->pg), "ROLLBACK") == 0) {
            r->ok = false;
            r->sqlstate = "25P02";
        }
        row_keep(&rows[idx], r);
        const pgr_spec_rule *ru = NULL;
        for (int k = 0; k < cs->h->nrules && !ru; k++)
            if (holds(&cs->h->rules[k], r, &rows[idx])) ru = &cs->h->rules[k];
        if (!ru) {
            if (!r->ok) { status = pgr_uncaught(s, r, resp); goto out; }
            idx++;
            continue;
        }
        switch (ru->outcome) {
        case PGR_OUT_NEXT: idx++; break;
        case PGR_OUT_GOTO: idx = ru->target_step; break;
        case PGR_OUT_RETRY:
            pgr_rollback(s);
            if (++s->attempt >= (ru->attempts > 0 ? ru->attempts : 10)) { status = 503; goto out; }
            pgr_retry_pause(s);
            for (int k = 0; k < v->nsteps; k++) row_clear(&rows[k]);
            resp->id = -1;
            idx = 0;
            break;
        case PGR_OUT_STATUS:
            status = ru->status;
            if (ru->id_column) {
                bool found;
                const char *dot = strchr(ru->id_column, '.');
                int from = idx;                            /* STEP.COLUMN: an earlier step's row */
                for (int k = 0; dot && k < v->nsteps; k++)
                    if (strncmp(v->steps[k].name, ru->id_column, (size_t)(dot - ru->id_column)) == 0 &&
                        v->steps[k].name[dot - ru->id_column] == '\0') from = k;
                const char *id = row_get(&rows[from], dot ? dot + 1 : ru->id_column, &found);
                long long n;
                resp->id = numeric(id, &n) ? n : -1;
            }
            if (!r->ok) snprintf(resp->sqlstate, sizeof resp->sqlstate, "%s", r->sqlstate);
            goto out;
        }
    }
out:
    for (int k = 0; k < v->nsteps; k++) row_clear(&rows[k]);
    free(rows);
    return status;
}

/* ---- trials: request, prepare, check ---- */

static void spec_request(void *ctx, const pgr_trial *t, int session, pgr_request *req)
{
    const spec_scenario *x = ctx;
    snprintf(req->text[0], sizeof req->text[0], "%lld", t->key);
    snprintf(req->text[1], sizeof req->text[1], "%d", session + 1);
    snprintf(req->text[2], sizeof req->text[2], "%s", x->scases[t->kase].name);
    req->num[0] = t->key;
    req->sends = x->scases[t->kase].sends;
}

/* The trial's own setup: the case's block, else the spec's `trial`; NULL when none. */
static char *trial_sql(const spec_scenario *x, const pgr_trial *t, char *err, size_t errlen)
{
    const pgr_spec_case *c = &x->scases[t->kase];
    const char *sql = c->trial ? c->trial : x->spec.trial;
    if (!sql) return NULL;
    return substitute(sql, t->key, c->name, "trial", err, errlen);
}

/* Every trial's setup, :key and :case as literals, sent as one simple query (one round trip;
 * a block may be several statements). 0, or -1 with b->err. */
static int spec_prepare(pgr_batch *b)
{
    const spec_scenario *x = b->ctx;
    buf all = { 0 };
    b->err[0] = '\0';
    for (int i = 0; i < b->ntrials; i++) {
        char *sql = trial_sql(x, &b->trials[i], b->err, sizeof b->err);
        if (!sql && b->err[0]) { free(all.p); return -1; }
        if (!sql) continue;
        if (!sql[strspn(sql, " \t\r\n;")]) { free(sql); continue; }   /* `case x { }`: no row */
        int bad = put(&all, sql, strlen(sql)) || put(&all, ";\n", 2);
        free(sql);
        if (bad) { free(all.p); snprintf(b->err, sizeof b->err, "out of memory"); return -1; }
    }
    if (!all.p) return 0;
    char err[PGR_ERRLEN];
    PGresult *r = pgr_query(b->admin, all.p, 0, NULL, err, sizeof err);   /* under the watchdog */
    free(all.p);
    int rc = 0;
    if (!r) {
        snprintf(b->err, sizeof b->err, "trial: %s", err);
        rc = -1;
    }
    PQclear(r);
    return rc;
}

static void invariant_rows(pgr_batch *b, const pgr_trial *t, const pgr_spec_invariant *inv, PGresult *r)
{
    const spec_scenario *x = b->ctx;
    int idx = (int)(inv - x->spec.invariants);
    if (PQntuples(r) == 0) return;
    char first[240];
    size_t off = 0;
    first[0] = '\0';
    for (int c = 0; c < PQnfields(r) && off + 1 < sizeof first; c++) {
        int w = snprintf(first + off, sizeof first - off, "%s%s=%s", c ? ", " : "", PQfname(r, c),
                         PQgetisnull(r, 0, c) ? "NULL" : PQgetvalue(r, 0, 0 + c));
        if (w < 0) break;
        off += (size_t)w;
    }
    pgr_violation(b, t, idx, "%d violating row%s, first: %s", PQntuples(r), PQntuples(r) == 1 ? "" : "s", first);
}

/* The answers a session got: its first and, when the client sent the request again (a
 * `sends` case), its last; *n of them. */
static int answers_of(const pgr_trial *t, int j, const pgr_response *out[2])
{
    out[0] = &t->first[j];
    if (t->sends[j] <= 1) { out[0] = &t->resp[j]; return 1; }
    out[1] = &t->resp[j];
    return 2;
}

static const char *send_word(int n, int k) { return n == 1 ? "" : k == 0 ? " (first send)" : " (last send)"; }

static void check_answers(pgr_batch *b, const pgr_trial *t, int idx, const pgr_spec_invariant *inv)
{
    const pgr_response *a[2];
    switch (inv->kind) {
    case PGR_INV_STATUSES:
        for (int j = 0; j < t->nsessions; j++) {
            int n = answers_of(t, j, a);
            for (int q = 0; q < n; q++) {
                bool ok = false;
                for (int k = 0; k < inv->nstatuses; k++) ok |= a[q]->status == inv->statuses[k];
                if (!ok) {
                    pgr_violation(b, t, idx, "S%d answered %d%s%s%s", j + 1, a[q]->status, send_word(n, q),
                                  a[q]->sqlstate[0] ? ", SQLSTATE " : "", a[q]->sqlstate);
                    return;
                }
            }
        }
        return;
    case PGR_INV_EXACTLY_ONE: {            /* of every answer: a resend must not get it again */
        int got = 0;
        for (int j = 0; j < t->nsessions; j++) {
            int n = answers_of(t, j, a);
            for (int q = 0; q < n; q++) got += a[q]->status == inv->statuses[0];
        }
        if (got != 1) pgr_violation(b, t, idx, "%d answers were %d", got, inv->statuses[0]);
        return;
    }
    case PGR_INV_SAME_ID: {
        long long id = -1;
        for (int j = 0; j < t->nsessions; j++) {
            int n = answers_of(t, j, a);
            for (int q = 0; q < n; q++) {
                if (a[q]->status < 200 || a[q]->status >= 300 || a[q]->id < 0) continue;
                if (id >= 0 && a[q]->id != id) {
                    pgr_violation(b, t, idx, "S%d answered %d with id %lld%s; an earlier answer named %lld", j + 1,
                                  a[q]->status, a[q]->id, send_word(n, q), id);
                    return;
                }
                id = a[q]->id;
            }
        }
        return;
    }
    case PGR_INV_SQL: return;
    }
}

/* One SQL invariant over the batch: prepared once per connection, executed for every trial
 * in one pipeline (one round trip; the server plans it once). 0, or -1 with b->err. */
static int invariant_pipeline(pgr_batch *b, int k)
{
    const spec_scenario *x = b->ctx;
    const pgr_spec_invariant *inv = &x->spec.invariants[k];
    char name[32], why[PGR_ERRLEN];
    snprintf(name, sizeof name, "pgrace_inv_%d", k);
    pgr_call_begin(b->admin, 0);                      /* the watchdog: no wait on a frozen server */
    PGresult *r = PQprepare(b->admin, name, x->inv_sql[k], x->inv_nparams[k], NULL);
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || (st && strcmp(st, "42P05") == 0);   /* prepared already */
    if (!ok) snprintf(b->err, sizeof b->err, "%s", PQresultErrorMessage(r));
    PQclear(r);
    if (!ok) {
        if (pgr_call_end(b->admin, why, sizeof why) != 0) snprintf(b->err, sizeof b->err, "%s", why);
        b->err[strcspn(b->err, "\n")] = '\0';
        return -1;
    }
    if (!PQenterPipelineMode(b->admin)) {
        pgr_call_end(b->admin, why, sizeof why);
        snprintf(b->err, sizeof b->err, "cannot enter pipeline mode");
        return -1;
    }
    int rc = 0, sent = 0;
    for (int i = 0; i < b->ntrials; i++) {
        char key[24];
        pgr_fmt_ll(key, b->trials[i].key);
        const char *vals[2];
        for (int q = 0; q < x->inv_nparams[k]; q++)
            vals[q] = x->inv_params[k][q] == P_KEY ? key : x->scases[b->trials[i].kase].name;
        if (!PQsendQueryPrepared(b->admin, name, x->inv_nparams[k], vals, NULL, NULL, 0)) { rc = -1; break; }
        sent++;
    }
    if (!PQpipelineSync(b->admin)) rc = -1;
    if (rc) snprintf(b->err, sizeof b->err, "%s", PQerrorMessage(b->admin));
    for (int i = 0; i < sent; i++) {                 /* each query: its result, then NULL */
        while ((r = PQgetResult(b->admin)) != NULL) {
            ExecStatusType es = PQresultStatus(r);
            if (es == PGRES_TUPLES_OK) invariant_rows(b, &b->trials[i], inv, r);
            else if (rc == 0 && es != PGRES_PIPELINE_ABORTED) {
                snprintf(b->err, sizeof b->err, "%s", PQresultErrorMessage(r));
                rc = -1;
            }
            PQclear(r);
        }
    }
    while ((r = PQgetResult(b->admin)) != NULL) {    /* the sync */
        bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
        PQclear(r);
        if (sync) break;
    }
    PQexitPipelineMode(b->admin);
    if (pgr_call_end(b->admin, why, sizeof why) != 0) {
        snprintf(b->err, sizeof b->err, "%s", why);
        rc = -1;
    }
    b->err[strcspn(b->err, "\n")] = '\0';
    return rc;
}

static int spec_check(pgr_batch *b)
{
    const spec_scenario *x = b->ctx;
    b->err[0] = '\0';
    for (int k = 0; k < x->spec.ninvariants; k++) {
        const pgr_spec_invariant *inv = &x->spec.invariants[k];
        if (inv->kind == PGR_INV_SQL) {
            if (invariant_pipeline(b, k) != 0) {
                char e[PGR_ERRLEN];
                snprintf(e, sizeof e, "invariant '%s': %s", inv->name, b->err);
                snprintf(b->err, sizeof b->err, "%s", e);
                return -1;
            }
        } else {
            for (int i = 0; i < b->ntrials; i++) check_answers(b, &b->trials[i], k, inv);
        }
    }
    return 0;
}

/* ---- building the scenario ---- */

static void spec_scenario_free(spec_scenario *x)
{
    if (!x) return;
    for (int j = 0; x->cv && j < x->spec.nvariants; j++) {
        for (int k = 0; x->cv[j].steps && k < x->spec.variants[j].nsteps; k++) {
            free(x->cv[j].steps[k].sql);
            for (int i = 0; i < x->cv[j].steps[k].nparams; i++) free(x->cv[j].steps[k].params[i].column);
        }
        free(x->cv[j].steps);
        free(x->cv[j].requests);
    }
    free(x->cv);
    free(x->variants);
    free(x->cases);
    free(x->invariant_names);
    for (int k = 0; x->inv_sql && k < x->spec.ninvariants; k++) free(x->inv_sql[k]);
    free(x->inv_sql);
    free(x->ddl);
    pgr_spec_free(&x->spec);
    free(x);
}

static int fail(char *err, size_t errlen, const char *path, const char *msg)
{
    char m[PGR_ERRLEN];
    snprintf(m, sizeof m, "%s", msg);
    snprintf(err, errlen, "%s:%s", path, m);
    return -1;
}

/* Verdicts the spec's expect lines give variant v (no line: safe everywhere). */
static int expectations(const pgr_spec *sp, const pgr_spec_variant *sv, pgr_variant *v, char *err, size_t errlen)
{
    for (int e = 0; e < sp->nexpects; e++) {
        const pgr_spec_expect *ex = &sp->expects[e];
        if (strcmp(ex->variant, sv->name) != 0) continue;
        if (ex->kase) {
            char m[200];
            snprintf(m, sizeof m, "%d:%d: expect ... case: per-case expectations are not supported yet (expect the "
                     "variant's weighted run)", ex->pos.line, ex->pos.col);
            return fail(err, errlen, sp->path, m);
        }
        if (ex->fault != PGR_FAULT_NONE) {            /* the fault matrix (read committed, one client) */
            v->fault_expect[ex->fault] = ex->verdict;
            continue;
        }
        for (int iso = 0; iso < PGR_NISO; iso++) {
            if (ex->levels && !(ex->levels >> iso & 1u)) continue;
            if (ex->explore) {
                v->explore_blind[iso] = ex->verdict == PGR_SAFE;
                continue;
            }
            v->expect[iso] = ex->verdict;
            v->race_from[iso] = ex->verdict == PGR_RACE && ex->sessions > 1 ? ex->sessions : 0;
        }
    }
    return 0;
}

/* A program variant's handler is never run: the pool serves it with the program target. */
static int client_handler(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    (void)req;
    snprintf(s->infra_msg, sizeof s->infra_msg, "a client variant's requests go to its program, not a handler");
    s->infra_error = true;
    resp->status = 500;
    return 500;
}

/* --app CMD: the application of every http variant, instead of the spec's `app` */
static const char *g_app;

void pgr_spec_set_app(const char *cmd) { g_app = cmd; }

/* --client [NAME=]CMD: the programs that replace the spec's variants */
static struct { char *name, *cmd; } g_clients[16];
static int g_nclients;

int pgr_spec_set_clients(const char *const *clients, int n, char *err, size_t errlen)
{
    for (int i = 0; i < n && i < PGR_LEN(g_clients); i++) {
        const char *c = clients[i], *eq = strchr(c, '=');
        size_t nl = eq ? (size_t)(eq - c) : 0;
        bool named = eq && nl >= 1 && nl <= 20;
        for (size_t k = 0; named && k < nl; k++)
            named = (c[k] >= 'a' && c[k] <= 'z') || (c[k] >= '0' && c[k] <= '9') || c[k] == '_';
        g_clients[i].name = named ? strndup(c, nl) : (n == 1 ? strdup("client") : NULL);
        if (!g_clients[i].name) {
            if (n > 1) { snprintf(err, errlen, "--client '%s': with several --client, name each: --client NAME=CMD "
                                  "(NAME 1 to 20 of a-z, 0-9, _)", c); return -1; }
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        g_clients[i].cmd = strdup(named ? eq + 1 : c);
        for (int k = 0; k < i; k++)
            if (strcmp(g_clients[k].name, g_clients[i].name) == 0) {
                snprintf(err, errlen, "--client: the name '%s' is given twice", g_clients[i].name);
                return -1;
            }
        if (!g_clients[i].cmd[0]) { snprintf(err, errlen, "--client '%s': an empty command", c); return -1; }
        g_nclients = i + 1;
    }
    return 0;
}

/* Replace the spec's variants by the --client programs (kinds: original first, recommended
 * last, as for variants). */
static int apply_clients(pgr_spec *sp, char *err, size_t errlen)
{
    pgr_spec_variant *vs = calloc((size_t)g_nclients, sizeof *vs);
    if (!vs) { snprintf(err, errlen, "out of memory"); return -1; }
    for (int i = 0; i < g_nclients; i++) {
        vs[i].name = strdup(g_clients[i].name);
        vs[i].client = strdup(g_clients[i].cmd);
        vs[i].kind = i == 0 ? PGR_ORIGINAL : (i == g_nclients - 1 ? PGR_RECOMMENDED : PGR_PROPOSED);
        for (int j = 0; j < sp->nvariants; j++)     /* a spec's client of that name gives its kind and setup */
            if (strcmp(sp->variants[j].name, vs[i].name) == 0) {
                if (sp->variants[j].kind_given) vs[i].kind = sp->variants[j].kind;
                if (sp->variants[j].setup) vs[i].setup = strdup(sp->variants[j].setup);
            }
    }
    pgr_spec tmp = { .variants = sp->variants, .nvariants = sp->nvariants };
    sp->variants = vs;
    sp->nvariants = g_nclients;
    pgr_spec_free(&tmp);                          /* the replaced variants */
    return 0;
}

int pgr_spec_register(const char *path, const pgr_scenario **out, char *err, size_t errlen)
{
    spec_scenario *x = calloc(1, sizeof *x);
    if (!x) { snprintf(err, errlen, "out of memory"); return -1; }
    if (pgr_spec_load(path, &x->spec, err, errlen) != 0) { free(x); return -1; }
    pgr_spec *sp = &x->spec;
    if (g_nclients > 0 && apply_clients(sp, err, errlen) != 0) goto bad;
    if (sp->nvariants == 0) {
        fail(err, errlen, path, "1:1: no variant: pgrace runs a spec's variants (`variant NAME { step ... }`, `client NAME { CMD }`, "
                                "`http NAME { REQUEST }`, or --client CMD); "
                                "an isolationtester spec alone runs with `pgrace isolation`");
        goto bad;
    }
    if (sp->model && !pgr_find_scenario(sp->model)) {
        char m[200];
        snprintf(m, sizeof m, "%d:%d: model '%s': no such scenario (pgrace list shows them)", sp->model_pos.line,
                 sp->model_pos.col, sp->model);
        fail(err, errlen, path, m);
        goto bad;
    }
    if (pgr_find_scenario(sp->name)) {
        snprintf(err, errlen, "%s: a scenario named '%s' exists already (rename the file)", path, sp->name);
        goto bad;
    }
    x->variants = calloc((size_t)sp->nvariants, sizeof *x->variants);
    x->cv = calloc((size_t)sp->nvariants, sizeof *x->cv);
    x->cases = calloc((size_t)(sp->ncases ? sp->ncases : 1), sizeof *x->cases);
    x->invariant_names = calloc((size_t)(sp->ninvariants ? sp->ninvariants : 1), sizeof *x->invariant_names);
    if (!x->variants || !x->cv || !x->cases || !x->invariant_names) { snprintf(err, errlen, "out of memory"); goto bad; }
    if (sp->ninvariants > 16 - 2) {
        fail(err, errlen, path, "1:1: more than 14 invariants");
        goto bad;
    }

    buf ddl = { 0 };
    for (int i = 0; i < sp->nsetups; i++)
        if (put(&ddl, sp->setups[i], strlen(sp->setups[i])) || put(&ddl, ";\n", 2)) { free(ddl.p); goto oom; }
    x->ddl = ddl.p;

    for (int j = 0; j < sp->nvariants; j++) {
        const pgr_spec_variant *sv = &sp->variants[j];
        cvariant *cv = &x->cv[j];
        cv->owner = x;
        cv->v = sv;
        cv->steps = calloc((size_t)(sv->nsteps ? sv->nsteps : 1), sizeof *cv->steps);
        if (!cv->steps) goto oom;
        for (int k = 0; k < sv->nsteps; k++) {
            cstep *cs = &cv->steps[k];
            cs->h = &sv->steps[k];
            buf b = { 0 };
            char e[PGR_ERRLEN];
            step_ctx sx = { cs, sv, k, e, sizeof e };
            if (walk_params(sv->steps[k].sql, &b, step_param, &sx) != 0) {
                free(b.p);
                fail(err, errlen, path, e);
                goto bad;
            }
            cs->sql = b.p;
            for (int r = 0; r < sv->steps[k].nrules; r++) {   /* id STEP.COLUMN names a step */
                const char *idc = sv->steps[k].rules[r].id_column, *dot = idc ? strchr(idc, '.') : NULL;
                bool known = !dot;
                for (int q = 0; dot && q <= k; q++)
                    known |= strncmp(sv->steps[q].name, idc, (size_t)(dot - idc)) == 0 && sv->steps[q].name[dot - idc] == '\0';
                if (!known) {
                    char m[300];
                    snprintf(m, sizeof m, "%d:%d: step '%s' answers with id %s, but no step of variant '%s' up to it "
                             "is named '%.*s'", sv->steps[k].rules[r].pos.line, sv->steps[k].rules[r].pos.col,
                             sv->steps[k].name, idc, sv->name, (int)(dot - idc), idc);
                    fail(err, errlen, path, m);
                    goto bad;
                }
            }
        }
        pgr_variant *v = &x->variants[j];
        v->name = sv->name;
        v->kind = sv->kind;
        v->handler = sv->client || sv->http ? client_handler : spec_handler;
        v->client = sv->client;
        if (sv->http) {
            const char *app = g_app ? g_app : sp->app;
            if (!app || !app[0]) {
                char m[300];
                snprintf(m, sizeof m, "%d:%d: http variant '%s': no application to send it to: add `app { COMMAND }` "
                         "(or give --app COMMAND)", sv->pos.line, sv->pos.col, sv->name);
                fail(err, errlen, path, m);
                goto bad;
            }
            cv->requests = calloc((size_t)sv->nrequests, sizeof *cv->requests);
            if (!cv->requests) goto oom;
            for (int k = 0; k < sv->nrequests; k++) {
                const pgr_spec_request *r = &sv->requests[k];
                cv->requests[k] = (pgr_http_request){ r->method, r->path, (const char *const *)r->headers, r->nheaders,
                                                      r->body };
            }
            cv->http = (pgr_http_variant){ app, sv->id_path, cv->requests, sv->nrequests };
            v->http = &cv->http;
        }
        v->ddl = sv->setup;
        v->ctx = cv;
        v->summary = "";
        if (expectations(sp, sv, v, err, errlen) != 0) goto bad;
    }
    static const pgr_spec_case all = { .name = "all", .weight = 1, .sends = 1 };
    x->scases = sp->ncases ? sp->cases : &all;
    if (sp->ncases == 0) x->cases[0] = (pgr_case){ "all", 1, "every session sends the same request" };
    for (int c = 0; c < sp->ncases; c++) x->cases[c] = (pgr_case){ sp->cases[c].name, sp->cases[c].weight, "" };
    unsigned answers = 0;
    x->inv_sql = calloc((size_t)(sp->ninvariants ? sp->ninvariants : 1), sizeof *x->inv_sql);
    if (!x->inv_sql) goto oom;
    for (int k = 0; k < sp->ninvariants; k++) {
        x->invariant_names[k] = sp->invariants[k].name;
        if (sp->invariants[k].kind == PGR_INV_SQL) {
            buf b = { 0 };
            char e[PGR_ERRLEN];
            inv_ctx ix = { x, k, &sp->invariants[k], e, sizeof e };
            if (put(&b, "SELECT * FROM (", 15) || walk_params(sp->invariants[k].sql, &b, inv_param, &ix) != 0 ||
                put(&b, ") pgrace_violation", 18)) {
                free(b.p);
                fail(err, errlen, path, e);
                goto bad;
            }
            x->inv_sql[k] = b.p;
        }
        if (sp->invariants[k].kind != PGR_INV_SQL) answers |= 1u << k;
    }
    x->sc = (pgr_scenario){
        .name = sp->name, .seed = NULL, .title = sp->path, .ddl = x->ddl,
        .variants = x->variants, .nvariants = sp->nvariants,
        .cases = x->cases, .ncases = sp->ncases ? sp->ncases : 1,
        .invariants = x->invariant_names, .ninvariants = sp->ninvariants,
        .answer_invariants = answers,
        .prepare = spec_prepare, .request = spec_request, .check = spec_check,
        .ctx = x,
    };
    if (pgr_register(&x->sc, err, errlen) != 0) goto bad;
    *out = &x->sc;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
bad:
    spec_scenario_free(x);
    return -1;
}

int pgr_spec_target(const char *path, const pgr_scenario **out, char *err, size_t errlen)
{
    for (int i = 0; i < pgr_scenario_count(); i++) {
        const pgr_spec *sp = pgr_spec_of(pgr_scenario_at(i));
        if (sp && strcmp(sp->path, path) == 0) { *out = pgr_scenario_at(i); return 0; }
    }
    return pgr_spec_register(path, out, err, errlen);
}

const pgr_spec *pgr_spec_of(const pgr_scenario *sc)
{
    return sc && sc->prepare == spec_prepare ? &((const spec_scenario *)sc->ctx)->spec : NULL;
}
