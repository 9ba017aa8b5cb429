/*
 * http.c — an HTTP/1.1 request from a template, an answer parsed, its id read (http.h).
 */
#include "http.h"
#include "intern.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void add(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *g = realloc(b->p, cap);
        if (!g) { b->oom = true; return; }
        b->p = g;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void adds(sbuf *b, const char *s) { add(b, s, strlen(s)); }

/* Append text with :key, :session and :case replaced (a placeholder is the word alone:
 * `:keys` and `::key` are left as written). */
static void subst(sbuf *b, const char *t, const char *key, const char *session, const char *kase)
{
    static const char *const names[] = { "key", "session", "case" };
    const char *vals[] = { key, session, kase };
    while (*t) {
        const char *c = strchr(t, ':');
        if (!c) { adds(b, t); return; }
        add(b, t, (size_t)(c - t));
        bool done = false;
        for (int i = 0; i < 3 && !done && (c == t || c[-1] != ':'); i++) {
            size_t n = strlen(names[i]);
            char after = c[1 + n];
            if (strncmp(c + 1, names[i], n) == 0 && !isalnum((unsigned char)after) && after != '_') {
                adds(b, vals[i]);
                t = c + 1 + n;
                done = true;
            }
        }
        if (!done) { add(b, c, 1); t = c + 1; }
    }
}

char *pgr_http_request_bytes(const pgr_http_request *r, const char *host, const char *key, const char *session,
                             const char *kase, size_t *len)
{
    sbuf b = { 0 }, body = { 0 };
    if (r->body) subst(&body, r->body, key, session, kase);
    adds(&b, r->method);
    adds(&b, " ");
    subst(&b, r->path, key, session, kase);
    adds(&b, " HTTP/1.1\r\nHost: ");
    adds(&b, host);
    adds(&b, "\r\n");
    bool typed = false;
    for (int i = 0; i < r->nheaders; i++) {
        subst(&b, r->headers[i], key, session, kase);
        adds(&b, "\r\n");
        typed |= strncasecmp(r->headers[i], "content-type:", 13) == 0;
    }
    if (r->body && !typed) adds(&b, "Content-Type: application/json\r\n");
    if (r->body || strcmp(r->method, "GET") != 0) {
        char cl[48];
        snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", body.n);
        adds(&b, cl);
    }
    adds(&b, "\r\n");
    if (body.n) add(&b, body.p, body.n);
    bool oom = b.oom || body.oom;
    free(body.p);
    if (oom) { free(b.p); return NULL; }
    *len = b.n;
    return b.p;
}

static long bad(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static long bad(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* The end of the line starting at i in [0, n): the index of its '\n', or n when none. */
static size_t line_end(const char *s, size_t i, size_t n)
{
    const char *nl = memchr(s + i, '\n', n - i);
    return nl ? (size_t)(nl - s) : n;
}

/* A chunked body from buf[i, len): 0 more needed, -1 bad, else the bytes up to its end
 * (from 0) with a->dechunked set. */
static long dechunk(const char *buf, size_t i, size_t len, pgr_http_answer *a, char *err, size_t errlen)
{
    sbuf out = { 0 };
    for (;;) {
        size_t e = line_end(buf, i, len);
        if (e == len) { free(out.p); return len - i > 64 ? bad(err, errlen, "a chunk size line too long") : 0; }
        size_t k = i, size = 0;
        int digits = 0;
        while (k < e && isxdigit((unsigned char)buf[k])) {
            if (++digits > 8) { free(out.p); return bad(err, errlen, "a chunk larger than 4 GiB"); }
            char c = buf[k++];
            size = size * 16 + (size_t)(isdigit((unsigned char)c) ? c - '0' : (tolower((unsigned char)c) - 'a' + 10));
        }
        if (digits == 0) { free(out.p); return bad(err, errlen, "a chunk size that is not hexadecimal"); }
        if (out.n + size > PGR_HTTP_MAX_BODY) { free(out.p); return bad(err, errlen, "a body over %u MiB", PGR_HTTP_MAX_BODY >> 20); }
        i = e + 1;
        if (size == 0) {                       /* trailers, then an empty line */
            for (;;) {
                size_t te = line_end(buf, i, len);
                if (te == len) { free(out.p); return 0; }
                bool empty = te == i || (te == i + 1 && buf[i] == '\r');
                i = te + 1;
                if (empty) break;
            }
            if (out.oom) return bad(err, errlen, "out of memory");
            a->dechunked = out.p ? out.p : strdup("");
            a->body = a->dechunked;
            a->body_len = out.n;
            return (long)i;
        }
        if (len - i < size + 1) { free(out.p); return 0; }
        add(&out, buf + i, size);
        i += size;
        if (buf[i] == '\r') {
            if (len - i < 2) { free(out.p); return 0; }
            i++;
        }
        if (buf[i] != '\n') { free(out.p); return bad(err, errlen, "a chunk not followed by a line end"); }
        i++;
    }
}

long pgr_http_parse_answer(const char *buf, size_t len, bool eof, pgr_http_answer *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    /* the head ends at the first empty line */
    size_t head = 0;
    for (size_t i = 0; i < len; i++)
        if (buf[i] == '\n' && ((i >= 1 && buf[i - 1] == '\n') || (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n'))) {
            head = i + 1;
            break;
        }
    if (!head) {
        if (len >= 5 && strncmp(buf, "HTTP/", 5) != 0) return bad(err, errlen, "not an HTTP answer (it starts with something else)");
        if (len > PGR_HTTP_MAX_HEAD) return bad(err, errlen, "an answer's head over %u KiB", PGR_HTTP_MAX_HEAD >> 10);
        if (eof) return bad(err, errlen, len ? "the connection ended in the middle of an answer's head" : "the connection ended without an answer");
        return 0;
    }
    if (head > PGR_HTTP_MAX_HEAD) return bad(err, errlen, "an answer's head over %u KiB", PGR_HTTP_MAX_HEAD >> 10);
    /* HTTP/1.x SSS reason */
    if (head < 13 || strncmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') || buf[8] != ' ' ||
        !isdigit((unsigned char)buf[9]) || !isdigit((unsigned char)buf[10]) || !isdigit((unsigned char)buf[11]) ||
        (buf[12] != ' ' && buf[12] != '\r' && buf[12] != '\n'))
        return bad(err, errlen, "not an HTTP/1.x status line");
    int status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    if (status < 100 || status > 599) return bad(err, errlen, "a status %d outside 100..599", status);
    bool http10 = buf[7] == '0', keep_alive = false, chunked = false, have_len = false;
    size_t clen = 0;
    a->close = http10;
    for (size_t i = line_end(buf, 0, head) + 1; i < head;) {
        size_t e = line_end(buf, i, head), ve = e;
        while (ve > i && buf[ve - 1] == '\r') ve--;
        if (ve == i) break;
        const char *colon = memchr(buf + i, ':', ve - i);
        if (!colon) return bad(err, errlen, "a header line without ':'");
        size_t nlen = (size_t)(colon - (buf + i));
        const char *v = colon + 1;
        while (v < buf + ve && (*v == ' ' || *v == '\t')) v++;
        size_t vlen = (size_t)(buf + ve - v);
        if (nlen == 14 && strncasecmp(buf + i, "content-length", 14) == 0) {
            size_t x = 0;
            if (vlen == 0 || vlen > 10) return bad(err, errlen, "a bad Content-Length");
            for (size_t k = 0; k < vlen; k++) {
                if (!isdigit((unsigned char)v[k])) return bad(err, errlen, "a bad Content-Length");
                x = x * 10 + (size_t)(v[k] - '0');
            }
            if (have_len && x != clen) return bad(err, errlen, "two different Content-Lengths");
            if (x > PGR_HTTP_MAX_BODY) return bad(err, errlen, "a body over %u MiB", PGR_HTTP_MAX_BODY >> 20);
            clen = x;
            have_len = true;
        } else if (nlen == 17 && strncasecmp(buf + i, "transfer-encoding", 17) == 0) {
            chunked = vlen >= 7 && strncasecmp(v + vlen - 7, "chunked", 7) == 0;
        } else if (nlen == 10 && strncasecmp(buf + i, "connection", 10) == 0) {
            if (vlen >= 5 && strncasecmp(v, "close", 5) == 0) a->close = true;
            if (vlen >= 10 && strncasecmp(v, "keep-alive", 10) == 0) keep_alive = true;
        }
        i = e + 1;
    }
    if (http10 && keep_alive) a->close = false;
    a->status = status;
    bool no_body = status < 200 || status == 204 || status == 304;
    if (no_body) {
        if (status < 200) return bad(err, errlen, "an informational answer %d (pgrace sends no Expect)", status);
        return (long)head;
    }
    if (chunked) {
        long r = dechunk(buf, head, len, a, err, errlen);
        if (r == 0 && eof) return bad(err, errlen, "the connection ended in the middle of a chunked body");
        return r;
    }
    if (have_len) {
        if (len - head < clen) {
            if (eof) return bad(err, errlen, "the connection ended %zu bytes into a body of %zu", len - head, clen);
            return 0;
        }
        a->body = buf + head;
        a->body_len = clen;
        return (long)(head + clen);
    }
    /* no length: the body ends with the connection */
    if (len - head > PGR_HTTP_MAX_BODY) return bad(err, errlen, "a body over %u MiB", PGR_HTTP_MAX_BODY >> 20);
    if (!eof) return 0;
    a->close = true;
    a->body = buf + head;
    a->body_len = len - head;
    return (long)len;
}

void pgr_http_answer_free(pgr_http_answer *a)
{
    free(a->dechunked);
    a->dechunked = NULL;
}

long long pgr_http_json_id(const char *body, size_t len, const char *path)
{
    if (!path || !body || len == 0) return -1;
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_DECODE_ANY, &je);
    if (!root) return -1;
    json_t *at = root;
    char part[128];
    for (const char *p = path; at && *p;) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n == 0 || n >= sizeof part) { at = NULL; break; }
        memcpy(part, p, n);
        part[n] = '\0';
        if (json_is_array(at)) {
            char *end;
            errno = 0;
            long ix = strtol(part, &end, 10);
            at = *end || errno || ix < 0 ? NULL : json_array_get(at, (size_t)ix);
        } else {
            at = json_object_get(at, part);
        }
        p = dot ? dot + 1 : p + n;
    }
    long long id = -1;
    if (json_is_integer(at)) {
        id = json_integer_value(at);
    } else if (json_is_real(at) && json_real_value(at) == (double)(long long)json_real_value(at)) {
        id = (long long)json_real_value(at);
    } else if (json_is_string(at)) {
        const char *s = json_string_value(at);
        size_t n = json_string_length(at);
        bool digits = n > 0 && n <= 18;
        for (size_t i = 0; digits && i < n; i++) digits = isdigit((unsigned char)s[i]);
        if (digits) {
            id = strtoll(s, NULL, 10);
        } else {
            id = (long long)(pgr_bytes_hash(s, n) >> 1);
        }
    }
    json_decref(root);
    return id;
}
