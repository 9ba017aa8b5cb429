/*
 * spec_parse.c — spec files into a pgr_spec (the grammar is in spec.h). A hand-written
 * recursive descent parser over an on-demand lexer; no server, no globals.
 *
 * isolationtester's part is read exactly as PostgreSQL 15's specscanner.l/specparse.y
 * read it: `#` comments to the end of the line; names plain ([A-Za-z_\x80-\xff] then
 * [A-Za-z0-9_$\x80-\xff]) or double-quoted ("" is a quote inside); six reserved words
 * (notices, permutation, session, setup, step, teardown) that are never plain names; an
 * SQL block is the text from '{' to the first '}', less the spaces, tabs and CRs right
 * after '{' and right before '}' (newlines stay, so isolationtester's "step x: \n..." is
 * kept byte for byte).
 *
 * pgrace's words (trial, variant, case, invariant, expect, kind, if, rows, ...) are not
 * reserved: they mean something only where the grammar expects them, so a PostgreSQL
 * spec with a step called `case` still parses. Two places need a rule to stay
 * unambiguous: a permutation ends at an item word (trial, variant, client, http, app,
 * model, case, invariant, expect) unless a step of that name was declared before it; an expect's trailing
 * `case NAME` belongs to the expect when NAME is a case declared before it, else it
 * starts a case item.
 *
 * Errors are one line, "PATH:LINE:COL: what" (columns count UTF-8 characters); every
 * byte that is not printable is shown escaped (\xNN), never raw.
 */
#include "intern.h"
#include "spec.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistr.h>

#define SPEC_MAX_BYTES (16u << 20)   /* a larger file is refused (pgr_spec_load) */
#define SHOW_MAX 48                  /* bytes of a name or token quoted in an error */

typedef enum {
    T_EOF, T_WORD, T_QNAME, T_NUMBER, T_LBRACE, T_RBRACE, T_LPAREN, T_RPAREN, T_COMMA, T_STAR,
    T_ARROW, T_OP
} tkind;

typedef struct token {
    tkind kind;
    pgr_spec_pos pos;
    size_t start, end;               /* bytes of the token in the text */
    char *text;                      /* WORD, NUMBER: as written; QNAME: unquoted. Owned */
    pgr_cond_op op;                  /* T_OP */
} token;

typedef struct parser {
    const char *path;
    const char *s;
    size_t n, off;                   /* the text, and where the lexer stands */
    int line, col;                   /* of off */
    token tok;                       /* the peeked token when have */
    bool have;
    pgr_spec *out;
    char *err;
    size_t errlen;
} parser;

/* ---- small helpers ---- */

/* Append an element to the growing array *arrp (any T **; memcpy keeps it type-clean) of *n
 * elements of size bytes; returns the new element zeroed, or NULL when out of memory. */
static void *push(void *arrp, int *n, size_t size)
{
    void *arr;
    memcpy(&arr, arrp, sizeof arr);
    if ((*n & (*n - 1)) == 0) {                       /* 0, 1, 2, 4, ...: grow to the next power */
        size_t cap = *n ? (size_t)*n * 2 : 1;
        void *g = realloc(arr, cap * size);
        if (!g) return NULL;
        arr = g;
        memcpy(arrp, &arr, sizeof arr);
    }
    char *e = (char *)arr + (size_t)*n * size;
    memset(e, 0, size);
    (*n)++;
    return e;
}

static char *dup_bytes(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* Copy at most max bytes of s into dst, printable: control bytes become \xNN, a cut never
 * splits a UTF-8 sequence, and a cut is marked "...". */
static void show_max(char *dst, size_t cap, const char *s, size_t n, size_t max)
{
    size_t o = 0, lim = n;
    bool cut = false;
    if (lim > max) {
        lim = max;
        while (lim > 0 && ((unsigned char)s[lim] & 0xc0) == 0x80) lim--;
        cut = true;
    }
    for (size_t i = 0; i < lim && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f) o += (size_t)snprintf(dst + o, cap - o, "\\x%02x", c);
        else dst[o++] = (char)c;
    }
    if (cut && o + 4 < cap) { memcpy(dst + o, "...", 3); o += 3; }
    dst[o < cap ? o : cap - 1] = '\0';
}

/* A name or token as an error quotes it: at most SHOW_MAX bytes. */
static void show(char *dst, size_t cap, const char *s, size_t n)
{
    show_max(dst, cap, s, n, SHOW_MAX);
}

static int fail(parser *p, pgr_spec_pos at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(parser *p, pgr_spec_pos at, const char *fmt, ...)
{
    char path[PATH_MAX], what[PGR_ERRLEN];
    show_max(path, sizeof path, p->path, strlen(p->path), PATH_MAX / 4 - 8);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(p->err, p->errlen, "%s:%d:%d: %s", path, at.line, at.col, what);
    return -1;
}

/* A token as an error names it: 'word', "quoted", '{', end of file. */
static const char *describe(const token *t, char *buf, size_t cap)
{
    char s[SHOW_MAX * 4 + 8];
    switch (t->kind) {
    case T_EOF: return "end of file";
    case T_QNAME:
        show(s, sizeof s, t->text, strlen(t->text));
        snprintf(buf, cap, "\"%s\"", s);
        return buf;
    case T_WORD: case T_NUMBER:
        show(s, sizeof s, t->text, strlen(t->text));
        snprintf(buf, cap, "'%s'", s);
        return buf;
    default: break;
    }
    return "";
}

static const char *tok_desc(parser *p, const token *t, char *buf, size_t cap)
{
    if (t->kind == T_EOF || t->kind == T_QNAME || t->kind == T_WORD || t->kind == T_NUMBER)
        return describe(t, buf, cap);
    char s[SHOW_MAX * 4 + 8];
    show(s, sizeof s, p->s + t->start, t->end - t->start);
    snprintf(buf, cap, "'%s'", s);
    return buf;
}

/* ---- the lexer ---- */

static void advance(parser *p, size_t to)
{
    for (; p->off < to; p->off++) {
        unsigned char c = (unsigned char)p->s[p->off];
        if (c == '\n') { p->line++; p->col = 1; }
        else if ((c & 0xc0) != 0x80) p->col++;        /* a UTF-8 continuation byte is no column */
    }
}

static pgr_spec_pos here(const parser *p)
{
    return (pgr_spec_pos){ p->line, p->col };
}

static bool ident_start(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c >= 0x80;
}

static bool ident_cont(unsigned char c)
{
    return ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

static void skip_blank(parser *p)
{
    while (p->off < p->n) {
        char c = p->s[p->off];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            advance(p, p->off + 1);
        } else if (c == '#') {
            size_t e = p->off;
            while (e < p->n && p->s[e] != '\n' && p->s[e] != '\r') e++;
            advance(p, e);
        } else {
            break;
        }
    }
}

/* Lex the next token into t (t->text owned by the caller). 0, or -1 with the error. */
static int lex(parser *p, token *t)
{
    skip_blank(p);
    memset(t, 0, sizeof *t);
    t->pos = here(p);
    t->start = p->off;
    if (p->off >= p->n) { t->kind = T_EOF; t->end = p->off; return 0; }
    const char *s = p->s;
    size_t i = p->off;
    unsigned char c = (unsigned char)s[i];
    if (c == '"') {
        /* "quoted name": "" is a quote; a newline or the end of the file ends it badly */
        size_t j = i + 1, len = 0;
        for (;;) {
            if (j >= p->n || s[j] == '\n') return fail(p, t->pos, "unterminated quoted name");
            if (s[j] == '"') {
                if (j + 1 < p->n && s[j + 1] == '"') { j += 2; len++; continue; }
                break;
            }
            j++;
            len++;
        }
        if (len == 0) return fail(p, t->pos, "empty quoted name");
        t->text = malloc(len + 1);
        if (!t->text) return fail(p, t->pos, "out of memory");
        size_t o = 0;
        for (size_t k = i + 1; k < j; k++) {
            t->text[o++] = s[k];
            if (s[k] == '"') k++;
        }
        t->text[o] = '\0';
        t->kind = T_QNAME;
        advance(p, j + 1);
    } else if (ident_start(c)) {
        size_t j = i + 1;
        while (j < p->n && ident_cont((unsigned char)s[j])) j++;
        /* STEP.COLUMN (an answer's id taken from an earlier step) is one word */
        while (j + 1 < p->n && s[j] == '.' && ident_start((unsigned char)s[j + 1]))
            for (j += 2; j < p->n && ident_cont((unsigned char)s[j]); j++) {}
        t->kind = T_WORD;
        t->text = dup_bytes(s + i, j - i);
        if (!t->text) return fail(p, t->pos, "out of memory");
        advance(p, j);
    } else if ((c >= '0' && c <= '9') || (c == '-' && i + 1 < p->n && s[i + 1] >= '0' && s[i + 1] <= '9')) {
        /* digits, and whatever letters stick to them: one token, so "40P01" is one SQLSTATE
         * and "12ab" one bad number */
        size_t j = i + 1;
        while (j < p->n && (ident_cont((unsigned char)s[j]) && (unsigned char)s[j] < 0x80)) j++;
        t->kind = T_NUMBER;
        t->text = dup_bytes(s + i, j - i);
        if (!t->text) return fail(p, t->pos, "out of memory");
        advance(p, j);
    } else {
        size_t len = 1;
        switch (c) {
        case '{': t->kind = T_LBRACE; break;
        case '}': t->kind = T_RBRACE; break;
        case '(': t->kind = T_LPAREN; break;
        case ')': t->kind = T_RPAREN; break;
        case ',': t->kind = T_COMMA; break;
        case '*': t->kind = T_STAR; break;
        case '=': t->kind = T_OP; t->op = PGR_OP_EQ; break;
        case '-':
            if (i + 1 < p->n && s[i + 1] == '>') { t->kind = T_ARROW; len = 2; break; }
            goto bad;
        case '!':
            if (i + 1 < p->n && s[i + 1] == '=') { t->kind = T_OP; t->op = PGR_OP_NE; len = 2; break; }
            goto bad;
        case '<': case '>': {
            bool eq = i + 1 < p->n && s[i + 1] == '=';
            t->kind = T_OP;
            t->op = c == '<' ? (eq ? PGR_OP_LE : PGR_OP_LT) : (eq ? PGR_OP_GE : PGR_OP_GT);
            len = eq ? 2 : 1;
            break;
        }
        default:
        bad: {
            size_t k = i + 1;
            while (k < p->n && ((unsigned char)s[k] & 0xc0) == 0x80) k++;   /* the whole character */
            char shown[32];
            show(shown, sizeof shown, s + i, k - i);
            return fail(p, t->pos, "unexpected character '%s'", shown);
        }
        }
        advance(p, i + len);
    }
    t->end = p->off;
    return 0;
}

static const token *peek(parser *p)
{
    if (!p->have) {
        if (lex(p, &p->tok) != 0) return NULL;
        p->have = true;
    }
    return &p->tok;
}

static void drop(parser *p)               /* discard the peeked token */
{
    free(p->tok.text);
    p->tok.text = NULL;
    p->have = false;
}

/* Where the lexer stands, to come back to (two-token lookahead). */
typedef struct mark { size_t off; int line, col; } mark;

static mark set_mark(parser *p)
{
    if (p->have) return (mark){ p->tok.start, p->tok.pos.line, p->tok.pos.col };
    return (mark){ p->off, p->line, p->col };
}

static void to_mark(parser *p, mark m)
{
    if (p->have) drop(p);
    p->off = m.off;
    p->line = m.line;
    p->col = m.col;
}

static bool is_word(const token *t, const char *w)
{
    return t && t->kind == T_WORD && strcmp(t->text, w) == 0;
}

/* isolationtester's reserved words: never a plain name. */
static bool reserved(const char *w)
{
    static const char *const words[] = { "notices", "permutation", "session", "setup", "step", "teardown" };
    for (int i = 0; i < PGR_LEN(words); i++)
        if (strcmp(w, words[i]) == 0) return true;
    return false;
}

/* pgrace's item words. */
static bool item_word(const char *w)
{
    static const char *const words[] = { "trial", "variant", "client", "http", "app", "model", "case", "invariant", "expect" };
    for (int i = 0; i < PGR_LEN(words); i++)
        if (strcmp(w, words[i]) == 0) return true;
    return false;
}

static bool is_name(const token *t)
{
    return t && (t->kind == T_QNAME || (t->kind == T_WORD && !reserved(t->text)));
}

static int unexpected(parser *p, const char *wanted)
{
    const token *t = peek(p);
    if (!t) return -1;
    char b[SHOW_MAX * 4 + 16];
    return fail(p, t->pos, "expected %s, got %s", wanted, tok_desc(p, t, b, sizeof b));
}

/* The keyword w, or an error naming what was wanted. */
static int expect_word(parser *p, const char *w)
{
    const token *t = peek(p);
    if (!t) return -1;
    if (!is_word(t, w)) {
        char want[64];
        snprintf(want, sizeof want, "'%s'", w);
        return unexpected(p, want);
    }
    drop(p);
    return 0;
}

static int expect_kind(parser *p, tkind k, const char *what)
{
    const token *t = peek(p);
    if (!t) return -1;
    if (t->kind != k) return unexpected(p, what);
    drop(p);
    return 0;
}

/* A name (what it names, for the error); *dst owns it. */
static int parse_name(parser *p, const char *what, char **dst, pgr_spec_pos *pos)
{
    const token *t = peek(p);
    if (!t) return -1;
    if (!is_name(t)) {
        if (t->kind == T_WORD) {
            char b[SHOW_MAX * 4 + 16];
            return fail(p, t->pos, "expected %s, got the reserved word %s (quote it to use it as a name)",
                        what, tok_desc(p, t, b, sizeof b));
        }
        return unexpected(p, what);
    }
    if (pos) *pos = t->pos;
    *dst = p->tok.text;
    p->tok.text = NULL;
    p->have = false;
    return 0;
}

/* An integer in lo..hi (what names it in the error). */
static int parse_int(parser *p, const char *what, long long lo, long long hi, long long *v)
{
    const token *t = peek(p);
    if (!t) return -1;
    if (t->kind != T_NUMBER) {
        char want[96];
        snprintf(want, sizeof want, "%s (an integer)", what);
        return unexpected(p, want);
    }
    char *end;
    errno = 0;
    long long x = strtoll(t->text, &end, 10);
    if (errno || *end || x < lo || x > hi) {
        char b[SHOW_MAX * 4 + 16];
        return fail(p, t->pos, "bad number %s: %s must be an integer in %lld..%lld", describe(t, b, sizeof b),
                    what, lo, hi);
    }
    *v = x;
    drop(p);
    return 0;
}

/* An SQL block: '{' text up to the first '}' '}', trimmed as isolationtester trims it. */
static int parse_sql(parser *p, char **dst)
{
    const token *t = peek(p);
    if (!t) return -1;
    if (t->kind != T_LBRACE) return unexpected(p, "an SQL block '{ ... }'");
    pgr_spec_pos open = t->pos;
    drop(p);                                          /* p->off is right after the '{' */
    size_t a = p->off;
    while (a < p->n && (p->s[a] == ' ' || p->s[a] == '\t' || p->s[a] == '\r')) a++;
    const char *close = memchr(p->s + a, '}', p->n - a);
    if (!close) return fail(p, open, "unterminated SQL block (no '}' after this '{')");
    size_t b = (size_t)(close - p->s);
    size_t e = b;
    while (e > a && (p->s[e - 1] == ' ' || p->s[e - 1] == '\t' || p->s[e - 1] == '\r')) e--;
    *dst = dup_bytes(p->s + a, e - a);
    if (!*dst) return fail(p, open, "out of memory");
    advance(p, b + 1);
    return 0;
}

/* ---- isolationtester's items ---- */

static int parse_step(parser *p, int si)
{
    pgr_spec_session *ss = &p->out->sessions[si];
    pgr_spec_step *st = push(&ss->steps, &ss->nsteps, sizeof *st);
    if (!st) return fail(p, here(p), "out of memory");
    st->session = si;
    if (parse_name(p, "a step name", &st->name, &st->pos) != 0) return -1;
    return parse_sql(p, &st->sql);
}

/* session NAME '{'? (setup SQL)? step+ (teardown SQL)? '}'? — 'session' taken. */
static int parse_session(parser *p)
{
    pgr_spec *o = p->out;
    pgr_spec_session *ss = push(&o->sessions, &o->nsessions, sizeof *ss);
    if (!ss) return fail(p, here(p), "out of memory");
    int si = o->nsessions - 1;
    if (parse_name(p, "a session name", &ss->name, &ss->pos) != 0) return -1;
    const token *t = peek(p);
    if (!t) return -1;
    bool braced = t->kind == T_LBRACE;
    if (braced) drop(p);
    if (!(t = peek(p))) return -1;
    if (is_word(t, "setup")) {
        drop(p);
        if (parse_sql(p, &o->sessions[si].setup) != 0) return -1;
        if (!(t = peek(p))) return -1;
    }
    if (!is_word(t, "step")) {
        char b[SHOW_MAX * 4 + 16], name[SHOW_MAX * 4 + 8];
        show(name, sizeof name, o->sessions[si].name, strlen(o->sessions[si].name));
        return fail(p, t->pos, "session %s needs at least one step, got %s", name, tok_desc(p, t, b, sizeof b));
    }
    while (is_word(t, "step")) {
        drop(p);
        if (parse_step(p, si) != 0) return -1;
        if (!(t = peek(p))) return -1;
    }
    if (is_word(t, "teardown")) {
        drop(p);
        if (parse_sql(p, &o->sessions[si].teardown) != 0) return -1;
    }
    if (braced) return expect_kind(p, T_RBRACE, "'}' to close the session");
    return 0;
}

static bool step_declared(const pgr_spec *o, const char *name)
{
    for (int i = 0; i < o->nsessions; i++)
        for (int j = 0; j < o->sessions[i].nsteps; j++)
            if (strcmp(o->sessions[i].steps[j].name, name) == 0) return true;
    return false;
}

/* A permutation step name here, or the end of the permutation. */
static bool pstep_follows(parser *p, const token *t)
{
    if (!is_name(t)) return false;
    if (t->kind == T_WORD && item_word(t->text)) return step_declared(p->out, t->text);
    return true;
}

static int parse_blocker(parser *p, pgr_spec_pstep *ps)
{
    pgr_spec_blocker *b = push(&ps->blockers, &ps->nblockers, sizeof *b);
    if (!b) return fail(p, here(p), "out of memory");
    b->session = b->index = -1;
    const token *t = peek(p);
    if (!t) return -1;
    b->pos = t->pos;
    if (t->kind == T_STAR) { drop(p); return 0; }
    if (parse_name(p, "a blocking step name or '*'", &b->step, NULL) != 0) return -1;
    if (!(t = peek(p))) return -1;
    if (is_word(t, "notices")) {
        drop(p);
        long long v;
        if (parse_int(p, "notices", 0, INT_MAX, &v) != 0) return -1;
        b->notices = (int)v;
        b->by_notices = true;
    }
    return 0;
}

/* permutation pstep+ — 'permutation' taken (at kw). */
static int parse_permutation(parser *p, pgr_spec_pos kw)
{
    pgr_spec *o = p->out;
    pgr_spec_permutation *pm = push(&o->perms, &o->nperms, sizeof *pm);
    if (!pm) return fail(p, kw, "out of memory");
    pm->pos = kw;
    const token *t;
    while ((t = peek(p)) && pstep_follows(p, t)) {
        pgr_spec_pstep *ps = push(&pm->steps, &pm->nsteps, sizeof *ps);
        if (!ps) return fail(p, here(p), "out of memory");
        ps->session = ps->step = -1;
        if (parse_name(p, "a step name", &ps->name, &ps->pos) != 0) return -1;
        if (!(t = peek(p))) return -1;
        if (t->kind != T_LPAREN) continue;
        drop(p);
        for (;;) {
            if (parse_blocker(p, ps) != 0) return -1;
            if (!(t = peek(p))) return -1;
            if (t->kind == T_COMMA) { drop(p); continue; }
            if (t->kind == T_RPAREN) { drop(p); break; }
            return unexpected(p, "',' or ')' in the blocker list");
        }
    }
    if (!t) return -1;
    if (pm->nsteps == 0) return unexpected(p, "a step name after 'permutation'");
    return 0;
}

/* ---- pgrace's items ---- */

static bool sqlstate_like(const char *s)
{
    if (strlen(s) != 5) return false;
    for (int i = 0; i < 5; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'A' && s[i] <= 'Z'))) return false;
    return true;
}

/* cond := rows OP INT | error SQLSTATE? | COLUMN | not COLUMN | COLUMN OP (INT | value) */
static int parse_cond(parser *p, pgr_spec_rule *r)
{
    const token *t = peek(p);
    if (!t) return -1;
    if (is_word(t, "rows")) {
        drop(p);
        if (!(t = peek(p))) return -1;
        if (t->kind != T_OP) return unexpected(p, "a comparison (= != < > <= >=) after 'rows'");
        r->op = t->op;
        drop(p);
        r->cond = PGR_COND_ROWS;
        return parse_int(p, "rows", 0, LLONG_MAX, &r->number);
    }
    if (is_word(t, "error")) {
        drop(p);
        r->cond = PGR_COND_ERROR;
        if (!(t = peek(p))) return -1;
        if (t->kind == T_ARROW) return 0;
        if ((t->kind == T_WORD || t->kind == T_NUMBER || t->kind == T_QNAME) && sqlstate_like(t->text)) {
            r->value = p->tok.text;
            p->tok.text = NULL;
            drop(p);
            return 0;
        }
        char b[SHOW_MAX * 4 + 16];
        return fail(p, t->pos, "bad SQLSTATE %s: five characters of 0-9 and A-Z (or none: any error)",
                    tok_desc(p, t, b, sizeof b));
    }
    if (is_word(t, "not")) {
        drop(p);
        r->cond = PGR_COND_FALSE;
        return parse_name(p, "a column name after 'not'", &r->column, NULL);
    }
    if (parse_name(p, "a condition (rows, error, not, or a column)", &r->column, NULL) != 0) return -1;
    if (!(t = peek(p))) return -1;
    if (t->kind != T_OP) { r->cond = PGR_COND_TRUE; return 0; }
    r->cond = PGR_COND_COMPARE;
    r->op = t->op;
    drop(p);
    if (!(t = peek(p))) return -1;
    if (t->kind == T_NUMBER) {
        r->numeric = true;
        r->value = strdup(t->text);
        if (!r->value) return fail(p, t->pos, "out of memory");
        return parse_int(p, "the compared value", LLONG_MIN, LLONG_MAX, &r->number);
    }
    if (t->kind == T_WORD || t->kind == T_QNAME) {
        r->value = p->tok.text;
        p->tok.text = NULL;
        drop(p);
        return 0;
    }
    return unexpected(p, "a value to compare with (a number, a word or a \"quoted\" text)");
}

/* outcome := STATUS (id COLUMN)? | next | goto NAME | retry INT? */
static int parse_outcome(parser *p, pgr_spec_rule *r)
{
    const token *t = peek(p);
    if (!t) return -1;
    if (t->kind == T_NUMBER) {
        long long v;
        if (parse_int(p, "an HTTP status", 100, 599, &v) != 0) return -1;
        r->outcome = PGR_OUT_STATUS;
        r->status = (int)v;
        if (!(t = peek(p))) return -1;
        if (is_word(t, "id")) {
            drop(p);
            return parse_name(p, "the id's column after 'id'", &r->id_column, NULL);
        }
        return 0;
    }
    if (is_word(t, "next")) { drop(p); r->outcome = PGR_OUT_NEXT; return 0; }
    if (is_word(t, "goto")) {
        drop(p);
        r->outcome = PGR_OUT_GOTO;
        return parse_name(p, "a step name after 'goto'", &r->target, &r->pos);
    }
    if (is_word(t, "retry")) {
        drop(p);
        r->outcome = PGR_OUT_RETRY;
        r->attempts = 10;
        if (!(t = peek(p))) return -1;
        if (t->kind != T_NUMBER) return 0;
        long long v;
        if (parse_int(p, "retry's attempts", 1, 1000, &v) != 0) return -1;
        r->attempts = (int)v;
        return 0;
    }
    return unexpected(p, "an outcome (an HTTP status, next, goto STEP or retry)");
}

static int parse_hstep(parser *p, pgr_spec_variant *v)
{
    pgr_spec_hstep *h = push(&v->steps, &v->nsteps, sizeof *h);
    if (!h) return fail(p, here(p), "out of memory");
    if (parse_name(p, "a step name", &h->name, &h->pos) != 0) return -1;
    if (parse_sql(p, &h->sql) != 0) return -1;
    const token *t;
    while ((t = peek(p)) && (is_word(t, "if") || t->kind == T_ARROW)) {
        pgr_spec_rule *r = push(&h->rules, &h->nrules, sizeof *r);
        if (!r) return fail(p, t->pos, "out of memory");
        r->pos = t->pos;
        r->target_step = -1;
        if (t->kind == T_ARROW) {
            r->cond = PGR_COND_ALWAYS;
        } else {
            drop(p);
            if (parse_cond(p, r) != 0) return -1;
            if (!(t = peek(p))) return -1;
            if (t->kind != T_ARROW) return unexpected(p, "'->' after the condition");
        }
        drop(p);
        pgr_spec_pos keep = r->pos;
        if (parse_outcome(p, r) != 0) return -1;
        if (r->outcome != PGR_OUT_GOTO) r->pos = keep;
    }
    return t ? 0 : -1;
}

/* A command block: '{' one command line '}', trimmed; what names it in errors. */
static int parse_command(parser *p, char **cmd, const char *what)
{
    const token *t = peek(p);
    if (!t) return -1;
    pgr_spec_pos at = t->pos;
    if (parse_sql(p, cmd) != 0) return -1;
    char *c = *cmd, *e = c + strlen(c);                /* one command line */
    while (*c == '\n' || *c == ' ' || *c == '\t' || *c == '\r') c++;
    while (e > c && (e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r')) e--;
    memmove(*cmd, c, (size_t)(e - c));
    (*cmd)[e - c] = '\0';
    if (!**cmd) return fail(p, at, "%s: an empty command", what);
    if (strchr(*cmd, '\n')) return fail(p, at, "%s: the command is one line", what);
    return 0;
}

/* A request block's text up to the '}' that matches its '{' (p->off is right after the
 * '{'): braces nest, and count for nothing inside a JSON string ("...", with \ escapes).
 * *end is the closing brace's offset. 0, or -1 with the error. */
static int match_brace(parser *p, pgr_spec_pos open, size_t *end)
{
    int depth = 0;
    bool in_str = false;
    for (size_t i = p->off; i < p->n; i++) {
        char c = p->s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
            else if (c == '\n') in_str = false;          /* a header's lone quote: not a string */
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{') {
            depth++;
        } else if (c == '}') {
            if (depth == 0) { *end = i; return 0; }
            depth--;
        }
    }
    return fail(p, open, "unterminated request block (no '}' matching this '{')");
}

static bool tchar(unsigned char c)           /* an HTTP token character (RFC 9110) */
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* One line of a block: [a, e) without the line end and trailing blanks; *next after it. */
static void next_line(const char *s, size_t a, size_t lim, size_t *e, size_t *next)
{
    size_t i = a;
    while (i < lim && s[i] != '\n') i++;
    *next = i < lim ? i + 1 : i;
    while (i > a && (s[i - 1] == '\r' || s[i - 1] == ' ' || s[i - 1] == '\t')) i--;
    *e = i;
}

/* REQUEST: '{' METHOD /PATH NL (NAME: VALUE NL)* (NL BODY)? '}' — at the '{'. */
static int parse_request(parser *p, pgr_spec_variant *v)
{
    const token *t = peek(p);
    if (!t) return -1;
    if (t->kind != T_LBRACE) return unexpected(p, "a request block '{ METHOD /path ... }'");
    pgr_spec_pos open = t->pos;
    drop(p);
    size_t end = 0;
    if (match_brace(p, open, &end) != 0) return -1;
    pgr_spec_request *r = push(&v->requests, &v->nrequests, sizeof *r);
    if (!r) return fail(p, open, "out of memory");
    r->pos = open;
    const char *s = p->s;
    size_t i = p->off, e, next;
    /* the request line: the first line that is not blank */
    for (;;) {
        if (i >= end) return fail(p, open, "http '%s': an empty request (write `METHOD /path`)", v->name);
        next_line(s, i, end, &e, &next);
        size_t a = i;
        while (a < e && (s[a] == ' ' || s[a] == '\t')) a++;
        if (a < e) { i = a; break; }
        i = next;
    }
    size_t m = i;
    while (m < e && tchar((unsigned char)s[m])) m++;
    size_t ps = m;
    while (ps < e && (s[ps] == ' ' || s[ps] == '\t')) ps++;
    size_t pe = ps;
    while (pe < e && s[pe] != ' ' && s[pe] != '\t') pe++;
    size_t rest = pe;
    while (rest < e && (s[rest] == ' ' || s[rest] == '\t')) rest++;
    bool version = rest < e && e - rest == 8 && strncmp(s + rest, "HTTP/1.1", 8) == 0;
    if (m == i || m - i > 16 || ps == m || pe == ps || s[ps] != '/' || (rest < e && !version)) {
        char b[SHOW_MAX * 4 + 8];
        show(b, sizeof b, s + i, e - i);
        return fail(p, open, "http '%s': the request line '%s' is not `METHOD /path` (e.g. POST /invites/:key/claim)",
                    v->name, b);
    }
    for (size_t k = ps; k < pe; k++)
        if ((unsigned char)s[k] <= 0x20 || (unsigned char)s[k] == 0x7f)
            return fail(p, open, "http '%s': a control character in the path", v->name);
    r->method = dup_bytes(s + i, m - i);
    r->path = dup_bytes(s + ps, pe - ps);
    if (!r->method || !r->path) return fail(p, open, "out of memory");
    /* headers, to the first blank line */
    i = next;
    while (i < end) {
        next_line(s, i, end, &e, &next);
        size_t a = i;
        while (a < e && (s[a] == ' ' || s[a] == '\t')) a++;
        if (a == e) { i = next; break; }
        size_t c = a;
        while (c < e && tchar((unsigned char)s[c])) c++;
        if (c == a || c >= e || s[c] != ':') {
            char b[SHOW_MAX * 4 + 8];
            show(b, sizeof b, s + a, e - a);
            return fail(p, open, "http '%s': '%s' is not a header `Name: value` (a blank line comes before the body)",
                        v->name, b);
        }
        static const char *const ours[] = { "content-length", "transfer-encoding", "host", "connection" };
        for (int k = 0; k < PGR_LEN(ours); k++)
            if (c - a == strlen(ours[k]) && strncasecmp(s + a, ours[k], c - a) == 0)
                return fail(p, open, "http '%s': pgrace writes the %.*s header itself", v->name, (int)(c - a), s + a);
        for (size_t k = c + 1; k < e; k++)
            if (((unsigned char)s[k] < 0x20 && s[k] != '\t') || (unsigned char)s[k] == 0x7f)
                return fail(p, open, "http '%s': a control character in a header", v->name);
        char **h = push(&r->headers, &r->nheaders, sizeof *h);
        if (!h || !(*h = dup_bytes(s + a, e - a))) return fail(p, open, "out of memory");
        i = next;
    }
    /* the body: the rest, trimmed */
    size_t a = i < end ? i : end, b = end;
    while (a < b && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r' || s[a] == '\n')) a++;
    while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\r' || s[b - 1] == '\n')) b--;
    if (b > a && !(r->body = dup_bytes(s + a, b - a))) return fail(p, open, "out of memory");
    advance(p, end + 1);
    return 0;
}

/* The rest of http NAME (kind KIND)?: ('id' PATH)? ('setup' SQL)? REQUEST+ */
static int parse_http(parser *p, pgr_spec_variant *v)
{
    v->http = true;
    const token *t = peek(p);
    if (!t) return -1;
    if (is_word(t, "id")) {
        drop(p);
        if (!(t = peek(p))) return -1;
        if (t->kind != T_WORD && t->kind != T_QNAME)
            return unexpected(p, "the id's path in the JSON answer (`id submission.id`, `id \"items.0.id\"`)");
        v->id_path = p->tok.text;
        p->tok.text = NULL;
        drop(p);
        if (!(t = peek(p))) return -1;
    }
    if (is_word(t, "setup")) {
        drop(p);
        if (parse_sql(p, &v->setup) != 0) return -1;
        if (!(t = peek(p))) return -1;
    }
    if (t->kind != T_LBRACE) return unexpected(p, "'id', 'setup' or a request block '{ METHOD /path ... }'");
    while (t->kind == T_LBRACE) {
        if (parse_request(p, v) != 0) return -1;
        if (!(t = peek(p))) return -1;
    }
    return 0;
}

typedef enum { V_STEPS, V_CLIENT, V_HTTP } vhow;

/* variant NAME (kind KIND)? '{' hstep+ '}' — 'variant' taken; client NAME (kind KIND)?
 * '{' COMMAND '}' — 'client' taken; http NAME (kind KIND)? ... — 'http' taken. */
static int parse_variant(parser *p, vhow how)
{
    pgr_spec *o = p->out;
    pgr_spec_variant *v = push(&o->variants, &o->nvariants, sizeof *v);
    if (!v) return fail(p, here(p), "out of memory");
    if (parse_name(p, "a variant name", &v->name, &v->pos) != 0) return -1;
    size_t n = strlen(v->name);
    bool ok = n >= 1 && n <= 20;
    for (size_t i = 0; ok && i < n; i++)
        ok = (v->name[i] >= 'a' && v->name[i] <= 'z') || (v->name[i] >= '0' && v->name[i] <= '9') || v->name[i] == '_';
    if (!ok) {
        char b[SHOW_MAX * 4 + 8];
        show(b, sizeof b, v->name, n);
        return fail(p, v->pos, "variant name '%s': 1 to 20 of a-z, 0-9 and _", b);
    }
    const token *t = peek(p);
    if (!t) return -1;
    if (is_word(t, "kind")) {
        drop(p);
        if (!(t = peek(p))) return -1;
        if (is_word(t, "original")) v->kind = PGR_ORIGINAL;
        else if (is_word(t, "proposed")) v->kind = PGR_PROPOSED;
        else if (is_word(t, "recommended")) v->kind = PGR_RECOMMENDED;
        else return unexpected(p, "original, proposed or recommended after 'kind'");
        v->kind_given = true;
        drop(p);
    }
    if (how == V_CLIENT) {
        char what[64];
        snprintf(what, sizeof what, "client '%s'", o->variants[o->nvariants - 1].name);
        return parse_command(p, &o->variants[o->nvariants - 1].client, what);
    }
    if (how == V_HTTP) return parse_http(p, &o->variants[o->nvariants - 1]);
    if (expect_kind(p, T_LBRACE, "'{' to open the variant's steps") != 0) return -1;
    if (!(t = peek(p))) return -1;
    if (is_word(t, "setup")) {          /* the variant's own DDL (the fix's unique index) */
        drop(p);
        if (parse_sql(p, &o->variants[o->nvariants - 1].setup) != 0) return -1;
        if (!(t = peek(p))) return -1;
    }
    if (!is_word(t, "step")) return unexpected(p, "'step' (a variant needs at least one)");
    while (is_word(t, "step")) {
        drop(p);
        if (parse_hstep(p, &o->variants[o->nvariants - 1]) != 0) return -1;
        if (!(t = peek(p))) return -1;
    }
    return expect_kind(p, T_RBRACE, "'step' or '}' to close the variant");
}

/* case NAME (weight INT)? (sends INT)? SQL? — 'case' taken. */
static int parse_case(parser *p)
{
    pgr_spec *o = p->out;
    pgr_spec_case *c = push(&o->cases, &o->ncases, sizeof *c);
    if (!c) return fail(p, here(p), "out of memory");
    c->weight = c->sends = 1;
    if (parse_name(p, "a case name", &c->name, &c->pos) != 0) return -1;
    bool weight = false, sends = false;
    const token *t;
    while ((t = peek(p))) {
        long long v;
        if (is_word(t, "weight") && !weight) {
            drop(p);
            if (parse_int(p, "weight", 1, 1000000, &v) != 0) return -1;
            c->weight = (int)v;
            weight = true;
        } else if (is_word(t, "sends") && !sends) {
            drop(p);
            if (parse_int(p, "sends", 1, 100, &v) != 0) return -1;
            c->sends = (int)v;
            sends = true;
        } else {
            break;
        }
    }
    if (!t) return -1;
    if (t->kind == T_LBRACE) return parse_sql(p, &c->trial);
    return 0;
}

static int parse_status_list(parser *p, pgr_spec_invariant *inv, bool one)
{
    const token *t = NULL;
    do {
        long long v;
        if (parse_int(p, "an HTTP status", 100, 599, &v) != 0) return -1;
        int *s = push(&inv->statuses, &inv->nstatuses, sizeof *s);
        if (!s) return fail(p, here(p), "out of memory");
        *s = (int)v;
    } while (!one && (t = peek(p)) && t->kind == T_NUMBER);
    return one || t ? 0 : -1;
}

/* invariant STRING (SQL | statuses STATUS+ | exactly one STATUS | same id) — 'invariant' taken. */
static int parse_invariant(parser *p)
{
    pgr_spec *o = p->out;
    pgr_spec_invariant *inv = push(&o->invariants, &o->ninvariants, sizeof *inv);
    if (!inv) return fail(p, here(p), "out of memory");
    const token *t = peek(p);
    if (!t) return -1;
    if (t->kind != T_QNAME) return unexpected(p, "the invariant's name, \"quoted\"");
    inv->pos = t->pos;
    if (parse_name(p, "the invariant's name", &inv->name, NULL) != 0) return -1;
    if (!(t = peek(p))) return -1;
    if (t->kind == T_LBRACE) { inv->kind = PGR_INV_SQL; return parse_sql(p, &inv->sql); }
    if (is_word(t, "statuses")) {
        drop(p);
        inv->kind = PGR_INV_STATUSES;
        return parse_status_list(p, inv, false);
    }
    if (is_word(t, "exactly")) {
        drop(p);
        if (expect_word(p, "one") != 0) return -1;
        inv->kind = PGR_INV_EXACTLY_ONE;
        return parse_status_list(p, inv, true);
    }
    if (is_word(t, "same")) {
        drop(p);
        inv->kind = PGR_INV_SAME_ID;
        return expect_word(p, "id");
    }
    return unexpected(p, "an SQL block, 'statuses', 'exactly one' or 'same id'");
}

static bool case_declared(const pgr_spec *o, const char *name)
{
    for (int i = 0; i < o->ncases; i++)
        if (strcmp(o->cases[i].name, name) == 0) return true;
    return false;
}

/* An isolation level, read-committed style: its own lexing (the hyphens). */
static int parse_level(parser *p, pgr_isolation *iso)
{
    skip_blank(p);                   /* 'at' was just taken: nothing is peeked */
    pgr_spec_pos at = here(p);
    size_t a = p->off, e = a;
    while (e < p->n && ((p->s[e] >= 'a' && p->s[e] <= 'z') || (p->s[e] >= 'A' && p->s[e] <= 'Z') || p->s[e] == '-'))
        e++;
    char word[40];
    show(word, sizeof word, p->s + a, e - a);
    if (e - a >= sizeof word - 4 || pgr_isolation_parse(word, iso) != 0) {
        if (e == a) {
            const token *t = peek(p);
            if (!t) return -1;
            return unexpected(p, "an isolation level after 'at'");
        }
        return fail(p, at, "unknown isolation level '%s' (read-committed, repeatable-read, serializable)", word);
    }
    advance(p, e);
    return 0;
}

/* expect NAME (race|safe) (at LEVEL)* (sessions INT)? (case NAME)? — 'expect' taken. */
static int parse_expect(parser *p)
{
    pgr_spec *o = p->out;
    pgr_spec_expect *x = push(&o->expects, &o->nexpects, sizeof *x);
    if (!x) return fail(p, here(p), "out of memory");
    if (parse_name(p, "a variant name after 'expect'", &x->variant, &x->pos) != 0) return -1;
    const token *t = peek(p);
    if (!t) return -1;
    if (is_word(t, "explore")) {
        drop(p);
        x->explore = true;
        if (!(t = peek(p))) return -1;
    } else if (is_word(t, "fault")) {
        drop(p);
        if (!(t = peek(p))) return -1;
        if (t->kind != T_WORD && t->kind != T_QNAME) return unexpected(p, "a fault after 'fault' (timeout_retry, kill_backend, error_at or lost_commit)");
        char name[48];
        snprintf(name, sizeof name, "%s", t->text);
        for (char *c = name; *c; c++) if (*c == '_') *c = '-';
        pgr_fault f;
        char ferr[PGR_ERRLEN];
        if (strchr(name, '@') || pgr_fault_parse(name, &f, ferr, sizeof ferr) != 0)
            return fail(p, t->pos, "unknown fault '%.40s' (timeout_retry, kill_backend, error_at or lost_commit)", t->text);
        x->fault = f.kind;
        drop(p);
        if (!(t = peek(p))) return -1;
    }
    if (is_word(t, "race")) x->verdict = PGR_RACE;
    else if (is_word(t, "safe")) x->verdict = PGR_SAFE;
    else return unexpected(p, "race or safe");
    drop(p);
    bool sessions = false;
    while ((t = peek(p))) {
        if (is_word(t, "at")) {
            drop(p);
            pgr_isolation iso;
            if (parse_level(p, &iso) != 0) return -1;
            x->levels |= 1u << iso;
        } else if (is_word(t, "sessions") && !sessions) {
            drop(p);
            long long v;
            if (parse_int(p, "sessions", 1, PGR_MAX_SESSIONS, &v) != 0) return -1;
            x->sessions = (int)v;
            sessions = true;
        } else if (is_word(t, "case") && !x->kase) {
            mark m = set_mark(p);
            drop(p);
            const token *n = peek(p);
            if (!n) return -1;
            if (!is_name(n) || !case_declared(o, n->text)) { to_mark(p, m); break; }   /* a case item */
            x->kase = p->tok.text;
            p->tok.text = NULL;
            drop(p);
            break;
        } else {
            break;
        }
    }
    return t ? 0 : -1;
}

/* ---- after the last item: resolve names, check duplicates, fill defaults ---- */

static int resolve(parser *p)
{
    pgr_spec *o = p->out;
    for (int i = 0; i < o->nsessions; i++) {
        for (int k = 0; k < i; k++)
            if (strcmp(o->sessions[i].name, o->sessions[k].name) == 0) {
                char b[SHOW_MAX * 4 + 8];
                show(b, sizeof b, o->sessions[i].name, strlen(o->sessions[i].name));
                return fail(p, o->sessions[i].pos, "duplicate session name '%s' (first at line %d)", b,
                            o->sessions[k].pos.line);
            }
        for (int j = 0; j < o->sessions[i].nsteps; j++) {
            const pgr_spec_step *st = &o->sessions[i].steps[j];
            for (int k = 0; k <= i; k++)
                for (int l = 0; l < (k == i ? j : o->sessions[k].nsteps); l++)
                    if (strcmp(st->name, o->sessions[k].steps[l].name) == 0) {
                        char b[SHOW_MAX * 4 + 8];
                        show(b, sizeof b, st->name, strlen(st->name));
                        return fail(p, st->pos, "duplicate step name '%s' (first at line %d)", b,
                                    o->sessions[k].steps[l].pos.line);
                    }
        }
    }
    for (int pi = 0; pi < o->nperms; pi++) {
        pgr_spec_permutation *pm = &o->perms[pi];
        for (int j = 0; j < pm->nsteps; j++) {
            pgr_spec_pstep *ps = &pm->steps[j];
            for (int i = 0; i < o->nsessions && ps->session < 0; i++)
                for (int k = 0; k < o->sessions[i].nsteps; k++)
                    if (strcmp(o->sessions[i].steps[k].name, ps->name) == 0) {
                        ps->session = i;
                        ps->step = k;
                        o->sessions[i].steps[k].used = true;
                        break;
                    }
            if (ps->session < 0) {
                char b[SHOW_MAX * 4 + 8];
                show(b, sizeof b, ps->name, strlen(ps->name));
                return fail(p, ps->pos, "unknown step '%s' in the permutation", b);
            }
        }
        /* a blocker names a step of the same permutation (isolationtester's rule) */
        for (int j = 0; j < pm->nsteps; j++) {
            pgr_spec_pstep *ps = &pm->steps[j];
            for (int k = 0; k < ps->nblockers; k++) {
                pgr_spec_blocker *b = &ps->blockers[k];
                if (!b->step) continue;
                for (int l = 0; l < pm->nsteps && b->session < 0; l++)
                    if (strcmp(pm->steps[l].name, b->step) == 0) {
                        b->session = pm->steps[l].session;
                        b->index = pm->steps[l].step;
                    }
                char nb[SHOW_MAX * 4 + 8], ns[SHOW_MAX * 4 + 8];
                show(nb, sizeof nb, b->step, strlen(b->step));
                show(ns, sizeof ns, ps->name, strlen(ps->name));
                if (b->session < 0)
                    return fail(p, b->pos, "blocking step '%s' of step '%s' is not in this permutation", nb, ns);
                if (b->session == ps->session)
                    return fail(p, b->pos, "step '%s' cannot block on '%s': a step of its own session", ns, nb);
            }
        }
    }
    for (int i = 0; i < o->nvariants; i++) {
        pgr_spec_variant *v = &o->variants[i];
        for (int k = 0; k < i; k++)
            if (strcmp(v->name, o->variants[k].name) == 0)
                return fail(p, v->pos, "duplicate variant name '%s' (first at line %d)", v->name, o->variants[k].pos.line);
        if (!v->kind_given)
            v->kind = i == 0 ? PGR_ORIGINAL : (i == o->nvariants - 1 ? PGR_RECOMMENDED : PGR_PROPOSED);
        for (int j = 0; j < v->nsteps; j++) {
            char b[SHOW_MAX * 4 + 8];
            for (int k = 0; k < j; k++)
                if (strcmp(v->steps[j].name, v->steps[k].name) == 0) {
                    show(b, sizeof b, v->steps[j].name, strlen(v->steps[j].name));
                    return fail(p, v->steps[j].pos, "duplicate step name '%s' in variant %s (first at line %d)", b,
                                v->name, v->steps[k].pos.line);
                }
            for (int r = 0; r < v->steps[j].nrules; r++) {
                pgr_spec_rule *ru = &v->steps[j].rules[r];
                if (ru->outcome != PGR_OUT_GOTO) continue;
                for (int k = 0; k < v->nsteps && ru->target_step < 0; k++)
                    if (strcmp(v->steps[k].name, ru->target) == 0) ru->target_step = k;
                if (ru->target_step < 0) {
                    show(b, sizeof b, ru->target, strlen(ru->target));
                    return fail(p, ru->pos, "goto '%s': variant %s has no such step", b, v->name);
                }
            }
        }
    }
    for (int i = 0; i < o->ncases; i++)
        for (int k = 0; k < i; k++)
            if (strcmp(o->cases[i].name, o->cases[k].name) == 0) {
                char b[SHOW_MAX * 4 + 8];
                show(b, sizeof b, o->cases[i].name, strlen(o->cases[i].name));
                return fail(p, o->cases[i].pos, "duplicate case name '%s' (first at line %d)", b, o->cases[k].pos.line);
            }
    for (int i = 0; i < o->ninvariants; i++)
        for (int k = 0; k < i; k++)
            if (strcmp(o->invariants[i].name, o->invariants[k].name) == 0) {
                char b[SHOW_MAX * 4 + 8];
                show(b, sizeof b, o->invariants[i].name, strlen(o->invariants[i].name));
                return fail(p, o->invariants[i].pos, "duplicate invariant \"%s\" (first at line %d)", b,
                            o->invariants[k].pos.line);
            }
    for (int i = 0; i < o->nexpects; i++) {
        pgr_spec_expect *x = &o->expects[i];
        bool found = false;
        for (int k = 0; k < o->nvariants && !found; k++) found = strcmp(o->variants[k].name, x->variant) == 0;
        char b[SHOW_MAX * 4 + 8];
        if (!found) {
            show(b, sizeof b, x->variant, strlen(x->variant));
            return fail(p, x->pos, "expect names no variant of this spec: '%s'", b);
        }
    }
    return 0;
}

/* The file's base name without .spec, as a scenario name: a-z 0-9 _, at most 32. */
static char *spec_name(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".spec") == 0) n -= 5;
    if (n > 32) n = 32;
    char *name = malloc(n > 0 ? n + 1 : 5);
    if (!name) return NULL;
    if (n == 0) { memcpy(name, "spec", 5); return name; }
    for (size_t i = 0; i < n; i++) {
        char c = base[i];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        name[i] = ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') ? c : '_';
    }
    name[n] = '\0';
    return name;
}

/* The first byte that is not text: a control byte other than tab/CR/LF, or bad UTF-8. */
static int check_text(parser *p)
{
    size_t bad = p->n;
    for (size_t i = 0; i < p->n; i++) {
        unsigned char c = (unsigned char)p->s[i];
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) { bad = i; break; }
    }
    const uint8_t *u = u8_check((const uint8_t *)p->s, bad);
    bool utf8 = u != NULL;
    if (utf8) bad = (size_t)((const char *)u - p->s);
    if (bad == p->n) return 0;
    advance(p, bad);
    unsigned char c = (unsigned char)p->s[bad];
    if (utf8) return fail(p, here(p), "invalid UTF-8 (byte 0x%02x): a spec file is UTF-8 text", c);
    return fail(p, here(p), "a byte that is not text (0x%02x): a spec file is UTF-8 text without control characters", c);
}

int pgr_spec_parse(const char *path, const char *text, size_t len, pgr_spec *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    parser p = { .path = path ? path : "", .s = text, .n = len, .line = 1, .col = 1, .out = out,
                 .err = err, .errlen = errlen };
    out->path = strdup(p.path);
    out->name = spec_name(p.path);
    out->hash = pgr_bytes_hash(text, len);
    if (!out->path || !out->name) { fail(&p, here(&p), "out of memory"); goto bad; }
    if (check_text(&p) != 0) goto bad;
    for (;;) {
        const token *t = peek(&p);
        if (!t) goto bad;
        if (t->kind == T_EOF) break;
        pgr_spec_pos kw = t->pos;
        int rc;
        if (is_word(t, "setup")) {
            drop(&p);
            char **s = push(&out->setups, &out->nsetups, sizeof *s);
            rc = s ? parse_sql(&p, s) : fail(&p, kw, "out of memory");
        } else if (is_word(t, "teardown")) {
            drop(&p);
            rc = out->teardown ? fail(&p, kw, "a second teardown block (a spec has at most one)")
                               : parse_sql(&p, &out->teardown);
        } else if (is_word(t, "session")) {
            drop(&p);
            rc = parse_session(&p);
        } else if (is_word(t, "permutation")) {
            drop(&p);
            rc = parse_permutation(&p, kw);
        } else if (is_word(t, "trial")) {
            drop(&p);
            rc = out->trial ? fail(&p, kw, "a second trial block (a spec has at most one)") : parse_sql(&p, &out->trial);
        } else if (is_word(t, "variant")) {
            drop(&p);
            rc = parse_variant(&p, V_STEPS);
        } else if (is_word(t, "client")) {
            drop(&p);
            rc = parse_variant(&p, V_CLIENT);
        } else if (is_word(t, "http")) {
            drop(&p);
            rc = parse_variant(&p, V_HTTP);
        } else if (is_word(t, "app")) {
            drop(&p);
            out->app_pos = kw;
            rc = out->app ? fail(&p, kw, "a second app block (a spec has at most one)") : parse_command(&p, &out->app, "app");
        } else if (is_word(t, "model")) {
            drop(&p);
            out->model_pos = kw;
            rc = out->model ? fail(&p, kw, "a second model item (a spec models at most one scenario)")
                            : parse_name(&p, "the modelled scenario's name", &out->model, NULL);
        } else if (is_word(t, "case")) {
            drop(&p);
            rc = parse_case(&p);
        } else if (is_word(t, "invariant")) {
            drop(&p);
            rc = parse_invariant(&p);
        } else if (is_word(t, "expect")) {
            drop(&p);
            rc = parse_expect(&p);
        } else {
            rc = unexpected(&p, "setup, teardown, session, permutation, trial, variant, client, http, app, model, case, "
                                "invariant or expect");
        }
        if (rc != 0) goto bad;
    }
    if (resolve(&p) != 0) goto bad;
    return 0;
bad:
    if (p.have) drop(&p);
    pgr_spec_free(out);
    return -1;
}

int pgr_spec_load(const char *path, pgr_spec *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char shown[PATH_MAX];
    show_max(shown, sizeof shown, path, strlen(path), PATH_MAX / 4 - 8);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot read: %s", shown, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        if (cap >= SPEC_MAX_BYTES) { n = cap + 1; break; }
        char *g = realloc(buf, cap * 2);
        if (!g) { free(buf); buf = NULL; break; }
        buf = g;
        cap *= 2;
    }
    bool read_error = ferror(f);
    fclose(f);
    if (!buf) { snprintf(err, errlen, "%s: out of memory", shown); return -1; }
    if (read_error) { free(buf); snprintf(err, errlen, "%s: cannot read: I/O error", shown); return -1; }
    if (n > SPEC_MAX_BYTES) {
        free(buf);
        snprintf(err, errlen, "%s: larger than %u MiB: not a spec file", shown, SPEC_MAX_BYTES >> 20);
        return -1;
    }
    int rc = pgr_spec_parse(path, buf, n, out, err, errlen);
    free(buf);
    return rc;
}

void pgr_spec_free(pgr_spec *s)
{
    if (!s) return;
    free(s->path);
    free(s->name);
    for (int i = 0; i < s->nsetups; i++) free(s->setups[i]);
    free(s->setups);
    free(s->teardown);
    for (int i = 0; i < s->nsessions; i++) {
        pgr_spec_session *ss = &s->sessions[i];
        free(ss->name);
        free(ss->setup);
        free(ss->teardown);
        for (int j = 0; j < ss->nsteps; j++) { free(ss->steps[j].name); free(ss->steps[j].sql); }
        free(ss->steps);
    }
    free(s->sessions);
    for (int i = 0; i < s->nperms; i++) {
        pgr_spec_permutation *pm = &s->perms[i];
        for (int j = 0; j < pm->nsteps; j++) {
            for (int k = 0; k < pm->steps[j].nblockers; k++) free(pm->steps[j].blockers[k].step);
            free(pm->steps[j].blockers);
            free(pm->steps[j].name);
        }
        free(pm->steps);
    }
    free(s->perms);
    free(s->trial);
    for (int i = 0; i < s->nvariants; i++) {
        pgr_spec_variant *v = &s->variants[i];
        free(v->name);
        free(v->setup);
        free(v->client);
        free(v->id_path);
        for (int j = 0; j < v->nrequests; j++) {
            pgr_spec_request *r = &v->requests[j];
            free(r->method);
            free(r->path);
            for (int k = 0; k < r->nheaders; k++) free(r->headers[k]);
            free(r->headers);
            free(r->body);
        }
        free(v->requests);
        for (int j = 0; j < v->nsteps; j++) {
            pgr_spec_hstep *h = &v->steps[j];
            free(h->name);
            free(h->sql);
            for (int r = 0; r < h->nrules; r++) {
                free(h->rules[r].column);
                free(h->rules[r].value);
                free(h->rules[r].id_column);
                free(h->rules[r].target);
            }
            free(h->rules);
        }
        free(v->steps);
    }
    free(s->variants);
    for (int i = 0; i < s->ncases; i++) { free(s->cases[i].name); free(s->cases[i].trial); }
    free(s->cases);
    for (int i = 0; i < s->ninvariants; i++) {
        free(s->invariants[i].name);
        free(s->invariants[i].sql);
        free(s->invariants[i].statuses);
    }
    free(s->invariants);
    for (int i = 0; i < s->nexpects; i++) { free(s->expects[i].variant); free(s->expects[i].kase); }
    free(s->expects);
    free(s->app);
    free(s->model);
    memset(s, 0, sizeof *s);
}
