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

#endif
