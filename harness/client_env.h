/*
 * client_env.h — the environment of a process whose statements must come through a session's
 * proxy listener: a program (target_program.c) or an application instance (app.c). PGHOST,
 * PGPORT, PGDATABASE, PGUSER, PGOPTIONS (the variant's schema and the cell's isolation level),
 * PGSSLMODE, DATABASE_URL (the same listener over TCP), PGRACE_SCHEMA, PGRACE_ISOLATION,
 * PGPASSWORD when the DSN has one, the caller's extra variables, and the inherited rest less
 * every stale PG*, DATABASE_URL and PGRACE_* variable that would send it past the proxy.
 */
#ifndef PGRACE_CLIENT_ENV_H
#define PGRACE_CLIENT_ENV_H

#include "pgrace.h"

typedef struct pgr_client_env_opts {
    const char *host;                /* PGHOST: the proxy's socket directory */
    int port;                        /* the session's listener */
    const char *dbname, *user;
    const char *password;            /* NULL or "": none */
    const char *schema;
    pgr_isolation iso;
} pgr_client_env_opts;

/* A NULL-terminated environment (one malloc'd block: free() it), extra ("NAME=value", n of
 * them) added last. NULL when out of memory. */
char **pgr_client_env(const pgr_client_env_opts *o, const char *const *extra, int nextra);

#endif
