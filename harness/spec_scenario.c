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
    case PGR_COND_ALWAYS: return true;
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
                const char *id = row_get(&rows[idx], ru->id_column, &found);
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

/* Send one statement per trial (sql_of(trial) NULL: none) in one round trip; on_result,
 * when given, sees each trial's result. 0, or -1 with b->err. */
typedef char *(*sql_of_fn)(const spec_scenario *x, const pgr_trial *t, const void *arg, char *err, size_t errlen);
typedef void (*result_fn)(pgr_batch *b, const pgr_trial *t, const void *arg, PGresult *r);

static int per_trial(pgr_batch *b, sql_of_fn sql_of, result_fn on_result, const void *arg)
{
    const spec_scenario *x = b->ctx;
    buf all = { 0 };
    int owner[PGR_MAX_BATCH], n = 0;
    for (int i = 0; i < b->ntrials; i++) {
        char *sql = sql_of(x, &b->trials[i], arg, b->err, sizeof b->err);
        if (!sql && b->err[0]) { free(all.p); return -1; }
        if (!sql) continue;
        bool blank = true;
        for (const char *c = sql; *c; c++) blank &= isspace((unsigned char)*c) != 0;
        if (!blank) {
            owner[n++] = i;
            if (put(&all, sql, strlen(sql)) || put(&all, ";\n", 2)) { free(sql); free(all.p); return -1; }
        }
        free(sql);
    }
    if (n == 0) { free(all.p); return 0; }
    int rc = 0;
    pgr_call_begin(b->admin, 0);
    if (!PQsendQuery(b->admin, all.p)) {
        snprintf(b->err, sizeof b->err, "%s", PQerrorMessage(b->admin));
        rc = -1;
    }
    free(all.p);
    int k = 0;
    PGresult *r;
    while (rc == 0 && (r = PQgetResult(b->admin)) != NULL) {
        ExecStatusType st = PQresultStatus(r);
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
            snprintf(b->err, sizeof b->err, "%s", PQresultErrorMessage(r));
            b->err[strcspn(b->err, "\n")] = '\0';
            rc = -1;
        } else if (on_result && st == PGRES_TUPLES_OK && k < n) {
            on_result(b, &b->trials[owner[k]], arg, r);
        }
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) k += on_result ? 1 : 0;
        PQclear(r);
    }
    while ((r = PQgetResult(b->admin)) != NULL) PQclear(r);
    char why[PGR_ERRLEN];
    if (pgr_call_end(b->admin, why, sizeof why) != 0) {
        snprintf(b->err, sizeof b->err, "%s", why);
        rc = -1;
    }
    return rc;
}

static char *trial_sql(const spec_scenario *x, const pgr_trial *t, const void *arg, char *err, size_t errlen)
{
    (void)arg;
    const pgr_spec_case *c = &x->scases[t->kase];
    const char *sql = c->trial ? c->trial : x->spec.trial;
    if (!sql) return NULL;
    return substitute(sql, t->key, c->name, "trial", err, errlen);
}

static int spec_prepare(pgr_batch *b)
{
    b->err[0] = '\0';
    return per_trial(b, trial_sql, NULL, NULL);
}

static char *invariant_sql(const spec_scenario *x, const pgr_trial *t, const void *arg, char *err, size_t errlen)
{
    const pgr_spec_invariant *inv = arg;
    char where[160];
    snprintf(where, sizeof where, "invariant '%s'", inv->name);
    char *q = substitute(inv->sql, t->key, x->scases[t->kase].name, where, err, errlen);
    if (!q) return NULL;
    /* one result per trial, even for a query that is several statements' worth of text */
    size_t len = strlen(q) + 64;
    char *wrapped = malloc(len);
    if (wrapped) snprintf(wrapped, len, "SELECT * FROM (%s) pgrace_violation", q);
    free(q);
    return wrapped;
}

static void invariant_rows(pgr_batch *b, const pgr_trial *t, const void *arg, PGresult *r)
{
    const spec_scenario *x = b->ctx;
    const pgr_spec_invariant *inv = arg;
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

static void check_answers(pgr_batch *b, const pgr_trial *t, int idx, const pgr_spec_invariant *inv)
{
    switch (inv->kind) {
    case PGR_INV_STATUSES:
        for (int j = 0; j < t->nsessions; j++) {
            bool ok = false;
            for (int k = 0; k < inv->nstatuses; k++) ok |= t->resp[j].status == inv->statuses[k];
            if (!ok) {
                pgr_violation(b, t, idx, "S%d answered %d%s%s", j + 1, t->resp[j].status,
                              t->resp[j].sqlstate[0] ? ", SQLSTATE " : "", t->resp[j].sqlstate);
                return;
            }
        }
        return;
    case PGR_INV_EXACTLY_ONE: {
        int n = 0;
        for (int j = 0; j < t->nsessions; j++) n += t->resp[j].status == inv->statuses[0];
        if (n != 1) pgr_violation(b, t, idx, "%d sessions answered %d", n, inv->statuses[0]);
        return;
    }
    case PGR_INV_SAME_ID: {
        long long id = -1;
        for (int j = 0; j < t->nsessions; j++) {
            const pgr_response *a = &t->resp[j];
            if (a->status < 200 || a->status >= 300 || a->id < 0) continue;
            if (id >= 0 && a->id != id) {
                pgr_violation(b, t, idx, "S%d answered %d with id %lld; another session's answer named %lld", j + 1,
                              a->status, a->id, id);
                return;
            }
            id = a->id;
        }
        return;
    }
    case PGR_INV_SQL: return;
    }
}

static int spec_check(pgr_batch *b)
{
    const spec_scenario *x = b->ctx;
    b->err[0] = '\0';
    for (int k = 0; k < x->spec.ninvariants; k++) {
        const pgr_spec_invariant *inv = &x->spec.invariants[k];
        if (inv->kind == PGR_INV_SQL) {
            if (per_trial(b, invariant_sql, invariant_rows, inv) != 0) {
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
    }
    free(x->cv);
    free(x->variants);
    free(x->cases);
    free(x->invariant_names);
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
        for (int iso = 0; iso < PGR_NISO; iso++) {
            if (ex->levels && !(ex->levels >> iso & 1u)) continue;
            v->expect[iso] = ex->verdict;
            v->race_from[iso] = ex->verdict == PGR_RACE && ex->sessions > 1 ? ex->sessions : 0;
        }
    }
    return 0;
}

int pgr_spec_register(const char *path, const pgr_scenario **out, char *err, size_t errlen)
{
    spec_scenario *x = calloc(1, sizeof *x);
    if (!x) { snprintf(err, errlen, "out of memory"); return -1; }
    if (pgr_spec_load(path, &x->spec, err, errlen) != 0) { free(x); return -1; }
    pgr_spec *sp = &x->spec;
    if (sp->nvariants == 0) {
        fail(err, errlen, path, "1:1: no variant: pgrace runs a spec's variants (`variant NAME { step ... }`); "
                                "an isolationtester spec alone runs with `pgrace isolation`");
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
        cv->steps = calloc((size_t)sv->nsteps, sizeof *cv->steps);
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
        }
        pgr_variant *v = &x->variants[j];
        v->name = sv->name;
        v->kind = sv->kind;
        v->handler = spec_handler;
        v->ctx = cv;
        v->summary = "";
        if (expectations(sp, sv, v, err, errlen) != 0) goto bad;
    }
    static const pgr_spec_case all = { .name = "all", .weight = 1, .sends = 1 };
    x->scases = sp->ncases ? sp->cases : &all;
    if (sp->ncases == 0) x->cases[0] = (pgr_case){ "all", 1, "every session sends the same request" };
    for (int c = 0; c < sp->ncases; c++) x->cases[c] = (pgr_case){ sp->cases[c].name, sp->cases[c].weight, "" };
    unsigned answers = 0;
    for (int k = 0; k < sp->ninvariants; k++) {
        x->invariant_names[k] = sp->invariants[k].name;
        if (sp->invariants[k].kind != PGR_INV_SQL) answers |= 1u << k;
    }
    x->sc = (pgr_scenario){
        .name = sp->name, .seed = NULL, .title = sp->path, .ddl = x->ddl, .ddl_once = true,
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
