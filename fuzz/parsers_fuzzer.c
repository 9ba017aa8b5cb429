/*
 * parsers_fuzzer.c — everything pgrace parses from outside, with no server: schedule files
 * (pgrace replay: an accepted one is text, a refused one gets one printable line), DSNs (--dsn / PGRACE_DSN), isolation levels and scenario names, and whole
 * command lines (NUL-separated arguments), and request payloads (one raw field of a
 * scenario's request, through pgr_request_validate). The first byte picks the parser; the
 * rest is its input. Bad input must be an error, never a crash, a leak or undefined
 * behaviour (ASan+UBSan); an accepted payload must hold what the handlers rely on.
 */
#include "cli.h"

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

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc; (void)argv;
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
    switch (data[0] % 5) {
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
    }
    free(z);
    return 0;
}
