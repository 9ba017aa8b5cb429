/*
 * payload.c — request payloads against the handlers.
 *
 * `pgrace payloads` checks the request boundary (validate.c) from outside. For every field
 * of every variant it prepares one trial of the scenario's first case through the pool, has every session send
 * the request with that one field replaced by a payload, and compares a digest of every
 * table in the variant's schema before and after. Hostile payloads (empty, 1 MiB, NUL
 * bytes, invalid UTF-8, bad ids, bad JSON, unknown enum values) must get a 4xx with no
 * statement sent and no row changed; edge-valid ones (the longest multi-byte value,
 * quotes and SQL, the largest id) must never get a 5xx, and a 4xx must change nothing.
 */
#include "payload.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistr.h>

/* ---- the payloads ---- */

static int add(pgr_payload *out, int *n, const char *name, bool hostile, const char *bytes, size_t len)
{
    if (*n >= PGR_MAX_PAYLOADS) return 0;
    char *b = malloc(len ? len : 1);
    if (!b) return -1;
    memcpy(b, bytes, len);
    pgr_payload *p = &out[(*n)++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->hostile = hostile;
    p->bytes = b;
    p->len = len;
    return 0;
}

static int add_str(pgr_payload *out, int *n, const char *name, bool hostile, const char *s)
{
    return add(out, n, name, hostile, s, strlen(s));
}

/* base with bad[0..blen) inserted where it corrupts the value rather than its syntax:
 * inside the last string of a JSON document, else at the end. */
static int add_corrupted(pgr_payload *out, int *n, const pgr_field *f, const char *base, const char *name,
                         const char *bad, size_t blen)
{
    size_t bl = strlen(base), at = bl;
    const char *q = f->kind == PGR_FIELD_JSON ? strrchr(base, '"') : NULL;
    if (q) at = (size_t)(q - base);
    char buf[160];
    memcpy(buf, base, at);
    memcpy(buf + at, bad, blen);
    memcpy(buf + at + blen, base + at, bl - at);
    return add(out, n, name, true, buf, bl + blen);
}

/* The longest allowed text of multi-byte characters (2, 3 and 4 bytes in turn), padded
 * with ASCII only where no character fits. */
static size_t fill_multibyte(char *buf, size_t room)
{
    static const char *const chars[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80" };   /* é € 😀 */
    size_t n = 0;
    for (int k = 0;; k = (k + 1) % 3) {
        size_t cl = strlen(chars[k]);
        if (n + cl > room) {
            if (n + 2 <= room) continue;          /* a shorter character still fits */
            break;
        }
        memcpy(buf + n, chars[k], cl);
        n += cl;
    }
    while (n < room) buf[n++] = 'a';
    return n;
}

int pgr_payloads_make(const pgr_field *f, const char *base, pgr_payload *out)
{
    int n = 0, rc = 0;
    if (!f->optional) rc |= add_str(out, &n, "empty", true, "");
    char *big = malloc(1 << 20);                                  /* 1 MiB: the base, then 'a's */
    if (!big) return -1;
    memset(big, 'a', 1 << 20);
    memcpy(big, base, strnlen(base, 79));
    rc |= add(out, &n, "1 MiB", true, big, 1 << 20);
    free(big);
    char over[81];
    memset(over, f->kind == PGR_FIELD_ID ? '1' : 'a', sizeof over);
    rc |= add(out, &n, "max+1 bytes", true, over, (size_t)f->max_len + 1);
    rc |= add_corrupted(out, &n, f, base, "NUL byte", "\0x", 2);
    rc |= add_corrupted(out, &n, f, base, "lone 0xff", "\xff", 1);
    rc |= add_corrupted(out, &n, f, base, "truncated UTF-8", "\xe2\x82", 2);
    rc |= add_corrupted(out, &n, f, base, "overlong '/'", "\xc0\xaf", 2);
    rc |= add_corrupted(out, &n, f, base, "UTF-16 surrogate", "\xed\xa0\x80", 3);

    char buf[96];
    switch (f->kind) {
    case PGR_FIELD_ID:
        rc |= add_str(out, &n, "-1", true, "-1");
        rc |= add_str(out, &n, "0", true, "0");
        rc |= add_str(out, &n, "2^63", true, "9223372036854775808");
        rc |= add_str(out, &n, "10^23-1", true, "99999999999999999999999");
        rc |= add_str(out, &n, "12abc", true, "12abc");
        rc |= add_str(out, &n, "leading space", true, " 12");
        rc |= add_str(out, &n, "2^63-1", false, "9223372036854775807");
        break;
    case PGR_FIELD_TEXT: {              /* the real value first: unique per trial, as in use */
        size_t bl = strnlen(base, (size_t)f->max_len);
        memcpy(buf, base, bl);
        size_t len = bl + fill_multibyte(buf + bl, (size_t)f->max_len - bl);
        rc |= add(out, &n, "longest multi-byte", false, buf, len);
        snprintf(buf, (size_t)f->max_len + 1, "%s%sO'Brien \"\\\" '; DROP TABLE x; --", base, bl ? " " : "");
        rc |= add_str(out, &n, "quotes and SQL", false, buf);
        break;
    }
    case PGR_FIELD_JSON: {
        rc |= add_str(out, &n, "JSON '{'", true, "{");
        rc |= add_str(out, &n, "JSON array", true, "[]");
        memcpy(buf, "{\"k\": \"", 7);
        size_t len = 7 + fill_multibyte(buf + 7, (size_t)f->max_len - 9);
        memcpy(buf + len, "\"}", 2);
        rc |= add(out, &n, "longest multi-byte", false, buf, len + 2);
        rc |= add_str(out, &n, "quotes and SQL", false, "{\"k\": \"O'Brien \\\"\\\\\\\" '; DROP TABLE x; --\"}");
        break;
    }
    case PGR_FIELD_ENUM:
        rc |= add_str(out, &n, "unknown value", true, "unknown");
        break;
    }
    if (rc) {
        pgr_payloads_free(out, n);
        return -1;
    }
    return n;
}

void pgr_payloads_free(pgr_payload *p, int n)
{
    for (int i = 0; i < n; i++) free(p[i].bytes);
}

/* ---- the checks ---- */

/* What the sessions of the running trial send: the scenario's request with one field
 * replaced (the wrapped scenario's context). Written by the coordinator before the
 * release gate opens; read by sessions. */
typedef struct injection {
    const pgr_scenario *sc;
    int field;
    const pgr_payload *payload;
} injection;

static void request_with_payload(void *ctx, const pgr_trial *t, int session, pgr_request *req)
{
    const injection *in = ctx;
    in->sc->request(in->sc->ctx, t, session, req);
    req->raw[in->field] = in->payload->bytes;
    req->raw_len[in->field] = in->payload->len;
}

/* The scenario's own prepare and check, with its own context. */
static int prepare_inner(pgr_batch *b)
{
    injection *in = b->ctx;
    b->ctx = in->sc->ctx;
    int rc = in->sc->prepare(b);
    b->ctx = in;
    return rc;
}

static int check_inner(pgr_batch *b)
{
    injection *in = b->ctx;
    b->ctx = in->sc->ctx;
    int rc = in->sc->check(b);
    b->ctx = in;
    return rc;
}

/* A 500 from a unique violation, serialization failure or deadlock in a variant expected to
 * race: every session sent the same value at once, which is the race stress measures, not
 * a payload the handler cannot take. */
static bool known_race(const pgr_response *r, bool race_expected)
{
    return race_expected && r->status == 500 &&
           (strcmp(r->sqlstate, "23505") == 0 || strcmp(r->sqlstate, "40001") == 0 || strcmp(r->sqlstate, "40P01") == 0);
}

/* The verdict on a finished trial (c->statuses, statements, changed filled in). */
static void judge(pgr_payload_check *c, const pgr_trial *t, bool race_expected)
{
    int bad = -1, race = -1;
    bool any2xx = false;
    for (int i = 0; i < c->nsessions; i++) {
        int st = c->statuses[i];
        any2xx |= st >= 200 && st < 300;
        bool fine = c->hostile ? st >= 400 && st < 500 : st >= 200 && st < 500;
        if (!fine && !c->hostile && known_race(&t->resp[i], race_expected)) {
            if (race < 0) race = i;
        } else if (!fine && bad < 0) {
            bad = i;
        }
    }
    if (bad < 0 && race >= 0 && (any2xx || !c->changed)) {
        snprintf(c->why, sizeof c->why, "S%d answered 500 with SQLSTATE %s: the variant's race (see stress), "
                 "not the payload", race + 1, t->resp[race].sqlstate);
        c->ok = c->race = true;
        return;
    }
    if (bad >= 0) {
        const pgr_response *r = &t->resp[bad];
        snprintf(c->why, sizeof c->why, "S%d answered %d%s%s", bad + 1, r->status,
                 r->sqlstate[0] ? " with SQLSTATE " : "", r->sqlstate);
    } else if (c->hostile && c->statements > 0) {
        snprintf(c->why, sizeof c->why, "%lld statements reached the database", c->statements);
    } else if (c->changed && (c->hostile || !any2xx)) {
        snprintf(c->why, sizeof c->why, "answered 4xx but rows changed in the schema");
    } else {
        c->ok = true;
        return;
    }
    c->ok = false;
}

static int append(pgr_payload_checks *out, const pgr_payload_check *c)
{
    if (out->n == out->cap) {
        int cap = out->cap ? out->cap * 2 : 256;
        pgr_payload_check *nv = realloc(out->v, (size_t)cap * sizeof *nv);
        if (!nv) return -1;
        out->v = nv;
        out->cap = cap;
    }
    out->v[out->n++] = *c;
    return 0;
}

/* One trial: payload k of field fi. 0, or -1 with err. */
static int check_one(pgr_pool *pool, injection *in, const pgr_variant *v, int fi, int k,
                     long long trial_no, pgr_result *res, pgr_payload_checks *out, char *err, size_t errlen)
{
    const pgr_scenario *sc = in->sc;
    pgr_batch b;
    if (pgr_pool_prepare(pool, trial_no, 1, 0, &b, res) != 0) {
        snprintf(err, errlen, "%s", res->error);
        return -1;
    }
    pgr_trial *t = &b.trials[0];
    pgr_request base;
    memset(&base, 0, sizeof base);
    sc->request(sc->ctx, t, 0, &base);
    pgr_payload ps[PGR_MAX_PAYLOADS];
    int np = pgr_payloads_make(&sc->fields[fi], base.text[fi], ps);
    if (np < 0) { snprintf(err, errlen, "out of memory"); return -1; }
    int rc = -1;
    char *before = NULL, *after = NULL;
    pgr_payload_check c = { .sc = sc, .v = v, .field = sc->fields[fi].name, .hostile = ps[k].hostile,
                            .nsessions = t->nsessions };
    snprintf(c.payload, sizeof c.payload, "%s", ps[k].name);
    if (!(before = pgr_schema_digest(b.admin, err, errlen))) goto out;
    in->field = fi;
    in->payload = &ps[k];
    pgr_pool_start(pool, t);
    if (pgr_pool_finish(pool, res) != 0) {
        snprintf(err, errlen, "%s", res->error);
        goto out;
    }
    if (!(after = pgr_schema_digest(b.admin, err, errlen))) goto out;
    for (int i = 0; i < t->nsessions; i++) {
        c.statuses[i] = t->resp[i].status;
        c.statements += t->nsteps[i];
    }
    c.changed = strcmp(before, after) != 0;
    judge(&c, t, res->expected != PGR_SAFE);
    if (c.ok && !c.why[0]) {            /* say why it was rejected (the validator is pure) */
        base.raw[fi] = ps[k].bytes;
        base.raw_len[fi] = ps[k].len;
        pgr_request_validate(sc, &base, c.why, sizeof c.why);
    }
    if (append(out, &c) != 0) { snprintf(err, errlen, "out of memory"); goto out; }
    rc = 0;
out:
    free(before);
    free(after);
    pgr_payloads_free(ps, np);
    return rc;
}

int pgr_payloads_run(const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                     const pgr_payload_opts *o, pgr_payload_checks *out, char *err, size_t errlen)
{
    injection in = { .sc = sc };
    pgr_scenario wrapped = *sc;         /* the same scenario, its request with one field replaced */
    wrapped.request = request_with_payload;
    wrapped.prepare = prepare_inner;
    wrapped.check = check_inner;
    wrapped.ctx = &in;
    pgr_result res;
    pgr_result_init(&res, &wrapped, v, o->iso, o->sessions, PGR_MODE_PAYLOADS);
    pgr_pool_opts po = { .sessions = o->sessions, .iso = o->iso, .interrupted = o->interrupted };
    pgr_pool *pool = pgr_pool_open(dsn, &wrapped, v, &po, &res);
    if (!pool) {
        snprintf(err, errlen, "%s", res.error);
        return -1;
    }
    int rc = 0;
    long long trial_no = 0;
    for (int fi = 0; fi < sc->nfields && rc == 0; fi++) {
        pgr_payload probe[PGR_MAX_PAYLOADS];           /* how many payloads this field has */
        int np = pgr_payloads_make(&sc->fields[fi], "", probe);
        if (np < 0) { snprintf(err, errlen, "out of memory"); rc = -1; break; }
        pgr_payloads_free(probe, np);
        for (int k = 0; k < np && rc == 0; k++) {
            if (o->interrupted && *o->interrupted) {
                snprintf(err, errlen, "interrupted");
                rc = -1;
                break;
            }
            rc = check_one(pool, &in, v, fi, k, trial_no++, &res, out, err, errlen);
        }
    }
    pgr_pool_close(pool, &res);
    pgr_result_free(&res);
    return rc;
}

/* ---- output ---- */

/* The answers as "400 x2", or "201,409" when they differ. */
static void answers_text(const pgr_payload_check *c, char *buf, size_t len)
{
    bool same = true;
    for (int i = 1; i < c->nsessions; i++) same &= c->statuses[i] == c->statuses[0];
    if (same) {
        snprintf(buf, len, "%d x%d", c->statuses[0], c->nsessions);
        return;
    }
    size_t n = 0;
    buf[0] = '\0';
    for (int i = 0; i < c->nsessions && n + 5 < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%d", i ? "," : "", c->statuses[i]);
}

void pgr_print_payload_checks(FILE *f, const pgr_payload_check *checks, int n)
{
    if (n == 0) return;
    int bad = 0;
    for (int i = 0; i < n; i++) bad += !checks[i].ok;
    fprintf(f, "%s (seed %s): %d payload checks, %d failed\n", checks[0].sc->name, checks[0].sc->seed, n, bad);
    fprintf(f, "  %-12s %-22s %-20s %-7s %-16s %5s %-7s %s\n", "VARIANT", "FIELD", "PAYLOAD", "CLASS", "ANSWERS",
            "STMTS", "CHANGED", "OK");
    for (int i = 0; i < n; i++) {
        const pgr_payload_check *c = &checks[i];
        char answers[64];
        answers_text(c, answers, sizeof answers);
        fprintf(f, "  %-12s %-22s %-20s %-7s %-16s %5lld %-7s %s%s%s\n", c->v->name, c->field, c->payload,
                c->hostile ? "hostile" : "edge", answers, c->statements, c->changed ? "yes" : "no",
                c->ok ? (c->race ? "ok (the variant's race, not the payload)" : "ok") : "FAIL",
                c->ok ? "" : ": ", c->ok ? "" : c->why);
    }
    fprintf(f, "\n");
}

int pgr_write_payloads_json(const char *path, const char *server, const pgr_payload_checks *cs,
                            const char *error, char *err, size_t errlen)
{
    json_t *arr = json_array();
    for (int i = 0; i < cs->n; i++) {
        const pgr_payload_check *c = &cs->v[i];
        json_t *st = json_array();
        for (int s = 0; s < c->nsessions; s++) json_array_append_new(st, json_integer(c->statuses[s]));
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:o, s:I, s:b, s:b}", "scenario", c->sc->name,
                              "variant", c->v->name, "field", c->field, "payload", c->payload,
                              "class", c->hostile ? "hostile" : "edge", "statuses", st,
                              "statements", (json_int_t)c->statements, "changed", c->changed, "ok", c->ok);
        json_object_set_new(o, "why", c->why[0] ? json_string(c->why) : json_null());
        json_array_append_new(arr, o);
    }
    return pgr_write_json_document(path, server, "payloads", arr, error, err, errlen);
}
