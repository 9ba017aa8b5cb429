/*
 * wire_fuzzer.c — the protocol v3 message layer (harness/wire.c), with no socket and no
 * server: what a client may send the proxy (startup packets, then messages assembled into
 * steps), what a server may send it (a step's answer read into its outcome), step labels,
 * the bodies one by one, and ErrorResponse built and read back. The first byte picks which;
 * the rest is the input. Any input must give an error value, never a crash, a read past
 * the end, a leak or undefined behaviour (ASan+UBSan), and what is accepted must hold what
 * the proxy relies on (lengths within the buffer, strings terminated, labels never empty).
 */
#include "wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...) do { if (!(cond)) { fprintf(stderr, "wire_fuzzer: " __VA_ARGS__); fputc('\n', stderr); abort(); } } while (0)

static void check_string(const char *s, size_t cap, const char *what)
{
    CHECK(memchr(s, '\0', cap) != NULL, "%s is not NUL-terminated within %zu bytes", what, cap);
}

/* A complete message read at buf: its prefixes are incomplete, its length is its own. */
static void check_framing(const uint8_t *buf, size_t n, long k, const pgr_wire_msg *m)
{
    CHECK(k >= 5 && (size_t)k <= n, "message length %ld outside 5..%zu", k, n);
    CHECK(m->body == buf + 5 && m->len == (size_t)k - 5, "message body does not match its length");
    pgr_wire_msg m2;
    char err[200];
    CHECK(pgr_wire_msg_read(buf, (size_t)k - 1, PGR_WIRE_MAX_MSG, &m2, err, sizeof err) == 0,
          "a truncated message was not 'more bytes needed'");
}

/* Startup packets, one after another (an SSLRequest, then the startup message ...). */
static size_t fuzz_startup(const uint8_t *p, size_t n)
{
    size_t at = 0;
    for (int i = 0; i < 4 && at < n; i++) {
        pgr_wire_startup su;
        char err[200] = "";
        long k = pgr_wire_startup_read(p + at, n - at, &su, err, sizeof err);
        if (k < 0) { CHECK(err[0], "a refused startup packet without a reason"); return n; }
        if (k == 0) return n;
        CHECK(k >= 8 && (size_t)k <= n - at && k <= PGR_WIRE_MAX_STARTUP, "startup length %ld", k);
        check_string(su.user, sizeof su.user, "user");
        check_string(su.database, sizeof su.database, "database");
        at += (size_t)k;
        if (su.kind == PGR_STARTUP_V3) break;
    }
    return at;
}

/* The client's messages after startup, assembled into steps as the proxy does. */
static void fuzz_client(const uint8_t *p, size_t n)
{
    size_t at = fuzz_startup(p, n);
    pgr_wire_batch b;
    memset(&b, 0, sizeof b);
    while (at < n) {
        pgr_wire_msg m;
        char err[200] = "";
        long k = pgr_wire_msg_read(p + at, n - at, PGR_WIRE_MAX_MSG, &m, err, sizeof err);
        if (k < 0) { CHECK(err[0], "a bad length without a reason"); break; }
        if (k == 0) break;
        check_framing(p + at, n - at, k, &m);
        at += (size_t)k;
        pgr_fe_action a = pgr_wire_batch_add(&b, &m, err, sizeof err);
        if (a == PGR_FE_BAD) { CHECK(err[0], "a refused message without a reason"); break; }
        if (a == PGR_FE_TERMINATE) break;
        CHECK(b.nparams >= 0 && b.nparams <= 8, "%d parameters kept", b.nparams);
        for (int i = 0; i < b.nparams; i++)
            if (b.params[i]) CHECK(b.params[i] >= b.param_text && b.params[i] < b.param_text + sizeof b.param_text,
                                   "a parameter outside its buffer");
        if (a == PGR_FE_STEP || a == PGR_FE_FLUSH) {
            char label[48];
            pgr_wire_label(b.sql ? b.sql : "", label, sizeof label);
            CHECK(label[0] && strlen(label) < sizeof label, "label '%s'", label);
            b.sealed = a == PGR_FE_FLUSH;    /* a flushed step goes on sealed, as in the proxy */
            if (a == PGR_FE_STEP) pgr_wire_batch_reset(&b);
        }
    }
    pgr_wire_batch_free(&b);
}

/* The server's messages, read into outcomes up to each ReadyForQuery. */
static void fuzz_server(const uint8_t *p, size_t n)
{
    pgr_step st;
    memset(&st, 0, sizeof st);
    pgr_wire_outcome o;
    pgr_wire_outcome_init(&o, &st);
    size_t at = 0;
    while (at < n) {
        pgr_wire_msg m;
        char err[200] = "";
        long k = pgr_wire_msg_read(p + at, n - at, PGR_WIRE_MAX_MSG, &m, err, sizeof err);
        if (k <= 0) break;
        check_framing(p + at, n - at, k, &m);
        at += (size_t)k;
        pgr_be_action a = pgr_wire_outcome_add(&o, &m);
        check_string(st.sqlstate, sizeof st.sqlstate, "sqlstate");
        check_string(st.values, sizeof st.values, "values");
        check_string(st.constraint, sizeof st.constraint, "constraint");
        check_string(st.message, sizeof st.message, "message");
        if (a == PGR_BE_BAD) break;
        if (a == PGR_BE_READY) {
            CHECK(strlen(st.sqlstate) > 0, "a step ended without a SQLSTATE");
            CHECK(o.status == 'I' || o.status == 'T' || o.status == 'E', "status %d", o.status);
            CHECK(st.rows >= 0, "rows %ld", st.rows);
            pgr_wire_outcome_init(&o, &st);
        }
    }
}

/* ErrorResponse built from the input, then read back. */
static void fuzz_error_roundtrip(const uint8_t *p, size_t n)
{
    if (n < 2) return;
    size_t cap = p[0] * 4u + 8;
    char sev[11], code[6];
    size_t ns = p[1] % sizeof sev;
    p += 2;
    n -= 2;
    if (n < ns + 5) return;
    for (size_t i = 0; i < ns; i++) sev[i] = p[i] ? (char)p[i] : 'x';
    sev[ns] = '\0';
    for (size_t i = 0; i < 5; i++) code[i] = p[ns + i] ? (char)p[ns + i] : '0';
    code[5] = '\0';
    p += ns + 5;
    n -= ns + 5;
    char *msg = malloc(n + 1);
    if (!msg) return;
    for (size_t i = 0; i < n; i++) msg[i] = p[i] ? (char)p[i] : ' ';
    msg[n] = '\0';
    uint8_t *out = malloc(cap);
    if (!out) { free(msg); return; }
    size_t w = pgr_wire_error_build(out, cap, sev, code, msg);
    CHECK(w <= cap, "built %zu bytes into %zu", w, cap);
    if (w) {
        pgr_wire_msg m;
        char err[200];
        long k = pgr_wire_msg_read(out, w, PGR_WIRE_MAX_MSG, &m, err, sizeof err);
        CHECK(k == (long)w && m.type == 'E', "a built ErrorResponse does not read back whole (%ld of %zu)", k, w);
        pgr_wire_error e;
        CHECK(pgr_wire_error_parse(&m, &e) == 0, "a built ErrorResponse does not parse");
        CHECK(strcmp(e.sqlstate, code) == 0, "SQLSTATE '%s' came back as '%s'", code, e.sqlstate);
        CHECK(strncmp(e.severity, sev, sizeof e.severity - 1) == 0, "severity came back as '%s'", e.severity);
        size_t got = strlen(e.message);
        CHECK(strncmp(e.message, msg, got) == 0, "the message came back changed");
    }
    free(out);
    free(msg);
}

/* One body through every reader of its type. */
static void fuzz_bodies(const uint8_t *p, size_t n)
{
    if (n < 1) return;
    pgr_wire_msg m = { .type = (char)p[0], .body = p + 1, .len = n - 1 };
    pgr_wire_error e;
    long rows;
    pgr_wire_rowdesc rd;
    char vals[64], status;
    int32_t pid, code;
    uint32_t key;
    const char *sql;
    if (pgr_wire_error_parse(&m, &e) == 0) {
        check_string(e.severity, sizeof e.severity, "severity");
        check_string(e.sqlstate, sizeof e.sqlstate, "sqlstate");
        check_string(e.message, sizeof e.message, "message");
    }
    if (pgr_wire_tag_rows(&m, &rows) == 0) CHECK(rows >= 0, "rows %ld", rows);
    if (pgr_wire_rowdesc_parse(&m, &rd) == 0) CHECK(rd.ncols >= 0, "ncols %d", rd.ncols);
    pgr_wire_datarow_format(&rd, &m, vals, sizeof vals);
    check_string(vals, sizeof vals, "values");
    pgr_wire_datarow_format(NULL, &m, vals, 7);
    check_string(vals, 7, "values (7 bytes)");
    pgr_wire_ready_status(&m, &status);
    pgr_wire_backend_key(&m, &pid, &key);
    pgr_wire_auth_code(&m, &code);
    if (pgr_wire_query_text(&m, &sql) == 0) CHECK(strlen(sql) + 1 == m.len, "a query text that is not its body");
}

static void fuzz_label(const uint8_t *p, size_t n)
{
    char *z = malloc(n + 1);
    if (!z) return;
    memcpy(z, p, n);
    z[n] = '\0';
    size_t cap = n ? p[0] % 64 + 1 : 48;
    char label[64];
    pgr_wire_label(z, label, cap);
    check_string(label, cap, "label");
    CHECK(cap == 1 || label[0], "an empty label");
    for (const char *c = label; *c; c++) CHECK((unsigned char)*c >= 0x20 && *c != 0x7f, "a control character in a label");
    free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (data[0] % 6) {
    case 0: fuzz_startup(p, n); break;
    case 1: fuzz_client(p, n); break;
    case 2: fuzz_server(p, n); break;
    case 3: fuzz_error_roundtrip(p, n); break;
    case 4: fuzz_bodies(p, n); break;
    case 5: fuzz_label(p, n); break;
    }
    return 0;
}
