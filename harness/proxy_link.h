/*
 * proxy_link.h — one proxied connection as the proxy (proxy.c) and the wire executor
 * (exec_wire.c) share it: the client's and the server's sockets, what has been read from
 * each and not yet handled, the batch being assembled, and the session its steps go
 * through. Internal to those two files.
 */
#ifndef PGRACE_PROXY_LINK_H
#define PGRACE_PROXY_LINK_H

#include "proxy.h"
#include "seam.h"
#include "wire.h"

/* Bytes read and not yet handled: p[off, len). */
typedef struct pgr_wire_buf {
    uint8_t *p;
    size_t off, len, cap;
} pgr_wire_buf;

typedef struct pgr_wire_link {
    struct pgr_proxy *px;
    int cfd, sfd;                /* client, server (non-blocking); -1 closed */
    int stop_fd;                 /* the proxy's: readable once it stops */
    pgr_wire_buf cin, sin;       /* [link] read from the client / the server, not yet handled */
    pgr_wire_batch batch;        /* [link] the client's messages of the step being assembled */
    int32_t pid;                 /* [link] the backend's pid and cancel key (BackendKeyData) */
    uint32_t key;
    uint32_t proxy_key;          /* [link] the key the client was given instead */
    int serial;                  /* [link] 1, 2, ... in the order the proxy accepted them */
    int listener;                /* [link] the listener it came through */
    pgr_session *s;              /* [link] the session its steps go through */
    bool own_session;            /* [link] s is this connection's own (pass-through) */
    pgr_session *idle;           /* [link] the session of statements sent while its bound session
                                  * serves no request (outside_request): pass-through; NULL none yet */
    bool fresh;                  /* [link] no step yet */
    uint64_t rng;                /* [link] pass-through faults: which steps get one */
    char tx_status;              /* [exec] the last ReadyForQuery's status: 'I', 'T', 'E' */
    bool client_eof;             /* [exec] the client closed its side */
    char why[160];               /* [exec, link] why the connection closed */
} pgr_wire_link;

/* b's byte at offset o (a buffer never read into has no bytes yet, and no pointer). */
static inline const uint8_t *pgr_at(const pgr_wire_buf *b, size_t o)
{
    return b->p ? b->p + o : (const uint8_t *)"";
}

/* ---- I/O (proxy.c) ---- */

/* Read what fd has into b (non-blocking). >0 bytes read, 0 end of stream, -1 error
 * (errno; EAGAIN: nothing yet). */
long pgr_link_recv(int fd, pgr_wire_buf *b);
/* Write all n bytes to fd, waiting (poll) while it is full; gives up when the proxy stops.
 * 0, or -1. */
int pgr_link_send(pgr_wire_link *l, int fd, const void *p, size_t n);
/* Drop the first n unhandled bytes of b. */
void pgr_link_consume(pgr_wire_buf *b, size_t n);
/* Tell the client why (an ErrorResponse with severity FATAL), as far as it listens. */
void pgr_link_fatal(pgr_wire_link *l, const char *sqlstate, const char *message);

/* ---- what the proxy does around a step (proxy.c) ---- */

/* Before the seam: bind the session to this connection (its backend pid, one step at a
 * time), arm a pass-through fault. -1 (why in l->why) when the session stayed busy with
 * another connection's step past the limit: the connection is to be closed. */
int pgr_proxy_step_begin(struct pgr_proxy *px, pgr_wire_link *l);
/* After the seam: trace the step, let the session's next step in. */
void pgr_proxy_step_end(struct pgr_proxy *px, pgr_wire_link *l, const pgr_step *st);
/* pg_terminate_backend(pid) over the proxy's admin connection (waiting until it is gone).
 * 0, or -1 with err. */
int pgr_proxy_kill_backend(struct pgr_proxy *px, int32_t pid, char *err, size_t errlen);
/* Send the server a CancelRequest for the backend (pid, key). */
void pgr_proxy_cancel_backend(struct pgr_proxy *px, int32_t pid, uint32_t key);
/* Lost a server connection: is the server itself still there? When it is not, the proxy
 * fails (a harness error, never a race) and false is returned. */
bool pgr_proxy_server_alive(struct pgr_proxy *px, const char *what);

/* ---- the wire executor (exec_wire.c) ---- */

/* Run the step l->batch holds (its kind says how it ended: 'Q', 'S', 'F', or 'H' for one
 * the client flushed) through the seam: begin, what begin decided, end. The batch's bytes
 * are the first unhandled bytes of l->cin. 0 the connection goes on; -1 it is to be
 * closed (a fault took it, a side went away: l->why). */
int pgr_wire_exec(pgr_wire_link *l);

#endif
