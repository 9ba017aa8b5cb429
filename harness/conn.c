/* conn.c — connections, and the per-variant schemas pgrace works in. */
#include "runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void first_line(char *dst, size_t cap, const char *msg)
{
    snprintf(dst, cap, "%s", msg ? msg : "");
    dst[strcspn(dst, "\n")] = '\0';
}

int pgr_dsn_check(const char *dsn, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *o = PQconninfoParse(dsn, &perr);
    if (!o) {
        char m[256];
        first_line(m, sizeof m, perr ? perr : "cannot parse");
        snprintf(err, errlen, "bad DSN '%s': %s", dsn, m);
        PQfreemem(perr);
        return -1;
    }
    PQconninfoFree(o);
    return 0;
}

static void ignore_notice(void *arg, const char *msg)
{
    (void)arg; (void)msg;
}

PGconn *pgr_connect(const char *dsn, char *err, size_t errlen)
{
    /* Earlier keywords are defaults; the DSN (expanded from dbname) overrides them. */
    const char *keys[] = { "connect_timeout", "application_name", "dbname", NULL };
    const char *vals[] = { "10", "pgrace", dsn, NULL };
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        char m[300];
        first_line(m, sizeof m, c ? PQerrorMessage(c) : "out of memory");
        snprintf(err, errlen, "cannot connect to the server: %s", m);
        if (c) PQfinish(c);
        return NULL;
    }
    PQsetNoticeProcessor(c, ignore_notice, NULL);   /* NOTICEs are not results */
    return c;
}

void pgr_server_version(PGconn *c, char *out, size_t len)
{
    int v = PQserverVersion(c);
    snprintf(out, len, "PostgreSQL %d.%d", v / 10000, v % 10000);
}

/* Run an admin command; -1 + err on failure. */
static int admin_exec(PGconn *c, const char *sql, int n, const char *const *p, char *err, size_t errlen)
{
    PGresult *r = n ? PQexecParams(c, sql, n, NULL, p, NULL, NULL, 0) : PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        char m[300];
        first_line(m, sizeof m, PQresultErrorMessage(r));
        snprintf(err, errlen, "%s", m);
        PQclear(r);
        return -1;
    }
    PQclear(r);
    return 0;
}

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
    PGresult *r = PQexec(admin, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        snprintf(q->error, sizeof q->error, "%s %s", code ? code : "XX000", msg ? msg : "");
    }
    PQclear(r);
    return admin_exec(admin, "ROLLBACK TO SAVEPOINT seed_sql", 0, NULL, err, errlen);
}

int pgr_schema_setup(PGconn *admin, const pgr_scenario *sc, const pgr_variant *v,
                     pgr_schema *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "pgrace_%s_%s", sc->name, v->name);
    const char *p[1] = { out->name };
    char e[400];

    if (admin_exec(admin, "BEGIN", 0, NULL, e, sizeof e) ||
        admin_exec(admin, "SELECT pg_advisory_xact_lock(hashtext('pgrace-ddl'))", 0, NULL, e, sizeof e))
        goto fail;
    PGresult *r = PQexecParams(admin,
        "SELECT obj_description(n.oid, 'pg_namespace') FROM pg_namespace n WHERE nspname = $1",
        1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        first_line(e, sizeof e, PQresultErrorMessage(r));
        PQclear(r);
        goto fail;
    }
    bool exists = PQntuples(r) == 1;
    bool ours = exists && !PQgetisnull(r, 0, 0) && strcmp(PQgetvalue(r, 0, 0), SCHEMA_MARK) == 0;
    PQclear(r);
    if (exists && !ours) {
        snprintf(e, sizeof e, "schema %s exists and was not created by pgrace; refusing to touch it", out->name);
        goto fail;
    }
    char sql[512];
    if (!exists) {
        snprintf(sql, sizeof sql, "CREATE SCHEMA %s; COMMENT ON SCHEMA %s IS '%s'", out->name, out->name, SCHEMA_MARK);
        if (admin_exec(admin, sql, 0, NULL, e, sizeof e)) goto fail;
        out->created = true;
    }
    snprintf(sql, sizeof sql, "SET LOCAL search_path = %s; CREATE SEQUENCE IF NOT EXISTS pgrace_run", out->name);
    if (admin_exec(admin, sql, 0, NULL, e, sizeof e)) goto fail;
    /* error-at faults: a real server error, raised by the server in the session's transaction */
    if (admin_exec(admin, "CREATE OR REPLACE FUNCTION pgrace_raise(msg text) RETURNS void LANGUAGE plpgsql AS "
                          "$$BEGIN RAISE EXCEPTION USING ERRCODE = 'P0001', MESSAGE = msg; END$$", 0, NULL, e, sizeof e))
        goto fail;
    if (sc->ddl && (out->created || !sc->ddl_once) && admin_exec(admin, sc->ddl, 0, NULL, e, sizeof e)) goto fail;
    /* The seed's own DDL, when it does not run as written: its verdict kept, then the
     * faithful form (v->ddl). Then the seed's rollback plan, against the schema the
     * migration made. Each in a savepoint that is rolled back whatever happens. */
    if (v->ddl_as_written && seed_sql_try(admin, out, "ddl", v->ddl_as_written, e, sizeof e)) goto fail;
    if (v->ddl && admin_exec(admin, v->ddl, 0, NULL, e, sizeof e)) goto fail;
    if (v->rollback_as_written && seed_sql_try(admin, out, "rollback", v->rollback_as_written, e, sizeof e)) goto fail;
    if (admin_exec(admin, "COMMIT", 0, NULL, e, sizeof e)) goto fail;

    snprintf(sql, sizeof sql, "SELECT pg_advisory_lock_shared(hashtext('%s')), nextval('%s.pgrace_run')",
             out->name, out->name);
    r = PQexec(admin, sql);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        first_line(e, sizeof e, PQresultErrorMessage(r));
        PQclear(r);
        goto fail;
    }
    out->run_id = atoll(PQgetvalue(r, 0, 1));
    PQclear(r);
    snprintf(sql, sizeof sql, "SET search_path = %s", out->name);
    if (admin_exec(admin, sql, 0, NULL, e, sizeof e)) goto fail;
    return 0;
fail:
    PQclear(PQexec(admin, "ROLLBACK"));
    snprintf(err, errlen, "setting up schema %s: %s", out->name, e);
    return -1;
}

void pgr_schema_release(PGconn *admin, const pgr_schema *schema)
{
    if (!admin || PQstatus(admin) != CONNECTION_OK || !schema->name[0]) return;
    char sql[256];
    snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock_shared(hashtext('%s'))", schema->name);
    PQclear(PQexec(admin, sql));
    if (!schema->created) return;
    snprintf(sql, sizeof sql, "SELECT pg_try_advisory_lock(hashtext('%s'))", schema->name);
    PGresult *r = PQexec(admin, sql);
    bool got = PQresultStatus(r) == PGRES_TUPLES_OK && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!got) return;                   /* another pgrace is using it: leave it */
    snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", schema->name);
    PQclear(PQexec(admin, sql));
    snprintf(sql, sizeof sql, "SELECT pg_advisory_unlock(hashtext('%s'))", schema->name);
    PQclear(PQexec(admin, sql));
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
    PGresult *r = PQexec(c, SCHEMA_DIGEST);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        first_line(err, errlen, PQresultErrorMessage(r));
        PQclear(r);
        return NULL;
    }
    char *out = strdup(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (!out) snprintf(err, errlen, "out of memory");
    return out;
}
