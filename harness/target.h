/*
 * target.h — what serves a request: an interface, so that the client side (pool.c: sends,
 * the retry after a fault, reconnecting, the schema digest of a failed attempt) knows
 * nothing of it. The in-process C handler is the first implementation (target_inproc.c);
 * a spec's handler, a program through the wire, an HTTP endpoint are others.
 */
#ifndef PGRACE_TARGET_H
#define PGRACE_TARGET_H

#include "pgrace.h"

typedef struct pgr_target_ops {
    const char *name;                /* "in-process", ... */
    /* Serve one send of req on session s (its statements go through the seam); returns the
     * answer's status, also in resp->status. May normalise req (the validator copies raw
     * fields into text). */
    int (*serve)(void *ctx, pgr_session *s, pgr_request *req, pgr_response *resp);
} pgr_target_ops;

typedef struct pgr_target {
    const pgr_target_ops *ops;
    void *ctx;
} pgr_target;

/* The in-process target's context: the variant whose C handler serves. */
typedef struct pgr_inproc {
    const pgr_scenario *sc;
    const pgr_variant *v;
} pgr_inproc;

/* The in-process target of variant v of sc: the web framework's validation
 * (pgr_request_validate: a 4xx and no statement for a bad request), then v's handler, then
 * a rollback of any transaction it left open. Its context is *in (filled here), which must
 * live as long as the target is used. */
pgr_target pgr_target_inproc(pgr_inproc *in, const pgr_scenario *sc, const pgr_variant *v);

/* The program target (target_program.c): each request runs cmd once, its statements coming
 * through the proxy listener port_of(port_ctx, session index) under host (a socket
 * directory). See target_program.c for the environment and the answer protocol. */
typedef struct pgr_program {
    const char *name;                /* the variant (the client's name), for messages */
    const char *cmd;                 /* run by /bin/sh -c, KEY SESSION CASE appended */
    const char *host;                /* PGHOST: the proxy's socket directory */
    int (*port_of)(void *port_ctx, int session);
    int (*sync)(void *port_ctx, int session, double wait_s);   /* pgr_proxy_sync; NULL none */
    void *port_ctx;
    char dbname[128], user[128];
    const char *password;            /* the DSN's, passed as PGPASSWORD (never printed); NULL none */
    char schema[64];
    pgr_isolation iso;
    double timeout_s;                /* the program must exit within this (0: 30 s) */
    volatile int *interrupted;
} pgr_program;

pgr_target pgr_target_program(pgr_program *p);

/* The HTTP target (target_http.c): each request is an HTTP/1.1 request, from the variant's
 * template, to the session's own application instance (webapp.c), over a keep-alive
 * connection; the application's statements come through the session's proxy listener. */
struct pgr_webapp;
typedef struct pgr_http_target pgr_http_target;
typedef struct pgr_http_target_opts {
    const pgr_variant *v;            /* v->http: the requests and the id's path */
    struct pgr_webapp *app;          /* one instance per session, started */
    int nsessions;
    bool last_byte;                  /* stress: write every session's request but its last byte,
                                      * then every last byte together (one thread, one loop) */
    int (*sync)(void *port_ctx, int session, double wait_s);   /* pgr_proxy_sync; NULL none */
    void *port_ctx;
    double timeout_s;                /* an answer must come within this (0: 30 s) */
    volatile int *interrupted;
} pgr_http_target_opts;

pgr_http_target *pgr_http_target_new(const pgr_http_target_opts *o);
pgr_target pgr_target_http(pgr_http_target *h);
void pgr_http_target_free(pgr_http_target *h);   /* closes its connections (not the app) */

#endif
