/*
 * validate.c — the web framework's share of a request: body parsing and schema validation
 * (the seeds' action-validator.ts, a zod schema, ...). The in-process target runs it once
 * per request before the handler; a request it rejects is answered 400 or 413 and the
 * handler never runs, so no statement reaches the database. The rules are the scenario's
 * declared fields (pgr_field): what each handler takes and what its column can hold.
 */
#include "pgrace.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistr.h>

static int reject(char *why, size_t len, int status, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int reject(char *why, size_t len, int status, const char *fmt, ...)
{
    if (why && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(why, len, fmt, ap);
        va_end(ap);
    }
    return status;
}

/* A canonical positive bigint: 1..9223372036854775807, digits only, no leading zero (the
 * handlers compare ids as text with what the database returns). */
static bool id_ok(const char *p, size_t n)
{
    if (n < 1 || n > 19 || p[0] < '1' || p[0] > '9') return false;
    for (size_t i = 1; i < n; i++)
        if (p[i] < '0' || p[i] > '9') return false;
    return n < 19 || memcmp(p, "9223372036854775807", 19) <= 0;
}

static bool json_object_ok(const char *p, size_t n)
{
    json_error_t je;                    /* jansson also rejects \u0000, as jsonb does */
    json_t *j = json_loadb(p, n, 0, &je);
    bool ok = j && json_is_object(j);
    json_decref(j);
    return ok;
}

static bool enum_ok(const pgr_field *f, const char *p, size_t n)
{
    for (const char *const *v = f->values; v && *v; v++)
        if (strlen(*v) == n && memcmp(*v, p, n) == 0) return true;
    return false;
}

/* Field f's value p[0..n): 0, or 400/413 with why. Length first, as a body limit would. */
static int check_field(const pgr_field *f, const char *p, size_t n, char *why, size_t len)
{
    if (n > (size_t)f->max_len)
        return reject(why, len, 413, "%s: %zu bytes, at most %d allowed", f->name, n, f->max_len);
    const char *nul = memchr(p, '\0', n);
    if (nul) return reject(why, len, 400, "%s: NUL byte at offset %td", f->name, nul - p);
    /* libunistring's u8_check is strict UTF-8 (RFC 3629): no overlong forms, no UTF-16
     * surrogates, nothing above U+10FFFF; the rule PostgreSQL applies to UTF8 text. */
    const uint8_t *bad = u8_check((const uint8_t *)p, n);
    if (bad) return reject(why, len, 400, "%s: invalid UTF-8 at offset %td", f->name, (const char *)bad - p);
    if (n == 0) return f->optional ? 0 : reject(why, len, 400, "%s: required", f->name);
    switch (f->kind) {
    case PGR_FIELD_TEXT: return 0;
    case PGR_FIELD_ID:
        return id_ok(p, n) ? 0 : reject(why, len, 400, "%s: not an id in 1..9223372036854775807", f->name);
    case PGR_FIELD_JSON:
        return json_object_ok(p, n) ? 0 : reject(why, len, 400, "%s: not a JSON object", f->name);
    case PGR_FIELD_ENUM:
        return enum_ok(f, p, n) ? 0 : reject(why, len, 400, "%s: not one of the allowed values", f->name);
    }
    return reject(why, len, 400, "%s: unknown field kind", f->name);
}

int pgr_request_validate(const pgr_scenario *sc, pgr_request *req, char *why, size_t len)
{
    if (why && len) why[0] = '\0';
    for (int i = 0; i < sc->nfields && i < PGR_MAX_FIELDS; i++) {
        const char *p = req->raw[i] ? req->raw[i] : req->text[i];
        size_t n = req->raw[i] ? req->raw_len[i] : strnlen(req->text[i], sizeof req->text[i]);
        int status = check_field(&sc->fields[i], p, n, why, len);
        if (status) return status;
    }
    for (int i = 0; i < sc->nfields && i < PGR_MAX_FIELDS; i++) {
        if (!req->raw[i]) continue;
        memcpy(req->text[i], req->raw[i], req->raw_len[i]);      /* < 80: checked above */
        req->text[i][req->raw_len[i]] = '\0';
        req->raw[i] = NULL;
        req->raw_len[i] = 0;
    }
    return 0;
}
