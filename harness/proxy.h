/*
 * proxy.h — pgr_proxy: the wire door. A PostgreSQL protocol proxy that programs connect to
 * instead of the server; every statement they send is one step through the seam (seam.h),
 * with the wire executor (exec_wire.c) forwarding it.
 *
 * Listeners: each listens on a unix socket (DIR/.s.PGSQL.PORT, in a directory the proxy
 * creates) and on 127.0.0.1:PORT. A listener is bound to a session (opts.sessions[i]):
 * every connection that comes through listener i runs its steps on that session, one step
 * at a time, so a program given listener i's PGHOST/PGPORT is session i to the scheduler
 * and the faults. With no sessions given there is one listener and each connection gets a
 * session of its own (pass-through: `pgrace proxy`).
 *
 * Authentication is relayed unchanged (the proxy forwards bytes until ReadyForQuery), so
 * every method the server offers works and pgrace never sees a password in clear: it holds
 * none, stores none, prints none.
 */
#ifndef PGRACE_PROXY_H
#define PGRACE_PROXY_H

#include "pgrace.h"

#include <stdio.h>
#include <sys/types.h>

#define PGR_PROXY_MAX_LISTENERS PGR_MAX_SESSIONS
#define PGR_PROXY_SESSION_WAIT_S 10      /* a bound session busy this long: the waiting connection is closed */

typedef struct pgr_proxy pgr_proxy;

typedef struct pgr_proxy_opts {
    const char *dsn;             /* the server: its host (a socket directory or an address),
                                  * port; the admin connection (kill-backend) uses all of it */
    const char *socket_dir;      /* where the listeners' sockets go; created when missing.
                                  * NULL: a fresh $TMPDIR/pgrace-proxy.XXXXXX, removed at close */
    uid_t client_uid;            /* clients run as this user (0 or our own: 0700 directory and
                                  * sockets; another: 0755 directory, sockets anyone may use) */
    int port;                    /* listener 0's TCP port on 127.0.0.1 (listener i: port + i);
                                  * 0: chosen by the system */
    int nsessions;               /* listeners bound to sessions[0..n); 0: one listener, a
                                  * session per connection */
    pgr_session *const *sessions;
    FILE *trace;                 /* each step as it completes (session, label, SQLSTATE,
                                  * rows, time); NULL none */
    const pgr_fault *fault;      /* pass-through only: each eligible step gets it with
                                  * probability fault->rate; NULL none */
    unsigned long long seed;     /* for those choices */
    double startup_timeout_s;    /* a client that has not authenticated by then is closed
                                  * (default 60, as PostgreSQL's authentication_timeout) */
    double step_timeout_s;       /* the watchdog for a step's answer; 0 none (pass-through) */
    int max_connections;         /* beyond, a new client gets 53300 (default 256) */
    volatile int *interrupted;   /* set by a signal: stop */
} pgr_proxy_opts;

/* Listen (both sockets of every listener). NULL with err when it cannot (a port in use, a
 * directory it may not use, an unreadable DSN). */
pgr_proxy *pgr_proxy_open(const pgr_proxy_opts *o, char *err, size_t errlen);
/* Where listener i listens: PGHOST (the directory) and PGPORT. */
const char *pgr_proxy_socket_dir(const pgr_proxy *px);
int pgr_proxy_port(const pgr_proxy *px, int listener);
/* Serve until *interrupted, pgr_proxy_stop, or a harness error (the server gone). 0, or -1
 * with err. */
int pgr_proxy_run(pgr_proxy *px, char *err, size_t errlen);
/* Serve in a thread of its own (pgr_proxy_run); 0, or -1. */
int pgr_proxy_start(pgr_proxy *px);
/* Ask pgr_proxy_run to return (any thread; async-signal-safe). */
void pgr_proxy_stop(pgr_proxy *px);
/* The harness error that stopped it (the server gone), or NULL. */
const char *pgr_proxy_error(pgr_proxy *px);
/* Stop serving, close every connection (both sides: no server connection outlives it),
 * join every thread, remove the sockets (and the directory it made). */
void pgr_proxy_close(pgr_proxy *px);

/* Order memory with listener i's steps (take and drop its step lock, waiting at most wait_s):
 * what this thread wrote before is seen by the listener's next step, and what its last step
 * wrote is seen here. A program's steps follow its start and precede its exit through the
 * kernel, which the thread sanitizer cannot see; this makes the order explicit. 0, or -1 when
 * a step held the lock all that time. */
int pgr_proxy_sync(pgr_proxy *px, int listener, double wait_s);

/* Counters since open. */
typedef struct pgr_proxy_stats {
    long long connections;       /* accepted (cancel requests included) */
    long long open;              /* proxied connections open now */
    long long steps;
    long long refused;           /* closed for a protocol violation, a timeout or the limit */
} pgr_proxy_stats;
void pgr_proxy_get_stats(pgr_proxy *px, pgr_proxy_stats *out);

#endif
