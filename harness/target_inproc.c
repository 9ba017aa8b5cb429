/* target_inproc.c — the in-process target: the framework's validation, then the C handler. */
#include "target.h"

static int serve_inproc(void *ctx, pgr_session *s, pgr_request *req, pgr_response *resp)
{
    const pgr_inproc *in = ctx;
    /* The framework's body parsing and schema validation: a 4xx, and the handler never runs. */
    int status = pgr_request_validate(in->sc, req, NULL, 0);
    if (status == 0) status = in->v->handler(s, req, resp);
    pgr_rollback(s);   /* a handler that leaves a transaction open is a handler bug */
    resp->status = status;
    return status;
}

static const pgr_target_ops inproc_ops = { "in-process", serve_inproc };

pgr_target pgr_target_inproc(pgr_inproc *in, const pgr_scenario *sc, const pgr_variant *v)
{
    *in = (pgr_inproc){ sc, v };
    return (pgr_target){ &inproc_ops, in };
}
