/* server.h — the throwaway PostgreSQL server pgrace starts when no DSN is given. */
#ifndef PGRACE_SERVER_H
#define PGRACE_SERVER_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct pgr_server {
    char dir[PATH_MAX];      /* private 0700 directory: data/, socket, logs */
    char dsn[PATH_MAX + 64]; /* unix socket only */
    pid_t pid;               /* postmaster */
    bool detached;           /* kept across runs (pgrace server start) */
} pgr_server;

/* Start a server in a fresh private directory. Detached: it outlives this process.
 * Returns 0, or -1 with err filled (everything created so far is removed). */
int pgr_server_start(pgr_server *srv, bool detached, volatile int *interrupted, char *err, size_t errlen);

/* Stop the server (fast shutdown, then harder) and remove its directory. Idempotent. */
void pgr_server_stop(pgr_server *srv);

/* Stop whatever throwaway server is registered; for atexit and signal paths. */
void pgr_server_cleanup_registered(void);

/* Remove every environment variable that could point libpq at another server (PG*, not
 * pgrace's own PGRACE_*). */
void pgr_scrub_pg_env(bool keep_auth);

/* `pgrace server start|stop|status`; returns the exit status. */
int pgr_server_command(const char *action, bool quiet);

#endif
