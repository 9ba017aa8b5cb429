/* conn.h — connections, per-variant schemas and sessions on the server (conn.c). */
#ifndef PGRACE_CONN_H
#define PGRACE_CONN_H

#include "pgrace.h"
#include "results.h"

/* Check a DSN's syntax. 0, or -1 with err ("bad DSN '...': ...", passwords hidden). */
int pgr_dsn_check(const char *dsn, char *err, size_t errlen);
/* Copy text to out (one line, at most cap bytes) with every trace of a password in dsn as
 * "***"; text NULL shows the DSN itself. For any DSN, well-formed or not, and any message
 * about it (libpq's quote parts of it). Every DSN or libpq message shown goes through this. */
void pgr_dsn_redact(const char *dsn, const char *text, char *out, size_t cap);
/* ---- connections under the watchdog (watchdog.c) ----
 * Every connection pgr_connect opens is known until pgr_disconnect, and every blocking call
 * on one runs between pgr_call_begin and pgr_call_end: past its deadline the watchdog
 * cancels it, and shuts its socket down when the server does not answer the cancel within a
 * second; a second after an interrupt, every socket. No thread waits on a frozen server. */

/* Where the interrupt flag is (set by the signal handlers) and the step timeout (<= 0: 30 s),
 * the deadline of a call that names none. Before the first connection. */
void pgr_watchdog_configure(volatile int *interrupted, double step_timeout_s);
/* Connect (connect_timeout 10 s unless the DSN says otherwise; given up when interrupted)
 * and register the connection. NULL + err on failure. */
PGconn *pgr_connect(const char *dsn, char *err, size_t errlen);
/* Unregister and close (NULL: nothing). Every connection of pgr_connect ends here. */
void pgr_disconnect(PGconn *c);
/* A blocking call on c starts; its deadline is timeout_s from now (<= 0: the step timeout). */
void pgr_call_begin(PGconn *c, double timeout_s);
/* It ended: 0, or -1 with why (one line) when the watchdog cancelled it or closed the
 * connection (whatever the call returned is then not to be trusted). */
int pgr_call_end(PGconn *c, char *why, size_t len);
/* Ask the server to cancel c's statement; returns at once (the request goes from a thread). */
void pgr_cancel(PGconn *c);
/* PQexec (nparams 0: several statements allowed) or PQexecParams under the watchdog. The
 * result when it succeeded; NULL + err (one line) on any failure. */
PGresult *pgr_query(PGconn *c, const char *sql, int nparams, const char *const *params, char *err, size_t errlen);
/* Server version string ("PostgreSQL 15.18"). */
void pgr_server_version(PGconn *c, char *out, size_t len);

/* A pool's own schema, "pgrace_<scenario>_<variant>_<admin backend pid>" (concurrent runs
 * never share one), created with the scenario's and the variant's DDL under a session-level
 * advisory lock on its name that the admin connection holds for the run; its comment starts
 * "created by pgrace" and names the run. */
typedef struct pgr_schema {
    char name[64];
    bool locked;               /* this connection holds the schema's lock */
    bool created;              /* this connection created it, so drops it */
    long long run_id;          /* from the schema's run sequence */
    pgr_seed_sql seed_sql[PGR_MAX_SEED_SQL];  /* the variant's ddl_as_written, then its
                                               * rollback_as_written: each one's verdict */
    int nseed_sql;
} pgr_schema;

int pgr_schema_setup(PGconn *admin, const pgr_scenario *sc, const pgr_variant *v,
                     pgr_schema *out, char *err, size_t errlen);
/* Drop the schema and free its lock (a connection lost meanwhile: pgr_schema_reclaim's job). */
void pgr_schema_release(PGconn *admin, const pgr_schema *schema);
/* Drop every schema pgrace created whose run is gone (marked, its advisory lock free: the
 * run was killed or lost its connection). Never one without the mark. How many, or -1 + err. */
int pgr_schema_reclaim(PGconn *c, char *err, size_t errlen);
/* A digest of every table of the connection's schema (row counts and an order-free hash of
 * the rows): equal digests, nothing written. malloc'd; NULL + err on error. */
char *pgr_schema_digest(PGconn *c, char *err, size_t errlen);
/* Point a connection at the schema, set isolation; returns 0 or -1+err. */
int pgr_session_setup(PGconn *c, const pgr_schema *schema, pgr_isolation iso, int *backend_pid,
                      char *err, size_t errlen);

#endif
