/* conn.c — connections, and the per-variant schemas pgrace works in. */
#include "runner.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void first_line(char *dst, size_t cap, const char *msg)
{
    snprintf(dst, cap, "%s", msg ? msg : "");
    dst[strcspn(dst, "\n")] = '\0';
}

/* ---- passwords are never shown ----
 * A DSN, or a libpq message about one, may hold a password: in a keyword's value, in a URI's
 * user:password@ or ?password=, or anywhere in a DSN that does not even parse (a password with
 * an unquoted space). The parts of the DSN that may be secret are found as byte ranges of its
 * text, erring on the side of hiding; text is then shown with those parts as "***". */

#define MAX_HIDDEN 32
#define MAX_LITERALS 40
typedef struct secrets {
    const char *dsn;
    size_t n;
    size_t a[MAX_HIDDEN], b[MAX_HIDDEN];        /* dsn[a, b) is hidden */
    int nhidden;
    const char *lit[MAX_LITERALS];              /* strings hidden wherever they appear */
    size_t litlen[MAX_LITERALS];
    int nlit;
    PQconninfoOption *known;                    /* every option libpq has */
    PQconninfoOption *parsed;                   /* the DSN's own, when it parses */
} secrets;

static void hide(secrets *s, size_t a, size_t b)
{
    if (b <= a) return;
    if (s->nhidden == MAX_HIDDEN) {                 /* too many: hide all from here on */
        if (a < s->a[MAX_HIDDEN - 1]) s->a[MAX_HIDDEN - 1] = a;
        s->b[MAX_HIDDEN - 1] = s->n;
        return;
    }
    s->a[s->nhidden] = a;
    s->b[s->nhidden++] = b;
}

static bool hidden_at(const secrets *s, size_t i)
{
    for (int k = 0; k < s->nhidden; k++)
        if (s->a[k] <= i && i < s->b[k]) return true;
    return false;
}

static void add_literal(secrets *s, const char *p, size_t len)
{
    if (p && len && s->nlit < MAX_LITERALS) { s->lit[s->nlit] = p; s->litlen[s->nlit++] = len; }
}

/* Is the value of keyword k hidden? 2: it is password-like (or a password option: libpq
 * marks those "*"); 1: libpq does not know it (a misspelt "pasword"); 0: no. */
static int secret_keyword(const secrets *s, const char *k, size_t len)
{
    char lower[64];
    if (len == 0 || len >= sizeof lower) return 1;
    for (size_t i = 0; i < len; i++) lower[i] = (char)tolower((unsigned char)k[i]);
    lower[len] = '\0';
    if (strstr(lower, "pass") || strstr(lower, "pw")) return 2;
    for (const PQconninfoOption *o = s->known; o && o->keyword; o++)
        if (strlen(o->keyword) == len && memcmp(o->keyword, k, len) == 0)
            return o->dispchar && strchr(o->dispchar, '*') ? 2 : 0;
    return 1;
}

/* keyword = value pairs, as libpq reads them. A word with no '=' after a hidden value may be
 * the rest of a password that held a space, and one that looks like a password keyword or
 * user:password@ may be one: from there to the end, everything is hidden. */
static void keyword_secrets(secrets *s)
{
    const char *d = s->dsn;
    size_t n = s->n, i = 0;
    bool after_secret = false;
    while (i < n) {
        while (i < n && isspace((unsigned char)d[i])) i++;
        if (i >= n) break;
        size_t k0 = i;
        while (i < n && !isspace((unsigned char)d[i]) && d[i] != '=') i++;
        size_t k1 = i;
        while (i < n && isspace((unsigned char)d[i])) i++;
        if (i >= n || d[i] != '=') {                          /* a bare word */
            const char *colon = memchr(d + k0, ':', k1 - k0);
            if (after_secret || secret_keyword(s, d + k0, k1 - k0) == 2 ||
                (colon && memchr(colon, '@', (size_t)(d + k1 - colon)))) {
                hide(s, k0, n);
                return;
            }
            i = k1;
            continue;
        }
        for (i++; i < n && isspace((unsigned char)d[i]); i++) ;
        bool quoted = i < n && d[i] == '\'';
        size_t v0 = i += quoted;
        while (i < n && (quoted ? d[i] != '\'' : !isspace((unsigned char)d[i])))
            i += (d[i] == '\\' && i + 1 < n) ? 2 : 1;
        if (quoted && i >= n) { hide(s, v0, n); return; }          /* unterminated */
        after_secret = secret_keyword(s, d + k0, k1 - k0) != 0;
        if (after_secret) hide(s, v0, i);
        i += quoted;
    }
}

/* A URI starting at d[at] ("scheme://..."): from the first ':' after "://" to the last
 * '@' (user:password@, even with a stray '@' or '/' in the password); in the query, the
 * value of a secret or percent-encoded key, and any item with no '=' at all. */
static void uri_secrets(secrets *s, size_t at)
{
    const char *d = s->dsn, *colon = strchr(d + at + 3, ':'), *atsign = strrchr(d, '@');
    if (colon && atsign && atsign > colon) hide(s, (size_t)(colon + 1 - d), (size_t)(atsign - d));
    const char *q = strchr(d + at + 3, '?');
    while (q && *q) {
        const char *item = q + 1, *end = item + strcspn(item, "&");
        const char *eq = memchr(item, '=', (size_t)(end - item));
        if (!eq) hide(s, (size_t)(item - d), (size_t)(end - d));
        else if (memchr(item, '%', (size_t)(eq - item)) || secret_keyword(s, item, (size_t)(eq - item)))
            hide(s, (size_t)(eq + 1 - d), (size_t)(end - d));
        q = *end ? end : NULL;
    }
}

static void find_secrets(secrets *s, const char *dsn)
{
    memset(s, 0, sizeof *s);
    s->dsn = dsn ? dsn : "";
    s->n = strlen(s->dsn);
    s->known = PQconninfoParse("", NULL);
    s->parsed = PQconninfoParse(s->dsn, NULL);
    if (strncmp(s->dsn, "postgresql://", 13) != 0 && strncmp(s->dsn, "postgres://", 11) != 0)
        keyword_secrets(s);
    for (const char *p = s->dsn; (p = strstr(p, "://")); p += 3)   /* also a URI inside a value */
        uri_secrets(s, (size_t)(p - s->dsn));
    for (int k = 0; k < s->nhidden; k++) add_literal(s, s->dsn + s->a[k], s->b[k] - s->a[k]);
    for (const PQconninfoOption *o = s->parsed; o && o->keyword; o++)   /* decoded values */
        if (o->val && secret_keyword(s, o->keyword, strlen(o->keyword))) add_literal(s, o->val, strlen(o->val));
    const char *env = getenv("PGPASSWORD");
    if (env) add_literal(s, env, strlen(env));
}

typedef struct sbuf { char *p; size_t cap, len; } sbuf;

static void put(sbuf *o, char c)
{
    if (o->len + 1 >= o->cap) return;
    o->p[o->len++] = (unsigned char)c < 0x20 ? ' ' : c;       /* one line, always */
    o->p[o->len] = '\0';
}

static void puts_(sbuf *o, const char *t)
{
    while (*t) put(o, *t++);
}

/* Length of the longest known secret of at least minlen bytes that t[0, len) starts with. */
static size_t literal_at(const secrets *s, const char *t, size_t len, size_t minlen)
{
    size_t best = 0;
    for (int k = 0; k < s->nlit; k++)
        if (s->litlen[k] >= minlen && s->litlen[k] > best && s->litlen[k] <= len &&
            memcmp(t, s->lit[k], s->litlen[k]) == 0)
            best = s->litlen[k];
    return best;
}

/* The DSN's d[from, to), its hidden parts (and a password's text wherever else it
 * recurs) as "***". */
static void put_window(sbuf *o, const secrets *s, size_t from, size_t to)
{
    for (size_t i = from; i < to;) {
        size_t lit = literal_at(s, s->dsn + i, to - i, 4);
        if (!lit && !hidden_at(s, i)) { put(o, s->dsn[i++]); continue; }
        puts_(o, "***");
        for (i += lit; i < to && hidden_at(s, i); i++) ;
    }
}

/* t[0, len) with every known secret of at least minlen bytes as "***". Short ones are only
 * looked for inside quotes: in prose they would blank out ordinary letters. */
static void put_masked(sbuf *o, const secrets *s, const char *t, size_t len, size_t minlen)
{
    for (size_t i = 0; i < len;) {
        size_t lit = literal_at(s, t + i, len - i, minlen);
        if (lit) { puts_(o, "***"); i += lit; } else put(o, t[i++]);
    }
}

/* A quoted piece of a message (libpq quotes what it echoes). If it is a piece of the DSN
 * that is shown whole somewhere, it gives nothing away; if it is one only where it touches
 * a hidden part, it is shown as that piece of the DSN is shown. */
static void put_fragment(sbuf *o, const secrets *s, const char *f, size_t len)
{
    size_t touching = SIZE_MAX;
    for (size_t at = 0; len && at + len <= s->n; at++) {
        if (memcmp(s->dsn + at, f, len) != 0) continue;
        bool hid = false;
        for (int k = 0; k < s->nhidden && !hid; k++) hid = s->a[k] < at + len && at < s->b[k];
        if (!hid) { touching = SIZE_MAX; break; }
        if (touching == SIZE_MAX) touching = at;
    }
    if (touching != SIZE_MAX) put_window(o, s, touching, touching + len);
    else put_masked(o, s, f, len, 1);
}

void pgr_dsn_redact(const char *dsn, const char *text, char *out, size_t cap)
{
    if (!cap) return;
    out[0] = '\0';
    sbuf o = { out, cap, 0 };
    secrets s;
    find_secrets(&s, dsn);
    if (!text) {
        put_window(&o, &s, 0, s.n);
    } else {
        for (const char *p = text; *p;) {
            const char *q = strchr(p, '"');
            size_t plain = q ? (size_t)(q - p) : strlen(p);
            put_masked(&o, &s, p, plain, 4);
            if (!q) break;
            const char *close = strchr(q + 1, '"');
            size_t flen = close ? (size_t)(close - q - 1) : strlen(q + 1);
            put(&o, '"');
            put_fragment(&o, &s, q + 1, flen);
            if (close) put(&o, '"');
            p = q + 1 + flen + (close != NULL);
        }
    }
    PQconninfoFree(s.known);
    PQconninfoFree(s.parsed);
}

int pgr_dsn_check(const char *dsn, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *o = PQconninfoParse(dsn, &perr);
    if (!o) {
        char m[256], shown[512], why[512];
        first_line(m, sizeof m, perr ? perr : "cannot parse");
        pgr_dsn_redact(dsn, NULL, shown, sizeof shown);
        pgr_dsn_redact(dsn, m, why, sizeof why);
        snprintf(err, errlen, "bad DSN '%s': %s", shown, why);
        PQfreemem(perr);
        return -1;
    }
    PQconninfoFree(o);
    return 0;
}

void pgr_server_version(PGconn *c, char *out, size_t len)
{
    int v = PQserverVersion(c);
    snprintf(out, len, "PostgreSQL %d.%d", v / 10000, v % 10000);
}

/* Run an admin command under the watchdog; -1 + err on failure. */
static int admin_exec(PGconn *c, const char *sql, int n, const char *const *p, char *err, size_t errlen)
{
    PGresult *r = pgr_query(c, sql, n, p, err, errlen);
    PQclear(r);
    return r ? 0 : -1;
}

/* ---- the schemas pgrace works in ----
 * Each pool has its own schema, "pgrace_<scenario>_<variant>_<backend pid of its admin
 * connection>": concurrent runs never share one. The admin connection takes a session-level
 * advisory lock on the schema's name before creating it and holds it for the run, and the
 * schema's comment starts with SCHEMA_MARK and names the run. A run drops its schemas at its
 * end; a schema whose lock is free has lost its run (killed, or its connection lost) and is
 * dropped by the next run on that server (pgr_schema_reclaim). A schema without the mark is
 * never touched. */

static const char SCHEMA_MARK[] = "created by pgrace";

/* Run the seed's SQL as written (one script, as a client sends it: the first error stops
 * it) in a savepoint, keep the server's verdict in out->seed_sql, and roll it back. -1 +
 * err only when the savepoint itself fails. */
static int seed_sql_try(PGconn *admin, pgr_schema *out, const char *which, const char *sql, char *err, size_t errlen)
{
    if (out->nseed_sql == PGR_MAX_SEED_SQL) { snprintf(err, errlen, "more than %d pieces of seed SQL", PGR_MAX_SEED_SQL); return -1; }
    pgr_seed_sql *q = &out->seed_sql[out->nseed_sql++];
    q->which = which;
    q->sql = sql;
    q->error[0] = '\0';
    if (admin_exec(admin, "SAVEPOINT seed_sql", 0, NULL, err, errlen)) return -1;
    pgr_call_begin(admin, 0);
    PGresult *r = PQexec(admin, sql);
    if (pgr_call_end(admin, err, errlen) != 0) { PQclear(r); return -1; }
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        snprintf(q->error, sizeof q->error, "%s %s", code ? code : "XX000", msg ? msg : "");
    }
    PQclear(r);
    return admin_exec(admin, "ROLLBACK TO SAVEPOINT seed_sql", 0, NULL, err, errlen);
}

/* Does a schema comment carry pgrace's mark? */
static bool marked(const char *comment)
{
    size_t n = strlen(SCHEMA_MARK);
    return comment && strncmp(comment, SCHEMA_MARK, n) == 0 && (comment[n] == '\0' || comment[n] == ':');
}

/* The lock a schema's run holds: on hashtext(name), as every pgrace since shared schemas. */
static const char LOCK_TRY[] = "SELECT pg_try_advisory_lock(hashtext($1))";
static const char LOCK_FREE[] = "SELECT pg_advisory_unlock(hashtext($1))";

/* $1 true when it got the lock (via a one-row boolean query); -1 + err on failure. */
static int query_bool(PGconn *c, const char *sql, const char *arg, char *err, size_t errlen)
{
    PGresult *r = pgr_query(c, sql, 1, (const char *[]){ arg }, err, errlen);
    if (!r) return -1;
    int v = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    return v;
}

int pgr_schema_setup(PGconn *admin, const pgr_scenario *sc, const pgr_variant *v,
                     pgr_schema *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    char base[64], suffix[16];
    snprintf(base, sizeof base, "pgrace_%s_%s", sc->name, v->name);
    snprintf(suffix, sizeof suffix, "_%d", PQbackendPID(admin));
    if (strlen(base) + strlen(suffix) > 63) base[63 - strlen(suffix)] = '\0';    /* NAMEDATALEN */
    snprintf(out->name, sizeof out->name, "%s%s", base, suffix);
    const char *p[1] = { out->name };
    char e[400], sql[1024];

    /* the run's lock first: from now on no other pgrace takes this schema for a dead run's */
    int got = query_bool(admin, LOCK_TRY, out->name, e, sizeof e);
    if (got < 0) goto fail;
    if (!got) {
        snprintf(e, sizeof e, "its advisory lock is held by another session; refusing to touch it");
        goto fail;
    }
    out->locked = true;
    if (admin_exec(admin, "BEGIN", 0, NULL, e, sizeof e) ||
        admin_exec(admin, "SELECT pg_advisory_xact_lock(hashtext('pgrace-ddl'))", 0, NULL, e, sizeof e))
        goto fail;
    PGresult *r = pgr_query(admin, "SELECT obj_description(n.oid, 'pg_namespace') FROM pg_namespace n WHERE nspname = $1",
                            1, p, e, sizeof e);
    if (!r) goto fail;
    bool exists = PQntuples(r) == 1;
    bool ours = exists && !PQgetisnull(r, 0, 0) && marked(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (exists && !ours) {
        snprintf(e, sizeof e, "schema %s exists and was not created by pgrace; refusing to touch it", out->name);
        goto fail;
    }
    if (exists) {               /* a gone run's, whose backend had the same pid: its lock was free */
        snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", out->name);
        if (admin_exec(admin, sql, 0, NULL, e, sizeof e)) goto fail;
    }
    char host[64] = "?", when[32] = "?";
    gethostname(host, sizeof host);
    host[sizeof host - 1] = '\0';
    for (char *h = host; *h; h++) if (*h == '\'' || (unsigned char)*h < 0x20) *h = '?';
    time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    snprintf(sql, sizeof sql, "CREATE SCHEMA %s; COMMENT ON SCHEMA %s IS '%s: the run of pgrace pid %d on %s, "
             "started %s; its admin session (backend %d) holds the advisory lock on hashtext(''%s'') while it runs. "
             "Dropped when that run ends, or by the next pgrace once the lock is free'",
             out->name, out->name, SCHEMA_MARK, (int)getpid(), host, when, PQbackendPID(admin), out->name);
    if (admin_exec(admin, sql, 0, NULL, e, sizeof e)) goto fail;
    snprintf(sql, sizeof sql, "SET LOCAL search_path = %s; CREATE SEQUENCE IF NOT EXISTS pgrace_run", out->name);
    if (admin_exec(admin, sql, 0, NULL, e, sizeof e)) goto fail;
    /* error-at faults: a real server error, raised by the server in the session's transaction */
    if (admin_exec(admin, "CREATE OR REPLACE FUNCTION pgrace_raise(msg text) RETURNS void LANGUAGE plpgsql AS "
                          "$$BEGIN RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = msg; END$$", 0, NULL, e, sizeof e))
        goto fail;
    if (sc->ddl && admin_exec(admin, sc->ddl, 0, NULL, e, sizeof e)) goto fail;
    /* The seed's own DDL, when it does not run as written: its verdict kept, then the
     * faithful form (v->ddl). Then the seed's rollback plan, against the schema the
     * migration made. Each in a savepoint that is rolled back whatever happens. */
    if (v->ddl_as_written && seed_sql_try(admin, out, "ddl", v->ddl_as_written, e, sizeof e)) goto fail;
    if (v->ddl && admin_exec(admin, v->ddl, 0, NULL, e, sizeof e)) goto fail;
    if (v->rollback_as_written && seed_sql_try(admin, out, "rollback", v->rollback_as_written, e, sizeof e)) goto fail;
    if (admin_exec(admin, "COMMIT", 0, NULL, e, sizeof e)) goto fail;
    out->created = true;                /* from here on, release drops it */

    snprintf(sql, sizeof sql, "SELECT nextval('%s.pgrace_run')", out->name);
    if (!(r = pgr_query(admin, sql, 0, NULL, e, sizeof e))) goto fail;
    out->run_id = atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    snprintf(sql, sizeof sql, "SET search_path = %s", out->name);
    if (admin_exec(admin, sql, 0, NULL, e, sizeof e)) goto fail;
    return 0;
fail:
    if (!out->created) PQclear(pgr_query(admin, "ROLLBACK", 0, NULL, sql, sizeof sql));
    snprintf(err, errlen, "setting up schema %s: %s", out->name, e);
    return -1;
}

void pgr_schema_release(PGconn *admin, const pgr_schema *schema)
{
    if (!admin || PQstatus(admin) != CONNECTION_OK || !schema->locked) return;
    char sql[256], e[PGR_ERRLEN];
    if (schema->created) {
        snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", schema->name);
        PQclear(pgr_query(admin, sql, 0, NULL, e, sizeof e));      /* failing: the next run reclaims it */
    }
    PQclear(pgr_query(admin, LOCK_FREE, 1, (const char *[]){ schema->name }, e, sizeof e));
}

int pgr_schema_reclaim(PGconn *c, char *err, size_t errlen)
{
    PGresult *r = pgr_query(c, "SELECT nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace "
                               "WHERE starts_with(nspname, 'pgrace_') ORDER BY nspname", 0, NULL, err, errlen);
    if (!r) return -1;
    int dropped = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        const char *name = PQgetvalue(r, i, 0);
        if (PQgetisnull(r, i, 1) || !marked(PQgetvalue(r, i, 1))) continue;     /* not ours: never */
        char e[PGR_ERRLEN], sql[256];
        int got = query_bool(c, LOCK_TRY, name, e, sizeof e);
        if (got <= 0) continue;                                              /* its run is alive */
        PGresult *q = pgr_query(c, "SELECT quote_ident($1)", 1, (const char *[]){ name }, e, sizeof e);
        if (q && admin_exec(c, "BEGIN; SET LOCAL lock_timeout = '1s'", 0, NULL, e, sizeof e) == 0) {
            /* someone's lock on one of its tables: not worth waiting for, the next run tries again */
            snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", PQgetvalue(q, 0, 0));
            bool ok = admin_exec(c, sql, 0, NULL, e, sizeof e) == 0;
            ok = admin_exec(c, ok ? "COMMIT" : "ROLLBACK", 0, NULL, e, sizeof e) == 0 && ok;
            dropped += ok;
        }
        PQclear(q);
        PQclear(pgr_query(c, LOCK_FREE, 1, (const char *[]){ name }, e, sizeof e));
    }
    PQclear(r);
    return dropped;
}

int pgr_session_setup(PGconn *c, const pgr_schema *schema, pgr_isolation iso, int *backend_pid,
                      char *err, size_t errlen)
{
    static const char *const level[] = { "read committed", "repeatable read", "serializable" };
    char sql[256], e[300];
    snprintf(sql, sizeof sql, "SET search_path = %s; SET default_transaction_isolation = '%s'",
             schema->name, level[iso]);
    if (admin_exec(c, sql, 0, NULL, e, sizeof e)) {
        snprintf(err, errlen, "session setup: %s", e);
        return -1;
    }
    *backend_pid = PQbackendPID(c);
    return 0;
}

/* A digest of every table in the connection's schema: name, row count and the sum of a
 * 64-bit hash of each row's text (order-free, so no sort: a schema an earlier run left
 * behind can be large). One round trip (query_to_xml runs the per-table query). */
static const char SCHEMA_DIGEST[] =
    "SELECT coalesce(string_agg(c.relname || ' ' || (xpath('/row/d/text()', query_to_xml(format("
    "  'SELECT count(*) || '' '' || coalesce(sum(hashtextextended(t::text, 0)::numeric), 0) AS d "
    "   FROM %I.%I t', n.nspname, c.relname), false, true, '')))[1]::text, '; ' ORDER BY c.relname), '') "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')";

char *pgr_schema_digest(PGconn *c, char *err, size_t errlen)
{
    PGresult *r = pgr_query(c, SCHEMA_DIGEST, 0, NULL, err, errlen);
    if (!r) return NULL;
    if (PQntuples(r) != 1) {
        snprintf(err, errlen, "schema digest: %d rows", PQntuples(r));
        PQclear(r);
        return NULL;
    }
    char *out = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!out) snprintf(err, errlen, "out of memory");
    return out;
}
