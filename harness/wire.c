/*
 * wire.c — the protocol v3 message layer (wire.h): startup packets, typed messages, the
 * bodies the proxy reads or writes, step labels, and the two accumulators a proxied
 * connection uses: the frontend's batch (messages up to the Sync or Query that make one
 * step) and the backend's outcome of a step (up to ReadyForQuery).
 *
 * Every read goes through a cursor that knows how many bytes are left; a short body marks
 * the cursor bad instead of reading on. Nothing here touches a socket.
 */
#include "wire.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- reading: a cursor over a body ---- */

typedef struct cursor {
    const uint8_t *p;
    size_t n;
    bool bad;
} cursor;

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static const uint8_t *get_bytes(cursor *c, size_t k)
{
    if (c->bad || c->n < k) { c->bad = true; return NULL; }
    const uint8_t *p = c->p;
    c->p += k;
    c->n -= k;
    return p;
}

static uint8_t get8(cursor *c)
{
    const uint8_t *p = get_bytes(c, 1);
    return p ? p[0] : 0;
}

static int16_t get16(cursor *c)
{
    const uint8_t *p = get_bytes(c, 2);
    return p ? (int16_t)((uint16_t)p[0] << 8 | p[1]) : 0;
}

static int32_t get32(cursor *c)
{
    const uint8_t *p = get_bytes(c, 4);
    return p ? (int32_t)be32(p) : 0;
}

/* A NUL-terminated string inside the body ("" and bad when there is no NUL). */
static const char *get_str(cursor *c)
{
    if (c->bad) return "";
    const uint8_t *z = memchr(c->p, 0, c->n);
    if (!z) { c->bad = true; return ""; }
    const char *s = (const char *)c->p;
    size_t k = (size_t)(z - c->p) + 1;
    c->p += k;
    c->n -= k;
    return s;
}

/* The body was read exactly: nothing bad, nothing left over. */
static int at_end(const cursor *c)
{
    return c->bad || c->n != 0 ? -1 : 0;
}

static cursor body_of(const pgr_wire_msg *m)
{
    return (cursor){ m->body, m->len, false };
}

static void copy_cut(char *dst, size_t cap, const char *src, size_t n)
{
    if (cap == 0) return;
    if (n >= cap) n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ---- packets ---- */

long pgr_wire_startup_read(const uint8_t *buf, size_t n, pgr_wire_startup *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (n < 4) return 0;
    uint32_t len = be32(buf);
    if (len < 8 || len > PGR_WIRE_MAX_STARTUP) {
        snprintf(err, errlen, "invalid length of startup packet (%u bytes)", len);
        return -1;
    }
    if (n < len) return 0;
    uint32_t code = be32(buf + 4);
    if (code == PGR_WIRE_SSL_CODE || code == PGR_WIRE_GSSENC_CODE) {
        if (len != 8) { snprintf(err, errlen, "invalid length of %s request", code == PGR_WIRE_SSL_CODE ? "SSL" : "GSSENC"); return -1; }
        out->kind = code == PGR_WIRE_SSL_CODE ? PGR_STARTUP_SSL : PGR_STARTUP_GSSENC;
        return len;
    }
    if (code == PGR_WIRE_CANCEL_CODE) {
        if (len != 16) { snprintf(err, errlen, "invalid length of cancel request (%u bytes)", len); return -1; }
        out->kind = PGR_STARTUP_CANCEL;
        out->pid = (int32_t)be32(buf + 8);
        out->key = be32(buf + 12);
        return len;
    }
    if (code >> 16 != 3) {
        snprintf(err, errlen, "unsupported frontend protocol %u.%u: the server supports 3.0", code >> 16, code & 0xffff);
        return -1;
    }
    out->kind = PGR_STARTUP_V3;
    out->version = code;
    /* name\0value\0 ... \0: the terminator must be the packet's last byte */
    cursor c = { buf + 8, len - 8, false };
    for (;;) {
        const char *name = get_str(&c);
        if (c.bad) break;
        if (!*name) {
            if (c.n == 0) return len;
            break;
        }
        const char *value = get_str(&c);
        if (c.bad) break;
        if (strcmp(name, "user") == 0) copy_cut(out->user, sizeof out->user, value, strlen(value));
        else if (strcmp(name, "database") == 0) copy_cut(out->database, sizeof out->database, value, strlen(value));
    }
    snprintf(err, errlen, "invalid startup packet layout: expected terminator as last byte");
    return -1;
}

long pgr_wire_msg_read(const uint8_t *buf, size_t n, size_t max, pgr_wire_msg *m, char *err, size_t errlen)
{
    if (n < 5) return 0;
    uint32_t len = be32(buf + 1);
    if (len < 4 || (size_t)len - 4 > max) {
        snprintf(err, errlen, "invalid message length %u (type 0x%02x)", len, buf[0]);
        return -1;
    }
    if (n - 1 < len) return 0;
    m->type = (char)buf[0];
    m->body = buf + 5;
    m->len = len - 4;
    return (long)len + 1;
}

/* ---- bodies ---- */

int pgr_wire_error_parse(const pgr_wire_msg *m, pgr_wire_error *e)
{
    memset(e, 0, sizeof *e);
    cursor c = body_of(m);
    bool have_v = false;
    for (;;) {
        uint8_t f = get8(&c);
        if (c.bad) return -1;
        if (f == 0) break;
        const char *v = get_str(&c);
        if (c.bad) return -1;
        size_t vn = strlen(v);
        switch (f) {
        case 'V': copy_cut(e->severity, sizeof e->severity, v, vn); have_v = true; break;
        case 'S': if (!have_v) copy_cut(e->severity, sizeof e->severity, v, vn); break;
        case 'C': copy_cut(e->sqlstate, sizeof e->sqlstate, v, vn); break;
        case 'n': copy_cut(e->constraint, sizeof e->constraint, v, vn); break;
        case 'M': copy_cut(e->message, sizeof e->message, v, vn); break;
        default: break;
        }
    }
    return 0;
}

int pgr_wire_tag_rows(const pgr_wire_msg *m, long *rows)
{
    cursor c = body_of(m);
    const char *tag = get_str(&c);
    *rows = 0;
    if (at_end(&c) != 0) return -1;
    const char *last = strrchr(tag, ' ');
    last = last ? last + 1 : tag;
    size_t k = strlen(last);
    if (k == 0 || k > 18) return 0;
    long v = 0;
    for (size_t i = 0; i < k; i++) {
        if (!isdigit((unsigned char)last[i])) return 0;
        v = v * 10 + (last[i] - '0');
    }
    *rows = v;
    return 0;
}

int pgr_wire_rowdesc_parse(const pgr_wire_msg *m, pgr_wire_rowdesc *rd)
{
    memset(rd, 0, sizeof *rd);
    cursor c = body_of(m);
    int n = get16(&c);
    if (c.bad || n < 0) return -1;
    for (int i = 0; i < n; i++) {
        const char *name = get_str(&c);
        get32(&c);           /* table oid */
        get16(&c);           /* column number */
        get32(&c);           /* type oid */
        get16(&c);           /* type length */
        get32(&c);           /* type modifier */
        short fmt = get16(&c);
        if (c.bad) return -1;
        if (i < PGR_WIRE_MAX_COLS) {
            copy_cut(rd->name[i], sizeof rd->name[i], name, strlen(name));
            rd->format[i] = fmt;
        }
    }
    rd->ncols = n;
    return at_end(&c);
}

/* Appends to a bounded string; what does not fit is cut. */
typedef struct appender {
    char *out;
    size_t cap, len;
} appender;

static void app_bytes(appender *a, const char *s, size_t n)
{
    if (a->cap == 0 || a->len + 1 >= a->cap) return;
    size_t room = a->cap - 1 - a->len;
    if (n > room) n = room;
    memcpy(a->out + a->len, s, n);
    a->len += n;
    a->out[a->len] = '\0';
}

static void app_str(appender *a, const char *s) { app_bytes(a, s, strlen(s)); }

int pgr_wire_datarow_format(const pgr_wire_rowdesc *rd, const pgr_wire_msg *m, char *out, size_t cap)
{
    appender a = { out, cap, 0 };
    if (cap) out[0] = '\0';
    cursor c = body_of(m);
    int n = get16(&c);
    if (c.bad || n < 0) return -1;
    for (int i = 0; i < n; i++) {
        int32_t len = get32(&c);
        if (c.bad || len < -1) return -1;
        const uint8_t *v = len > 0 ? get_bytes(&c, (size_t)len) : NULL;
        if (c.bad) return -1;
        if (i) app_str(&a, ", ");
        app_str(&a, rd && i < PGR_WIRE_MAX_COLS && i < rd->ncols ? rd->name[i] : "?");
        app_str(&a, "=");
        if (len == -1) app_str(&a, "NULL");
        else if (rd && i < PGR_WIRE_MAX_COLS && i < rd->ncols && rd->format[i] != 0) app_str(&a, "<binary>");
        else if (len > 0) {
            const uint8_t *z = memchr(v, 0, (size_t)len);        /* text has no NUL: stop at one */
            app_bytes(&a, (const char *)v, z ? (size_t)(z - v) : (size_t)len);
        }
    }
    return at_end(&c);
}

int pgr_wire_ready_status(const pgr_wire_msg *m, char *status)
{
    cursor c = body_of(m);
    uint8_t s = get8(&c);
    if (at_end(&c) != 0 || (s != 'I' && s != 'T' && s != 'E')) return -1;
    *status = (char)s;
    return 0;
}

int pgr_wire_backend_key(const pgr_wire_msg *m, int32_t *pid, uint32_t *key)
{
    cursor c = body_of(m);
    *pid = get32(&c);
    *key = (uint32_t)get32(&c);
    return at_end(&c);
}

int pgr_wire_auth_code(const pgr_wire_msg *m, int32_t *code)
{
    cursor c = body_of(m);
    *code = get32(&c);
    return c.bad ? -1 : 0;
}

int pgr_wire_query_text(const pgr_wire_msg *m, const char **sql)
{
    cursor c = body_of(m);
    *sql = get_str(&c);
    return at_end(&c);
}

/* ---- building ---- */

size_t pgr_wire_error_build(uint8_t *out, size_t cap, const char *severity, const char *sqlstate, const char *message)
{
    size_t ns = strlen(severity), nc = strlen(sqlstate), nm = strlen(message);
    size_t fixed = 1 + 4 + 2 * (1 + ns + 1) + (1 + nc + 1) + (1 + 1) + 1;   /* S, V, C, M's code and NUL, end */
    if (cap < fixed) return 0;
    if (nm > cap - fixed) nm = cap - fixed;
    size_t len = fixed + nm;
    uint8_t *p = out;
    *p++ = 'E';
    put32(p, (uint32_t)(len - 1));
    p += 4;
    *p++ = 'S'; memcpy(p, severity, ns + 1); p += ns + 1;
    *p++ = 'V'; memcpy(p, severity, ns + 1); p += ns + 1;
    *p++ = 'C'; memcpy(p, sqlstate, nc + 1); p += nc + 1;
    *p++ = 'M'; memcpy(p, message, nm); p += nm; *p++ = '\0';
    *p++ = '\0';
    return len;
}

size_t pgr_wire_ready_build(uint8_t *out, size_t cap, char status)
{
    if (cap < 6) return 0;
    out[0] = 'Z';
    put32(out + 1, 5);
    out[5] = (uint8_t)status;
    return 6;
}

size_t pgr_wire_cancel_build(uint8_t *out, size_t cap, int32_t pid, uint32_t key)
{
    if (cap < 16) return 0;
    put32(out, 16);
    put32(out + 4, PGR_WIRE_CANCEL_CODE);
    put32(out + 8, (uint32_t)pid);
    put32(out + 12, key);
    return 16;
}

size_t pgr_wire_query_build(uint8_t *out, size_t cap, const char *sql)
{
    size_t n = strlen(sql);
    if (n > PGR_WIRE_MAX_MSG - 1 || cap < n + 6) return 0;
    out[0] = 'Q';
    put32(out + 1, (uint32_t)(n + 5));
    memcpy(out + 5, sql, n + 1);
    return n + 6;
}

size_t pgr_wire_backend_key_build(uint8_t *out, size_t cap, int32_t pid, uint32_t key)
{
    if (cap < 13) return 0;
    out[0] = 'K';
    put32(out + 1, 12);
    put32(out + 5, (uint32_t)pid);
    put32(out + 9, key);
    return 13;
}

/* ---- labels ---- */

/* Past blanks and comments (-- to the end of the line, C comments, nested as SQL nests them). */
static const char *skip_blank(const char *s)
{
    for (;;) {
        while (*s && (isspace((unsigned char)*s) || *s == '(' || *s == ';')) s++;
        if (s[0] == '-' && s[1] == '-') {
            while (*s && *s != '\n') s++;
        } else if (s[0] == '/' && s[1] == '*') {
            int depth = 0;
            do {
                if (s[0] == '/' && s[1] == '*') { depth++; s += 2; }
                else if (s[0] == '*' && s[1] == '/') { depth--; s += 2; }
                else s++;
            } while (*s && depth > 0);
        } else {
            return s;
        }
    }
}

/* The identifier or keyword at s (a quoted name, or a dotted one, as written); its length. */
static size_t word_len(const char *s)
{
    size_t n = 0;
    for (;;) {
        if (s[n] == '"') {
            n++;
            while (s[n] && s[n] != '"') n++;
            if (s[n] == '"') n++;
        } else if (isalnum((unsigned char)s[n]) || s[n] == '_' || s[n] == '$' || (unsigned char)s[n] >= 0x80) {
            n++;
        } else if (s[n] == '.' && n > 0) {
            n++;
        } else {
            return n;
        }
    }
}

static bool word_is(const char *s, size_t n, const char *kw)
{
    return strlen(kw) == n && strncasecmp(s, kw, n) == 0;
}

/* The word after keyword kw at depth 0 of s (no parentheses open), or NULL. */
static const char *word_after(const char *s, const char *kw, size_t *len)
{
    int depth = 0;
    while (*s) {
        if (*s == '\'') {                    /* a string literal: its contents are no keyword */
            for (s++; *s && !(s[0] == '\'' && s[1] != '\''); s += s[0] == '\'' ? 2 : 1) {}
            if (*s) s++;
            continue;
        }
        if (*s == '(') { depth++; s++; continue; }
        if (*s == ')') { depth--; s++; continue; }
        size_t n = word_len(s);
        if (n == 0) { s++; continue; }
        if (depth == 0 && word_is(s, n, kw)) {
            const char *w = skip_blank(s + n);
            *len = word_len(w);
            return *len ? w : NULL;
        }
        s += n;
    }
    return NULL;
}

static void label_of(const char *sql, char *out, size_t cap)
{
    appender a = { out, cap, 0 };
    if (cap) out[0] = '\0';
    /* the program's own name for the step: a comment pgrace:NAME */
    for (const char *c = strstr(sql, "/*"); c; c = strstr(c + 2, "/*")) {
        const char *p = c + 2;
        while (*p == ' ' || *p == '\t') p++;
        if (strncmp(p, "pgrace:", 7) != 0) continue;
        p += 7;
        while (*p == ' ' || *p == '\t') p++;
        const char *end = strstr(p, "*/");
        if (!end) break;
        while (end > p && isspace((unsigned char)end[-1])) end--;
        if (end > p) {
            app_bytes(&a, p, (size_t)(end - p));
            return;
        }
    }
    const char *s = skip_blank(sql);
    size_t n = word_len(s);
    if (n == 0) { app_str(&a, "statement"); return; }
    char verb[16];
    size_t vn = n < sizeof verb ? n : sizeof verb - 1;
    for (size_t i = 0; i < vn; i++) verb[i] = (char)toupper((unsigned char)s[i]);
    verb[vn] = '\0';
    app_str(&a, verb);
    const char *what = NULL;
    size_t wn = 0;
    const char *rest = s + n;
    if (strcmp(verb, "UPDATE") == 0 || strcmp(verb, "COPY") == 0 || strcmp(verb, "TRUNCATE") == 0 ||
        strcmp(verb, "LOCK") == 0) {
        what = skip_blank(rest);
        wn = word_len(what);
        if (word_is(what, wn, "ONLY") || word_is(what, wn, "TABLE")) { what = skip_blank(what + wn); wn = word_len(what); }
    } else if (strcmp(verb, "INSERT") == 0 || strcmp(verb, "MERGE") == 0) {
        app_str(&a, " INTO");
        what = word_after(rest, "INTO", &wn);
    } else if (strcmp(verb, "DELETE") == 0) {
        app_str(&a, " FROM");
        what = word_after(rest, "FROM", &wn);
    } else if (strcmp(verb, "SELECT") == 0) {
        what = word_after(rest, "FROM", &wn);
    }
    if (what && wn) {
        app_str(&a, " ");
        app_bytes(&a, what, wn);
    }
}

void pgr_wire_label(const char *sql, char *out, size_t cap)
{
    label_of(sql, out, cap);
    for (char *c = out; cap && *c; c++)      /* one line in a trace, whatever the program wrote */
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = ' ';
}

/* ---- the frontend's batch ---- */

typedef struct name_ent {
    struct name_ent *next;
    char *text;
    char name[];
} name_ent;

enum { NAME_BUCKETS = 256, MAX_NAMES = 10000 };

struct pgr_wire_names {
    name_ent *bucket[NAME_BUCKETS];
    int count;
};

static unsigned name_hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h % NAME_BUCKETS;
}

static name_ent **name_find(struct pgr_wire_names *nm, const char *name)
{
    name_ent **pp = &nm->bucket[name_hash(name)];
    while (*pp && strcmp((*pp)->name, name) != 0) pp = &(*pp)->next;
    return pp;
}

/* Remember name's text (a Parse); past MAX_NAMES names new ones are not remembered. */
static void name_put(pgr_wire_batch *b, const char *name, const char *text)
{
    if (!b->names && !(b->names = calloc(1, sizeof *b->names))) { b->oom = true; return; }
    name_ent **pp = name_find(b->names, name);
    char *copy = strdup(text);
    if (!copy) { b->oom = true; return; }
    if (*pp) {
        free((*pp)->text);
        (*pp)->text = copy;
        return;
    }
    if (b->names->count >= MAX_NAMES) { free(copy); return; }
    size_t n = strlen(name);
    name_ent *e = malloc(sizeof *e + n + 1);
    if (!e) { free(copy); b->oom = true; return; }
    memcpy(e->name, name, n + 1);
    e->text = copy;
    e->next = NULL;
    *pp = e;
    b->names->count++;
}

static const char *name_get(const pgr_wire_batch *b, const char *name)
{
    if (!b->names) return NULL;
    name_ent **pp = name_find(b->names, name);
    return *pp ? (*pp)->text : NULL;
}

static void name_del(pgr_wire_batch *b, const char *name)
{
    if (!b->names) return;
    name_ent **pp = name_find(b->names, name);
    if (!*pp) return;
    name_ent *e = *pp;
    *pp = e->next;
    free(e->text);
    free(e);
    b->names->count--;
}

static void set_sql(pgr_wire_batch *b, const char *sql)
{
    if (b->sealed) return;
    size_t n = strlen(sql);
    if (n + 1 > b->sql_cap) {
        size_t ncap = n + 1 < 256 ? 256 : n + 1;
        char *p = realloc(b->sql, ncap);
        if (!p) { b->oom = true; return; }
        b->sql = p;
        b->sql_cap = ncap;
    }
    memcpy(b->sql, sql, n + 1);
}

/* The first Bind's parameters, as text where they are text (for the step's record). */
static void keep_params(pgr_wire_batch *b, cursor c, int nfmt, const uint8_t *fmts)
{
    int np = get16(&c);
    if (c.bad || np < 0) return;
    appender a = { b->param_text, sizeof b->param_text, 0 };
    b->param_text[0] = '\0';
    for (int i = 0; i < np && i < PGR_LEN(b->params); i++) {
        int32_t len = get32(&c);
        if (c.bad || len < -1) return;
        const uint8_t *v = len > 0 ? get_bytes(&c, (size_t)len) : NULL;
        if (c.bad) return;
        int fmt = nfmt == 0 ? 0 : nfmt == 1 ? (fmts[0] << 8 | fmts[1]) : i < nfmt ? (fmts[2 * i] << 8 | fmts[2 * i + 1]) : 0;
        if (len == -1) { b->params[b->nparams++] = NULL; continue; }
        size_t start = a.len;
        if (fmt != 0) {
            app_str(&a, "<binary>");
        } else if (len > 0) {
            const uint8_t *z = memchr(v, 0, (size_t)len);
            size_t k = z ? (size_t)(z - v) : (size_t)len;
            app_bytes(&a, (const char *)v, k > 40 ? 40 : k);
        }
        if (a.len + 1 >= a.cap) return;                      /* no room for its NUL */
        a.len++;                                             /* each value its own string */
        a.out[a.len] = '\0';
        b->params[b->nparams++] = b->param_text + start;
    }
}

pgr_fe_action pgr_wire_batch_add(pgr_wire_batch *b, const pgr_wire_msg *m, char *err, size_t errlen)
{
    cursor c = body_of(m);
    bool first = b->nmsgs == 0;
    switch (m->type) {
    case 'Q': {
        const char *sql = get_str(&c);
        if (at_end(&c) != 0) goto malformed;
        if (first || !b->sql || !b->sql[0]) set_sql(b, sql);
        b->kind = 'Q';
        break;
    }
    case 'P': {                              /* Parse: name, query, parameter types */
        const char *name = get_str(&c);
        const char *query = get_str(&c);
        int nt = get16(&c);
        if (c.bad || nt < 0) goto malformed;
        get_bytes(&c, (size_t)nt * 4);
        if (at_end(&c) != 0) goto malformed;
        name_put(b, name, query);
        if (!b->sql || !b->sql[0]) set_sql(b, query);
        b->extended = true;
        break;
    }
    case 'B': {                              /* Bind: portal, statement, formats, values, result formats */
        get_str(&c);
        const char *stmt = get_str(&c);
        int nf = get16(&c);
        if (c.bad || nf < 0) goto malformed;
        const uint8_t *fmts = get_bytes(&c, (size_t)nf * 2);
        cursor values = c;
        int np = get16(&c);
        if (c.bad || np < 0) goto malformed;
        for (int i = 0; i < np; i++) {
            int32_t len = get32(&c);
            if (c.bad || len < -1) goto malformed;
            if (len > 0) get_bytes(&c, (size_t)len);
        }
        int nr = get16(&c);
        if (c.bad || nr < 0) goto malformed;
        get_bytes(&c, (size_t)nr * 2);
        if (at_end(&c) != 0) goto malformed;
        if (!b->bound && !b->sealed) {       /* the first Bind names the step's statement */
            b->bound = true;
            const char *text = name_get(b, stmt);
            if (text) set_sql(b, text);
            keep_params(b, values, nf, fmts);
        }
        b->extended = true;
        break;
    }
    case 'D':                                /* Describe, Close: 'S' or 'P', then a name */
    case 'C': {
        uint8_t what = get8(&c);
        const char *name = get_str(&c);
        if (at_end(&c) != 0 || (what != 'S' && what != 'P')) goto malformed;
        if (m->type == 'C' && what == 'S') name_del(b, name);
        b->extended = true;
        break;
    }
    case 'E':                                /* Execute: portal, row limit */
        get_str(&c);
        get32(&c);
        if (at_end(&c) != 0) goto malformed;
        b->extended = true;
        break;
    case 'H':
    case 'S':
        if (m->len != 0) goto malformed;
        b->kind = m->type;
        break;
    case 'F':                                /* FunctionCall: the server checks its body */
        if (m->len < 4) goto malformed;
        b->kind = 'F';
        break;
    case 'X':
        return PGR_FE_TERMINATE;
    case 'd':
    case 'c':
    case 'f':
        b->bytes += 5 + m->len;              /* kept in the stream, counted as no message */
        return PGR_FE_DROP;
    case 'p':
        snprintf(err, errlen, "unexpected password message after authentication");
        return PGR_FE_BAD;
    default:
        snprintf(err, errlen, "invalid frontend message type %d", (unsigned char)m->type);
        return PGR_FE_BAD;
    }
    b->nmsgs++;
    b->bytes += 5 + m->len;
    switch (m->type) {
    case 'Q': case 'S': case 'F': return PGR_FE_STEP;
    case 'H': return PGR_FE_FLUSH;
    default: return PGR_FE_MORE;
    }
malformed:
    snprintf(err, errlen, "invalid frontend message format (type '%c', %zu bytes)",
             isprint((unsigned char)m->type) ? m->type : '?', m->len);
    return PGR_FE_BAD;
}

void pgr_wire_batch_reset(pgr_wire_batch *b)
{
    b->bytes = 0;
    b->nmsgs = 0;
    b->extended = false;
    if (b->sql) b->sql[0] = '\0';
    b->kind = 0;
    b->nparams = 0;
    b->bound = false;
    b->sealed = false;
    memset(b->params, 0, sizeof b->params);
    b->param_text[0] = '\0';
    b->oom = false;
}

void pgr_wire_batch_free(pgr_wire_batch *b)
{
    if (b->names) {
        for (int i = 0; i < NAME_BUCKETS; i++)
            for (name_ent *e = b->names->bucket[i], *next; e; e = next) {
                next = e->next;
                free(e->text);
                free(e);
            }
        free(b->names);
    }
    free(b->sql);
    memset(b, 0, sizeof *b);
}

/* ---- the backend's answer of one step ---- */

void pgr_wire_outcome_init(pgr_wire_outcome *o, pgr_step *st)
{
    memset(o, 0, sizeof *o);
    o->st = st;
    st->sqlstate[0] = '\0';
    st->rows = 0;
    st->values[0] = st->constraint[0] = st->message[0] = '\0';
}

pgr_be_action pgr_wire_outcome_add(pgr_wire_outcome *o, const pgr_wire_msg *m)
{
    pgr_step *st = o->st;
    cursor c = body_of(m);
    switch (m->type) {
    case 'E': {
        pgr_wire_error e;
        if (pgr_wire_error_parse(m, &e) != 0) return PGR_BE_BAD;
        if (!o->have_error) {
            o->have_error = true;
            copy_cut(st->sqlstate, sizeof st->sqlstate, e.sqlstate[0] ? e.sqlstate : "XX000", 5);
            copy_cut(st->constraint, sizeof st->constraint, e.constraint, strlen(e.constraint));
            copy_cut(st->message, sizeof st->message, e.message, strlen(e.message));
        }
        return PGR_BE_MORE;
    }
    case 'N': {
        pgr_wire_error e;
        return pgr_wire_error_parse(m, &e) == 0 ? PGR_BE_MORE : PGR_BE_BAD;
    }
    case 'C': {
        long rows;
        if (pgr_wire_tag_rows(m, &rows) != 0) return PGR_BE_BAD;
        if (!o->have_error) {
            st->rows = rows;
            copy_cut(st->sqlstate, sizeof st->sqlstate, "00000", 5);
        }
        return PGR_BE_MORE;
    }
    case 'T':
        if (o->have_row) {
            pgr_wire_rowdesc rd;
            return pgr_wire_rowdesc_parse(m, &rd) == 0 ? PGR_BE_MORE : PGR_BE_BAD;
        }
        if (pgr_wire_rowdesc_parse(m, &o->rd) != 0) return PGR_BE_BAD;
        o->have_rd = true;
        return PGR_BE_MORE;
    case 'D':
        if (!o->have_row) {
            o->have_row = true;
            if (pgr_wire_datarow_format(o->have_rd ? &o->rd : NULL, m, st->values, sizeof st->values) != 0)
                return PGR_BE_BAD;
        }
        return PGR_BE_MORE;
    case 'Z':
        if (pgr_wire_ready_status(m, &o->status) != 0) return PGR_BE_BAD;
        if (!st->sqlstate[0]) copy_cut(st->sqlstate, sizeof st->sqlstate, "00000", 5);
        return PGR_BE_READY;
    case 'G':                                /* CopyInResponse: format, columns' formats */
    case 'H':                                /* CopyOutResponse */
    case 'W': {                              /* CopyBothResponse */
        get8(&c);
        int n = get16(&c);
        if (c.bad || n < 0) return PGR_BE_BAD;
        get_bytes(&c, (size_t)n * 2);
        if (at_end(&c) != 0) return PGR_BE_BAD;
        return m->type == 'H' ? PGR_BE_MORE : PGR_BE_COPY_IN;
    }
    case 'S': {                              /* ParameterStatus: name, value */
        get_str(&c);
        get_str(&c);
        return at_end(&c) == 0 ? PGR_BE_MORE : PGR_BE_BAD;
    }
    case 'A': {                              /* NotificationResponse: pid, channel, payload */
        get32(&c);
        get_str(&c);
        get_str(&c);
        return at_end(&c) == 0 ? PGR_BE_MORE : PGR_BE_BAD;
    }
    case '1': case '2': case '3': case 'n': case 'I': case 'c': case 's':
        return m->len == 0 ? PGR_BE_MORE : PGR_BE_BAD;
    case 't':                                /* ParameterDescription */
    case 'd':                                /* CopyData */
    case 'V':                                /* FunctionCallResponse */
        return PGR_BE_MORE;
    default:                                 /* Authentication, BackendKeyData ... after startup */
        return PGR_BE_BAD;
    }
}
