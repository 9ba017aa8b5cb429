/*
 * webapp.h — the application an http variant's requests go to: one instance per session (as
 * replicas behind a load balancer), each started by pgrace with PORT and DATABASE_URL (its
 * session's proxy listener) set, waited for until it listens, and stopped with its process
 * group when the pool closes, on error and on Ctrl-C alike.
 */
#ifndef PGRACE_WEBAPP_H
#define PGRACE_WEBAPP_H

#include "client_env.h"

typedef struct pgr_webapp pgr_webapp;

typedef struct pgr_webapp_opts {
    const char *cmd;                 /* run by /bin/sh -c from the current directory */
    int ninstances;
    /* instance i's database environment: env.port is replaced by port_of(port_ctx, i) */
    pgr_client_env_opts env;
    int (*port_of)(void *port_ctx, int instance);
    void *port_ctx;
    double ready_timeout_s;          /* to listen (0: 30 s) */
    volatile int *interrupted;
} pgr_webapp_opts;

/* Start every instance and wait until each accepts a connection on its port. NULL with err
 * (one line, "app instance N ...": which instance, why, the last line it printed) when one cannot start, exits or
 * does not listen in time; nothing is left running then. */
pgr_webapp *pgr_webapp_start(const pgr_webapp_opts *o, char *err, size_t errlen);
/* Instance i's port on 127.0.0.1. */
int pgr_webapp_port(const pgr_webapp *a, int i);
/* Has instance i exited? Then why (err), with the last line of its output. */
bool pgr_webapp_gone(pgr_webapp *a, int i, char *err, size_t errlen);
/* Stop every instance (SIGTERM to its group, SIGKILL after 2 s) and free. NULL is fine. */
void pgr_webapp_stop(pgr_webapp *a);

#endif
