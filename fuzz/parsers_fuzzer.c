/*
 * parsers_fuzzer.c — everything pgrace parses from outside, with no server: schedule files
 * (pgrace replay: an accepted one is text, a refused one gets one printable line), DSNs (--dsn / PGRACE_DSN), isolation levels and scenario names, and whole
 * command lines (NUL-separated arguments), request payloads (one raw field of a scenario's
 * request, through pgr_request_validate), and spec files (pgr_spec_parse). The first byte
 * picks the parser; the rest is its input. Bad input must be an error, never a crash, a leak
 * or undefined behaviour (ASan+UBSan); an accepted payload must hold what the handlers rely
 * on; an accepted spec must be a tree whose every link resolves, and a refused one gets one
 * printable line; an application's HTTP answer (http.c).
 */
#include "cli.h"
#include "http.h"
#include "spec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An independent oracle for strict UTF-8 (RFC 3629): decode each sequence, then reject
 * overlong forms, UTF-16 surrogates and code points above U+10FFFF. Deliberately not the
 * validator's u8_check, so the two check each other. */
static bool utf8_strict(const unsigned char *s, size_t n)
{
    static const unsigned min_cp[5] = { 0, 0, 0x80, 0x800, 0x10000 };
    for (size_t i = 0; i < n;) {
        unsigned c = s[i], len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (len == 0 || i + len > n) return false;
        unsigned cp = len == 1 ? c : c & (0x7f >> len);
        for (unsigned k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min_cp[len] || (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) return false;
        i += len;
    }
    return true;
}

/* A message pgrace prints about a schedule file: one line, UTF-8, no control characters
 * (C0, DEL, C1), whatever bytes the file held. */
static void assert_printable_line(const char *err)
{
    const unsigned char *u = (const unsigned char *)err;
    size_t n = strlen(err);
    bool ok = n > 0 && utf8_strict(u, n);
    for (size_t i = 0; ok && i < n; i++)
        ok = u[i] >= 0x20 && u[i] != 0x7f && !(u[i] == 0xc2 && i + 1 < n && u[i + 1] >= 0x80 && u[i + 1] < 0xa0);
    if (!ok) { fprintf(stderr, "schedule error is not one printable line: '%s'\n", err); abort(); }
}

/* An accepted schedule file is text: strict UTF-8, no NUL or control bytes but tab and a
 * CR ending a line, lines of at most 2047 bytes. */
static void assert_schedule_text(const unsigned char *s, size_t n)
{
    size_t line = 0;
    for (size_t i = 0; i < n; i++) {
        bool cr_eol = s[i] == '\r' && (i + 1 == n || s[i + 1] == '\n');
        if (s[i] == '\n') { line = 0; continue; }
        if ((s[i] < 0x20 && s[i] != '\t' && !cr_eol) || s[i] == 0x7f || (++line > 2047 && !cr_eol)) {
            fprintf(stderr, "schedule accepted with byte 0x%02x at offset %zu (line length %zu)\n", s[i], i, line);
            abort();
        }
    }
    if (!utf8_strict(s, n)) { fprintf(stderr, "schedule accepted that is not UTF-8\n"); abort(); }
}

/* The property of an accepted request field, checked independently of the validator. */
static void assert_accepted(const pgr_field *f, const pgr_request *req, int i)
{
    const char *v = req->text[i];
    const char *nul = memchr(v, '\0', sizeof req->text[i]);
    if (!nul) { fprintf(stderr, "accepted %s is not NUL-terminated\n", f->name); abort(); }
    size_t n = (size_t)(nul - v);
    if (n >= 80 || n > (size_t)f->max_len) { fprintf(stderr, "accepted %s is %zu bytes\n", f->name, n); abort(); }
    if (!utf8_strict((const unsigned char *)v, n)) { fprintf(stderr, "accepted %s is not UTF-8\n", f->name); abort(); }
    if (req->raw[i]) { fprintf(stderr, "accepted %s was not copied\n", f->name); abort(); }
    if (f->kind == PGR_FIELD_ID && n > 0) {
        char *end;
        errno = 0;
        long long id = strtoll(v, &end, 10);
        if (errno || *end || id < 1 || v[0] < '1' || v[0] > '9') {
            fprintf(stderr, "accepted id %s = '%s' is not in 1..INT64_MAX\n", f->name, v);
            abort();
        }
    }
    if (n == 0 && !f->optional) { fprintf(stderr, "accepted required %s empty\n", f->name); abort(); }
}

/* data[0] picks the scenario, data[1] its field; the rest is the field's raw bytes. */
static void fuzz_request(const uint8_t *data, size_t size)
{
    if (size < 2) return;
    const pgr_scenario *sc = pgr_scenario_at(data[0] % pgr_scenario_count());
    if (sc->nfields == 0) return;
    int i = data[1] % sc->nfields;
    pgr_trial t;
    memset(&t, 0, sizeof t);
    t.key = 1000000001;
    t.nsessions = 2;
    pgr_request req;
    memset(&req, 0, sizeof req);
    sc->request(sc->ctx, &t, 0, &req);
    req.raw[i] = (const char *)data + 2;
    req.raw_len[i] = size - 2;
    char why[PGR_ERRLEN];
    int status = pgr_request_validate(sc, &req, why, sizeof why);
    if (status == 0) assert_accepted(&sc->fields[i], &req, i);
    else if (status == 400 && utf8_strict(data + 2, size - 2) && strstr(why, "invalid UTF-8")) {
        fprintf(stderr, "valid UTF-8 rejected as invalid: %s\n", why);      /* the oracles disagree */
        abort();
    }
    else if (status != 400 && status != 413) { fprintf(stderr, "status %d\n", status); abort(); }
}

#define SPEC_CHECK(cond, what) \
    do { if (!(cond)) { fprintf(stderr, "spec: %s\n", what); abort(); } } while (0)

/* A name the parser accepted: not empty, no newline, no control byte but the tab and CR a
 * quoted name may hold (isolationtester's grammar: only a newline ends one badly). */
static void check_name(const char *n)
{
    SPEC_CHECK(n && n[0], "an empty name");
    for (const char *c = n; *c; c++)
        SPEC_CHECK(((unsigned char)*c >= 0x20 && *c != 0x7f) || *c == '\t' || *c == '\r', "a control byte in a name");
}

/* SQL as isolationtester keeps it: no '}', no blank at either end but newlines. */
static void check_sql(const char *q)
{
    SPEC_CHECK(q && !strchr(q, '}'), "an SQL block with a '}'");
    size_t n = strlen(q);
    if (n == 0) return;
    SPEC_CHECK(!strchr(" \t\r", q[0]) && !strchr(" \t\r", q[n - 1]), "an SQL block not trimmed");
}

/* Parse a spec; an accepted tree must hold together, a refusal be one printable line. */
static void fuzz_spec(const uint8_t *data, size_t size)
{
    pgr_spec s;
    char err[PGR_ERRLEN];
    if (pgr_spec_parse("fuzz.spec", (const char *)data, size, &s, err, sizeof err) != 0) {
        SPEC_CHECK(strncmp(err, "fuzz.spec:", 10) == 0, "an error without its file");
        for (const char *c = err; *c; c++) SPEC_CHECK((unsigned char)*c >= 0x20 && *c != 0x7f, "a control byte in an error");
        SPEC_CHECK(s.nsessions == 0 && !s.sessions && !s.name, "a refused spec left allocated");
        return;
    }
    SPEC_CHECK(strcmp(s.name, "fuzz") == 0 && strcmp(s.path, "fuzz.spec") == 0, "the name");
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < size; i++) { h ^= data[i]; h *= 1099511628211ULL; }
    SPEC_CHECK(s.hash == h, "the hash");
    for (int i = 0; i < s.nsetups; i++) check_sql(s.setups[i]);
    if (s.teardown) check_sql(s.teardown);
    for (int i = 0; i < s.nsessions; i++) {
        check_name(s.sessions[i].name);
        SPEC_CHECK(s.sessions[i].nsteps > 0, "a session without steps");
        for (int j = 0; j < s.sessions[i].nsteps; j++) {
            const pgr_spec_step *st = &s.sessions[i].steps[j];
            check_name(st->name);
            check_sql(st->sql);
            SPEC_CHECK(st->session == i, "a step's session");
            bool used = false;
            for (int p = 0; p < s.nperms; p++)
                for (int k = 0; k < s.perms[p].nsteps; k++)
                    used |= s.perms[p].steps[k].session == i && s.perms[p].steps[k].step == j;
            SPEC_CHECK(used == st->used, "a step's used mark");
            for (int k = 0; k < s.nsessions; k++)
                for (int l = 0; l < s.sessions[k].nsteps; l++)
                    SPEC_CHECK((k == i && l == j) || strcmp(st->name, s.sessions[k].steps[l].name) != 0, "a duplicate step");
        }
    }
    for (int p = 0; p < s.nperms; p++) {
        SPEC_CHECK(s.perms[p].nsteps > 0, "an empty permutation");
        for (int k = 0; k < s.perms[p].nsteps; k++) {
            const pgr_spec_pstep *ps = &s.perms[p].steps[k];
            SPEC_CHECK(ps->session >= 0 && ps->session < s.nsessions, "a permutation step's session");
            SPEC_CHECK(ps->step >= 0 && ps->step < s.sessions[ps->session].nsteps, "a permutation step's step");
            SPEC_CHECK(strcmp(ps->name, s.sessions[ps->session].steps[ps->step].name) == 0, "a permutation step's name");
            for (int b = 0; b < ps->nblockers; b++) {
                const pgr_spec_blocker *bl = &ps->blockers[b];
                if (!bl->step) { SPEC_CHECK(bl->session == -1 && !bl->by_notices, "a '*' blocker"); continue; }
                SPEC_CHECK(bl->session >= 0 && bl->session < s.nsessions && bl->session != ps->session, "a blocker's session");
                SPEC_CHECK(bl->index >= 0 && bl->index < s.sessions[bl->session].nsteps, "a blocker's step");
                SPEC_CHECK(strcmp(bl->step, s.sessions[bl->session].steps[bl->index].name) == 0, "a blocker's name");
                SPEC_CHECK(bl->notices >= 0 && (bl->by_notices || bl->notices == 0), "a blocker's notices");
            }
        }
    }
    for (int v = 0; v < s.nvariants; v++) {
        const pgr_spec_variant *sv = &s.variants[v];
        SPEC_CHECK(sv->nsteps > 0 || sv->client || sv->http, "a variant without steps");
        SPEC_CHECK(!sv->client || (sv->client[0] && !strchr(sv->client, '\n')), "a client's command");
        SPEC_CHECK(!sv->http || (sv->nrequests > 0 && sv->nsteps == 0), "an http variant's requests");
        for (int k = 0; k < sv->nrequests; k++) {
            const pgr_spec_request *rq = &sv->requests[k];
            SPEC_CHECK(rq->method[0] && strlen(rq->method) <= 16 && rq->path[0] == '/' && !strpbrk(rq->path, " \t\r\n"),
                       "a request line");
            for (int hd = 0; hd < rq->nheaders; hd++)
                SPEC_CHECK(strchr(rq->headers[hd], ':') && !strpbrk(rq->headers[hd], "\r\n"), "a header");
        }
        for (int j = 0; j < s.variants[v].nsteps; j++) {
            const pgr_spec_hstep *hs = &s.variants[v].steps[j];
            check_name(hs->name);
            check_sql(hs->sql);
            for (int r = 0; r < hs->nrules; r++) {
                const pgr_spec_rule *ru = &hs->rules[r];
                if (ru->outcome == PGR_OUT_STATUS) SPEC_CHECK(ru->status >= 100 && ru->status <= 599, "a status");
                if (ru->outcome == PGR_OUT_GOTO)
                    SPEC_CHECK(ru->target_step >= 0 && ru->target_step < s.variants[v].nsteps &&
                               strcmp(ru->target, s.variants[v].steps[ru->target_step].name) == 0, "a goto");
                if (ru->outcome == PGR_OUT_RETRY) SPEC_CHECK(ru->attempts >= 1, "retry attempts");
                if (ru->cond == PGR_COND_ERROR && ru->value) SPEC_CHECK(strlen(ru->value) == 5, "an SQLSTATE");
                if (ru->cond == PGR_COND_TRUE || ru->cond == PGR_COND_FALSE || ru->cond == PGR_COND_COMPARE)
                    check_name(ru->column);
            }
        }
    }
    for (int c = 0; c < s.ncases; c++) SPEC_CHECK(s.cases[c].weight >= 1 && s.cases[c].sends >= 1, "a case");
    for (int i = 0; i < s.ninvariants; i++) {
        const pgr_spec_invariant *inv = &s.invariants[i];
        SPEC_CHECK(inv->kind == PGR_INV_SQL ? inv->sql != NULL : true, "an SQL invariant");
        SPEC_CHECK(inv->kind == PGR_INV_EXACTLY_ONE ? inv->nstatuses == 1 : true, "exactly one status");
        SPEC_CHECK(inv->kind == PGR_INV_STATUSES ? inv->nstatuses >= 1 : true, "statuses");
    }
    for (int x = 0; x < s.nexpects; x++) {
        bool found = false;
        for (int v = 0; v < s.nvariants; v++) found |= strcmp(s.variants[v].name, s.expects[x].variant) == 0;
        SPEC_CHECK(found, "an expect's variant");
    }
    pgr_spec_free(&s);
}

/* PGRACE_FUZZ_PARSER=NAME sends every input to one parser (its first byte still read, so a
 * corpus means the same); unset: the first byte picks. */
/* An HTTP answer as an application sends it (http.c): parsed whole, then cut at every
 * length, with and without the connection's end; an accepted answer's body lies inside the
 * input (or is the dechunked copy), and its JSON id is read. */
static void fuzz_http_answer(const char *text, size_t n)
{
    char err[200];
    for (int eof = 0; eof < 2; eof++) {
        pgr_http_answer a;
        long r = pgr_http_parse_answer(text, n, eof, &a, err, sizeof err);
        if (r > 0) {
            if ((size_t)r > n || a.status < 100 || a.status > 599) abort();
            if (!a.dechunked && a.body && (a.body < text || a.body + a.body_len > text + n)) abort();
            pgr_http_json_id(a.body, a.body_len, "a.0.id");
            pgr_http_answer_free(&a);
        } else if (r < 0) {
            assert_printable_line(err);
        }
    }
    size_t cut = n / 2;                      /* a prefix: never more than it holds */
    pgr_http_answer a;
    long r = pgr_http_parse_answer(text, cut, false, &a, err, sizeof err);
    if (r > 0) { if ((size_t)r > cut) abort(); pgr_http_answer_free(&a); }
}

static const char *const PARSERS[] = { "schedule", "dsn", "names", "cli", "request", "spec", "http" };
static int forced = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
    const char *only = getenv("PGRACE_FUZZ_PARSER");
    for (int i = 0; only && i < PGR_LEN(PARSERS); i++)
        if (strcmp(only, PARSERS[i]) == 0) forced = i;
    if (only && forced < 0) { fprintf(stderr, "parsers_fuzzer: PGRACE_FUZZ_PARSER names no parser: %s\n", only); abort(); }
    char err[PGR_ERRLEN];
    if (pgr_register_builtins(err, sizeof err) != 0) { fprintf(stderr, "parsers_fuzzer: %s\n", err); abort(); }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    char err[PGR_ERRLEN];
    const char *text = (const char *)data + 1;
    size_t n = size - 1;
    char *z = malloc(n + 1);                /* NUL-terminated copy for the string parsers */
    if (!z) return 0;
    memcpy(z, text, n);
    z[n] = '\0';
    switch (forced >= 0 ? forced : data[0] % PGR_LEN(PARSERS)) {
    case 0:
        if (pgr_schedule_check(text, n, err, sizeof err) != 0) assert_printable_line(err);
        else assert_schedule_text((const unsigned char *)text, n);
        break;
    case 1:
        pgr_dsn_check(z, err, sizeof err);
        break;
    case 2: {
        pgr_isolation iso;
        pgr_isolation_parse(z, &iso);
        pgr_find_scenario(z);
        break;
    }
    case 3: {                               /* a command line: arguments split at NUL bytes */
        char *argv[33];
        int argc = 0;
        argv[argc++] = "pgrace";
        for (size_t i = 0; i <= n && argc < 32;) {
            argv[argc++] = z + i;
            i += strlen(z + i) + 1;
        }
        argv[argc] = NULL;
        pgr_config cfg;
        pgr_config_defaults(&cfg);
        int npos;
        char **pos;
        pgr_cli_parse(argc, argv, &cfg, &npos, &pos, err, sizeof err);
        break;
    }
    case 4:                                 /* a request payload */
        fuzz_request((const uint8_t *)text, n);
        break;
    case 5:                                 /* a spec file */
        fuzz_spec((const uint8_t *)text, n);
        break;
    case 6:                                 /* an application's HTTP answer */
        fuzz_http_answer(text, n);
        break;
    }
    free(z);
    return 0;
}
