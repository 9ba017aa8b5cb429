/*
 * proxy.c — pgr_proxy (proxy.h): listeners, one thread per proxied connection, the
 * startup and authentication relay, cancel requests, and the idle loop between steps.
 * The steps themselves are the wire executor's (exec_wire.c).
 *
 * A connection's life:
 *   startup   read the client's startup packet (SSLRequest and GSSENCRequest are answered
 *             'N', the client goes on in the clear; a CancelRequest is mapped to the real
 *             backend and sent on); connect to the server and forward the packet as it is;
 *   auth      relay both ways, message by message, until ReadyForQuery: the server asks,
 *             the client answers (password, MD5, SCRAM-SHA-256 alike), pgrace only reads
 *             the types. BackendKeyData gives the backend's pid; the client is told the
 *             same pid with a key of the proxy's own, so its CancelRequest comes here;
 *   steps     the client's messages are assembled into batches (wire.c): a Query, or
 *             extended messages up to their Sync, is one step (pgr_wire_exec). Between
 *             steps, what the server sends on its own (NOTIFY, NOTICE, ParameterStatus)
 *             is relayed as it comes;
 *   end       Terminate, either side closing, a protocol violation (the client gets a
 *             FATAL ErrorResponse first), a fault, or the proxy stopping: both sockets
 *             are closed by the thread, which is then joined; no server connection
 *             outlives its client.
 * The server's connections are unix or TCP as the DSN says; the clients', both.
 */
#include "proxy_link.h"
#include "conn.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <arpa/inet.h>

typedef struct listener {
    int unix_fd, tcp_fd;
    int port;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    pgr_session *s;                  /* bound session; NULL: each connection its own */
    pthread_mutex_t step_mu;         /* one step at a time on the bound session */
} listener;

typedef struct conn_node {
    pgr_wire_link link;
    pthread_t th;
    bool done;                       /* [px->mu] the thread has finished: join it */
    struct conn_node *next;
} conn_node;

struct pgr_proxy {
    pgr_proxy_opts o;
    char dsn[2048];
    char dir[PATH_MAX];
    bool made_dir;
    struct sockaddr_storage srv;     /* the server's address */
    socklen_t srv_len;
    listener lis[PGR_PROXY_MAX_LISTENERS];
    int nlis;
    int stop_fd;                     /* eventfd: readable once stopping */
    pthread_mutex_t mu;              /* conns, nopen, serial, error */
    conn_node *conns;
    int nopen, serial;
    char error[PGR_ERRLEN];
    pthread_mutex_t admin_mu;
    PGconn *admin;                   /* for kill-backend */
    pthread_t run_th;
    bool running_in_thread;
    _Atomic long long n_conn, n_steps, n_refused;
    _Atomic int run_rc;
};

/* ---- I/O ---- */

long pgr_link_recv(int fd, pgr_wire_buf *b)
{
    if (b->off == b->len) {
        b->off = b->len = 0;
        if (b->cap > (1u << 20)) {           /* a big message came and went: give it back */
            free(b->p);
            b->p = NULL;
            b->cap = 0;
        }
    } else if (b->off > 0 && b->cap - b->len < 16384) {
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->cap - b->len < 16384) {
        size_t ncap = b->cap ? b->cap * 2 : 65536;
        uint8_t *np = realloc(b->p, ncap);
        if (!np) { errno = ENOMEM; return -1; }
        b->p = np;
        b->cap = ncap;
    }
    ssize_t n = recv(fd, b->p + b->len, b->cap - b->len, 0);
    if (n > 0) b->len += (size_t)n;
    return (long)n;
}

void pgr_link_consume(pgr_wire_buf *b, size_t n)
{
    b->off += n;
    if (b->off >= b->len) b->off = b->len = 0;
}

int pgr_link_send(pgr_wire_link *l, int fd, const void *p, size_t n)
{
    const uint8_t *q = p;
    while (n > 0 && fd >= 0) {
        ssize_t w = send(fd, q, n, MSG_NOSIGNAL);
        if (w > 0) { q += w; n -= (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -1;
        struct pollfd pf[2] = { { .fd = fd, .events = POLLOUT }, { .fd = l->stop_fd, .events = POLLIN } };
        if (poll(pf, 2, 1000) < 0 && errno != EINTR) return -1;
        if (pf[1].revents) return -1;
        if (pf[0].revents & (POLLERR | POLLHUP | POLLNVAL)) return -1;
    }
    return fd >= 0 ? 0 : -1;
}

void pgr_link_fatal(pgr_wire_link *l, const char *sqlstate, const char *message)
{
    uint8_t buf[600];
    char m[500];
    snprintf(m, sizeof m, "pgrace proxy: %s", message);
    size_t n = pgr_wire_error_build(buf, sizeof buf, "FATAL", sqlstate, m);
    if (l->cfd >= 0 && n) pgr_link_send(l, l->cfd, buf, n);
    atomic_fetch_add(&l->px->n_refused, 1);
}

/* ---- the server ---- */

/* Where the DSN's server is (the first host and port of a list). 0, or -1 with err. */
static int server_address(pgr_proxy *px, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(px->dsn, &perr);
    if (!opts) {
        char shown[300];
        pgr_dsn_redact(px->dsn, perr ? perr : "out of memory", shown, sizeof shown);
        snprintf(err, errlen, "bad DSN: %s", shown);
        PQfreemem(perr);
        return -1;
    }
    char host[PATH_MAX] = "", hostaddr[256] = "", port[16] = "5432";
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !*o->val) continue;
        size_t k = strcspn(o->val, ",");     /* the first of a list */
        if (strcmp(o->keyword, "host") == 0) snprintf(host, sizeof host, "%.*s", (int)k, o->val);
        else if (strcmp(o->keyword, "hostaddr") == 0) snprintf(hostaddr, sizeof hostaddr, "%.*s", (int)k, o->val);
        else if (strcmp(o->keyword, "port") == 0 && k) snprintf(port, sizeof port, "%.*s", (int)(k < 15 ? k : 15), o->val);
    }
    PQconninfoFree(opts);
    if (!hostaddr[0] && (!host[0] || host[0] == '/')) {
        struct sockaddr_un *un = (struct sockaddr_un *)&px->srv;
        memset(un, 0, sizeof *un);
        un->sun_family = AF_UNIX;
        int w = snprintf(un->sun_path, sizeof un->sun_path, "%s/.s.PGSQL.%s", host[0] ? host : "/var/run/postgresql", port);
        if (w < 0 || (size_t)w >= sizeof un->sun_path) {
            snprintf(err, errlen, "the server's socket path is too long (%s)", host);
            return -1;
        }
        px->srv_len = sizeof *un;
        return 0;
    }
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *ai = NULL;
    if (hostaddr[0]) hints.ai_flags = AI_NUMERICHOST;
    int rc = getaddrinfo(hostaddr[0] ? hostaddr : host, port, &hints, &ai);
    if (rc != 0 || !ai) {
        snprintf(err, errlen, "cannot resolve the server's host '%s': %s", hostaddr[0] ? hostaddr : host, gai_strerror(rc));
        return -1;
    }
    memcpy(&px->srv, ai->ai_addr, ai->ai_addrlen);
    px->srv_len = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

/* A new connection to the server, non-blocking once connected. -1 with err. */
static int connect_server(pgr_proxy *px, char *err, size_t errlen)
{
    int fd = socket(px->srv.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) { snprintf(err, errlen, "socket: %s", strerror(errno)); return -1; }
    if (connect(fd, (struct sockaddr *)&px->srv, px->srv_len) != 0) {
        snprintf(err, errlen, "cannot connect to the server: %s", strerror(errno));
        close(fd);
        return -1;
    }
    if (px->srv.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* The proxy fails: a harness error (the server gone); everything stops. */
static void proxy_fail(pgr_proxy *px, const char *msg)
{
    pthread_mutex_lock(&px->mu);
    if (!px->error[0]) snprintf(px->error, sizeof px->error, "%s", msg);
    pthread_mutex_unlock(&px->mu);
    pgr_proxy_stop(px);
}

bool pgr_proxy_server_alive(pgr_proxy *px, const char *what)
{
    if (PQping(px->dsn) == PQPING_OK) return true;
    char m[PGR_ERRLEN];
    snprintf(m, sizeof m, "the server is gone (%s)", what);
    proxy_fail(px, m);
    return false;
}

void pgr_proxy_cancel_backend(pgr_proxy *px, int32_t pid, uint32_t key)
{
    char err[200];
    int fd = connect_server(px, err, sizeof err);
    if (fd < 0) return;
    uint8_t pkt[16];
    pgr_wire_cancel_build(pkt, sizeof pkt, pid, key);
    if (send(fd, pkt, sizeof pkt, MSG_NOSIGNAL) == (ssize_t)sizeof pkt) {
        struct pollfd p = { .fd = fd, .events = POLLIN };   /* the server closes when done */
        if (poll(&p, 1, 2000) > 0) {
            char b[64];
            while (recv(fd, b, sizeof b, 0) > 0) {}
        }
    }
    close(fd);
}

int pgr_proxy_kill_backend(pgr_proxy *px, int32_t pid, char *err, size_t errlen)
{
    char spid[16];
    snprintf(spid, sizeof spid, "%d", (int)pid);
    const char *params[1] = { spid };
    int rc = -1;
    pthread_mutex_lock(&px->admin_mu);
    for (int attempt = 0; attempt < 2 && rc != 0; attempt++) {
        if (px->admin && PQstatus(px->admin) != CONNECTION_OK) { PQfinish(px->admin); px->admin = NULL; }
        if (!px->admin && !(px->admin = pgr_connect(px->dsn, err, errlen))) break;
        PGresult *r = PQexecParams(px->admin, "SELECT pg_terminate_backend($1::int, 5000)", 1, NULL, params, NULL, NULL, 0);
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
            if (PQgetvalue(r, 0, 0)[0] == 't') rc = 0;
            else snprintf(err, errlen, "backend %d did not end within 5 s", (int)pid);
            PQclear(r);
            break;
        }
        snprintf(err, errlen, "pg_terminate_backend: %s", PQerrorMessage(px->admin));
        err[strcspn(err, "\n")] = '\0';
        PQclear(r);
    }
    pthread_mutex_unlock(&px->admin_mu);
    return rc;
}

/* ---- the seam's session around a step ---- */

static uint64_t rnd(uint64_t *x)
{
    uint64_t v = pgr_splitmix64(*x);
    *x += 0x9E3779B97F4A7C15ULL;
    return v;
}

int pgr_proxy_step_begin(pgr_proxy *px, pgr_wire_link *l)
{
    pgr_session *s = l->s;
    if (!l->own_session) {
        /* A session runs one statement at a time. Two connections of one session can wait on
         * each other (one holds a row lock the other's statement waits for, and its next
         * statement waits here): after a while this one gives up, so nothing hangs. */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += PGR_PROXY_SESSION_WAIT_S;
        if (pthread_mutex_timedlock(&px->lis[l->listener].step_mu, &until) != 0) {
            snprintf(l->why, sizeof l->why, "session S%d was busy with another connection's statement for %d s "
                     "(a session runs one statement at a time)", s->index + 1, PGR_PROXY_SESSION_WAIT_S);
            return -1;
        }
    }
    __atomic_store_n(&s->backend_pid, (int)l->pid, __ATOMIC_RELEASE);
    s->in_tx = l->tx_status == 'T' || l->tx_status == 'E';
    s->conn_lost = false;            /* a connection that reaches a step is alive */
    if (!s->trace && s->nsteps > 1000000) {              /* nobody keeps them: only "not the first" matters */
        s->nsteps = 2;
        s->send_first_step = 0;
    }
    if (l->own_session) s->send_first_step = 0;
    else if (l->fresh) s->send_first_step = s->nsteps;   /* kill-backend waits for a connection's second step */
    l->fresh = false;
    if (px->o.fault && px->o.fault->kind != PGR_FAULT_NONE) {
        double u = (double)(rnd(&l->rng) >> 11) / 9007199254740992.0;
        s->fault = px->o.fault;
        s->fault_fired_at = -1;
        s->fault_site = u < px->o.fault->rate ? s->fault_sites : -1;   /* the next eligible step */
        s->fault_applies = rnd(&l->rng) & 1;
    }
    return 0;
}

int pgr_proxy_sync(pgr_proxy *px, int li, double wait_s)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)(wait_s * 1e9);
    while (until.tv_nsec >= 1000000000L) { until.tv_nsec -= 1000000000L; until.tv_sec++; }
    if (pthread_mutex_timedlock(&px->lis[li].step_mu, &until) != 0) return -1;
    pthread_mutex_unlock(&px->lis[li].step_mu);
    return 0;
}

void pgr_proxy_step_end(pgr_proxy *px, pgr_wire_link *l, const pgr_step *st)
{
    atomic_fetch_add(&px->n_steps, 1);
    if (px->o.trace) {
        char tail[160] = "";
        if (st->message[0]) snprintf(tail, sizeof tail, ": %s%s%s%s", st->message, st->constraint[0] ? " (constraint " : "",
                                     st->constraint, st->constraint[0] ? ")" : "");
        fprintf(px->o.trace, "S%-3d %-36s %s rows=%-6ld %8.3f ms%s\n", l->s->index + 1, st->label, st->sqlstate, st->rows,
                (double)(st->t_done_ns - st->t_send_ns) / 1e6, tail);
        fflush(px->o.trace);
    }
    if (!l->own_session) pthread_mutex_unlock(&px->lis[l->listener].step_mu);
}

/* ---- one connection ---- */

/* Wait for the client (and the server when sfd >= 0) until the deadline (0 none).
 * Bit 1: the client is readable, bit 2: the server; 0 timed out; -1 stop. */
static int wait_io(pgr_wire_link *l, bool client, int64_t deadline)
{
    for (;;) {
        struct pollfd p[3];
        int n = 0, ci = -1, si = -1;
        p[n++] = (struct pollfd){ .fd = l->stop_fd, .events = POLLIN };
        if (client) { ci = n; p[n++] = (struct pollfd){ .fd = l->cfd, .events = POLLIN }; }
        if (l->sfd >= 0) { si = n; p[n++] = (struct pollfd){ .fd = l->sfd, .events = POLLIN }; }
        int ms = 1000;
        if (deadline) {
            int64_t left = (deadline - pgr_now_ns()) / 1000000;
            if (left <= 0) return 0;
            if (left < ms) ms = (int)left + 1;
        }
        int rc = poll(p, (nfds_t)n, ms);
        if (rc < 0 && errno != EINTR) return -1;
        if (p[0].revents) return -1;         /* stopping (the run loop saw the signal) */
        if (rc <= 0) continue;
        return (ci >= 0 && p[ci].revents ? 1 : 0) | (si >= 0 && p[si].revents ? 2 : 0);
    }
}

/* A CancelRequest from a client: the backend it names, if it is one of ours. */
static void relay_cancel(pgr_proxy *px, int32_t pid, uint32_t key)
{
    uint32_t real = 0;
    bool found = false;
    pthread_mutex_lock(&px->mu);
    for (conn_node *c = px->conns; c; c = c->next)
        if (c->link.sfd >= 0 && c->link.pid == pid && c->link.proxy_key == key) { real = c->link.key; found = true; }
    pthread_mutex_unlock(&px->mu);
    if (found) pgr_proxy_cancel_backend(px, pid, real);
}

/* The startup packet; the server connection made and the packet forwarded. 0 go on, 1 done
 * (a cancel request), -1 close. */
static int relay_startup(pgr_wire_link *l, int64_t deadline)
{
    pgr_proxy *px = l->px;
    for (int answered = 0;;) {
        pgr_wire_startup su;
        char err[200];
        long k = pgr_wire_startup_read(pgr_at(&l->cin, l->cin.off), l->cin.len - l->cin.off, &su, err, sizeof err);
        if (k < 0) { pgr_link_fatal(l, su.kind == PGR_STARTUP_V3 && strstr(err, "protocol") ? "0A000" : "08P01", err); return -1; }
        if (k == 0) {
            int w = wait_io(l, true, deadline);
            if (w == 0) { pgr_link_fatal(l, "08P01", "no startup packet within the startup timeout"); return -1; }
            if (w < 0) return -1;
            long got = pgr_link_recv(l->cfd, &l->cin);
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) return -1;
            continue;
        }
        if (su.kind == PGR_STARTUP_SSL || su.kind == PGR_STARTUP_GSSENC) {
            pgr_link_consume(&l->cin, (size_t)k);
            if (++answered > 3) { pgr_link_fatal(l, "08P01", "too many encryption requests"); return -1; }
            if (l->cin.len > l->cin.off) {       /* nothing may follow before our answer */
                pgr_link_fatal(l, "08P01", "data after an encryption request");
                return -1;
            }
            if (pgr_link_send(l, l->cfd, "N", 1) != 0) return -1;
            continue;
        }
        if (su.kind == PGR_STARTUP_CANCEL) {
            relay_cancel(px, su.pid, su.key);
            return 1;
        }
        l->sfd = connect_server(px, err, sizeof err);
        if (l->sfd < 0) {
            pgr_link_fatal(l, "08006", err);
            pgr_proxy_server_alive(px, err);
            return -1;
        }
        if (pgr_link_send(l, l->sfd, pgr_at(&l->cin, l->cin.off), (size_t)k) != 0) return -1;
        pgr_link_consume(&l->cin, (size_t)k);
        return 0;
    }
}

/* Authentication, relayed both ways until ReadyForQuery. 0 ready, -1 close. */
static int relay_auth(pgr_wire_link *l, int64_t deadline)
{
    pgr_proxy *px = l->px;
    bool error_seen = false;
    for (;;) {
        int w = wait_io(l, true, deadline);
        if (w == 0) { pgr_link_fatal(l, "08P01", "authentication did not finish within the startup timeout"); return -1; }
        if (w < 0) return -1;
        if (w & 2) {
            long got = pgr_link_recv(l->sfd, &l->sin);
            if (got < 0 && (errno == EAGAIN || errno == EINTR)) got = 1;
            bool eof = got <= 0;
            for (;;) {
                pgr_wire_msg m;
                char err[200];
                long k = pgr_wire_msg_read(pgr_at(&l->sin, l->sin.off), l->sin.len - l->sin.off, 65536, &m, err, sizeof err);
                if (k == 0) break;
                if (k < 0) { pgr_link_fatal(l, "08P01", "the server sent garbage during authentication"); return -1; }
                const uint8_t *raw = pgr_at(&l->sin, l->sin.off);
                int rc = 0;
                switch (m.type) {
                case 'K': {
                    int32_t pid;
                    uint32_t key;
                    if (pgr_wire_backend_key(&m, &pid, &key) == 0) {     /* 3.0: our own key for the client */
                        uint32_t mine = 0;
                        if (getrandom(&mine, sizeof mine, 0) != (ssize_t)sizeof mine) mine = (uint32_t)rnd(&l->rng);
                        pthread_mutex_lock(&px->mu);
                        l->pid = pid;
                        l->key = key;
                        l->proxy_key = mine;
                        pthread_mutex_unlock(&px->mu);
                        uint8_t kb[13];
                        size_t n = pgr_wire_backend_key_build(kb, sizeof kb, pid, mine);
                        if (pgr_link_send(l, l->cfd, kb, n) != 0) return -1;
                        pgr_link_consume(&l->sin, (size_t)k);
                        continue;
                    }
                    break;               /* a longer key (protocol 3.2): passed on as it is */
                }
                case 'E': error_seen = true; break;
                case 'Z': rc = 1; break;
                case 'R': case 'S': case 'N': case 'v': break;
                default:
                    pgr_link_fatal(l, "08P01", "the server sent an unexpected message during authentication");
                    return -1;
                }
                if (pgr_link_send(l, l->cfd, raw, (size_t)k) != 0) return -1;
                pgr_link_consume(&l->sin, (size_t)k);
                if (rc == 1) {
                    char status;
                    if (pgr_wire_ready_status(&m, &status) == 0) l->tx_status = status;
                    return 0;
                }
            }
            if (eof) {
                if (!error_seen) pgr_proxy_server_alive(px, "the server closed a connection during authentication");
                return -1;
            }
        }
        if (w & 1) {
            long got = pgr_link_recv(l->cfd, &l->cin);
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) return -1;
            for (;;) {
                pgr_wire_msg m;
                char err[200];
                long k = pgr_wire_msg_read(pgr_at(&l->cin, l->cin.off), l->cin.len - l->cin.off, 65536, &m, err, sizeof err);
                if (k == 0) break;
                if (k < 0) { pgr_link_fatal(l, "08P01", err); return -1; }
                if (m.type == 'X') return -1;
                if (m.type != 'p') {
                    snprintf(err, sizeof err, "expected an authentication response, got message type %d", (unsigned char)m.type);
                    pgr_link_fatal(l, "08P01", err);
                    return -1;
                }
                if (pgr_link_send(l, l->sfd, pgr_at(&l->cin, l->cin.off), (size_t)k) != 0) return -1;
                pgr_link_consume(&l->cin, (size_t)k);
            }
        }
    }
}

/* What the server sends between steps (NOTIFY, NOTICE, ParameterStatus, a FATAL before it
 * closes): checked and relayed. 0, or -1 to close. */
static int relay_idle(pgr_wire_link *l)
{
    long got = pgr_link_recv(l->sfd, &l->sin);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
    size_t start = l->sin.off, pos = start;
    for (;;) {
        pgr_wire_msg m;
        char err[200];
        long k = pgr_wire_msg_read(pgr_at(&l->sin, pos), l->sin.len - pos, PGR_WIRE_MAX_MSG, &m, err, sizeof err);
        if (k <= 0) break;
        pgr_step scratch;
        pgr_wire_outcome o;
        pgr_wire_outcome_init(&o, &scratch);
        if (pgr_wire_outcome_add(&o, &m) == PGR_BE_BAD) {
            snprintf(l->why, sizeof l->why, "an unexpected message (type '%c') from the server", m.type);
            return -1;
        }
        pos += (size_t)k;
    }
    if (pos > start && pgr_link_send(l, l->cfd, pgr_at(&l->sin, start), pos - start) != 0) return -1;
    pgr_link_consume(&l->sin, pos - start);
    if (got <= 0) {
        snprintf(l->why, sizeof l->why, "the server closed the connection");
        pgr_proxy_server_alive(l->px, "a server connection closed");
        return -1;
    }
    return 0;
}

/* Between steps: assemble the client's messages into steps, relay the server's own. */
static void serve_steps(pgr_wire_link *l, bool *clean)
{
    for (;;) {
        for (;;) {                           /* every complete message read so far */
            size_t at = l->cin.off + l->batch.bytes;
            pgr_wire_msg m;
            char err[200];
            long k = pgr_wire_msg_read(pgr_at(&l->cin, at), l->cin.len - at, PGR_WIRE_MAX_MSG, &m, err, sizeof err);
            if (k == 0) break;
            if (k < 0) { pgr_link_fatal(l, "08P01", err); return; }
            switch (pgr_wire_batch_add(&l->batch, &m, err, sizeof err)) {
            case PGR_FE_MORE:
                break;
            case PGR_FE_DROP:
                if (l->batch.nmsgs == 0) {   /* alone: the server would ignore it */
                    pgr_link_consume(&l->cin, l->batch.bytes);
                    pgr_wire_batch_reset(&l->batch);
                }
                break;
            case PGR_FE_STEP:
            case PGR_FE_FLUSH:
                if (pgr_wire_exec(l) != 0) return;
                break;
            case PGR_FE_TERMINATE:
                *clean = true;
                return;
            case PGR_FE_BAD:
                pgr_link_fatal(l, "08P01", err);
                return;
            }
        }
        int w = wait_io(l, true, 0);
        if (w < 0) return;
        if ((w & 2) && relay_idle(l) != 0) return;
        if (w & 1) {
            long got = pgr_link_recv(l->cfd, &l->cin);
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                *clean = l->batch.bytes == 0;    /* between messages: end the backend cleanly */
                return;
            }
        }
    }
}

static void close_link(pgr_wire_link *l, bool terminate)
{
    pgr_proxy *px = l->px;
    if (terminate && l->sfd >= 0) {
        static const uint8_t x[5] = { 'X', 0, 0, 0, 4 };
        if (send(l->sfd, x, sizeof x, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) { /* it is closing anyway */ }
    }
    pthread_mutex_lock(&px->mu);
    if (l->sfd >= 0) close(l->sfd);
    if (l->cfd >= 0) close(l->cfd);
    l->sfd = l->cfd = -1;
    pthread_mutex_unlock(&px->mu);
}

static void *conn_main(void *arg)
{
    conn_node *c = arg;
    pgr_wire_link *l = &c->link;
    pgr_proxy *px = l->px;
    double t = px->o.startup_timeout_s > 0 ? px->o.startup_timeout_s : 60;
    int64_t deadline = pgr_now_ns() + (int64_t)(t * 1e9);
    bool clean = false;
    int rc = relay_startup(l, deadline);
    if (rc == 0 && relay_auth(l, deadline) == 0) serve_steps(l, &clean);
    if (px->o.trace && l->why[0] && l->s) {          /* said before the client sees the close */
        fprintf(px->o.trace, "S%-3d connection %d closed: %s\n", l->s->index + 1, l->serial, l->why);
        fflush(px->o.trace);
    }
    close_link(l, clean);
    free(l->cin.p);
    free(l->sin.p);
    pgr_wire_batch_free(&l->batch);
    if (l->own_session) {
        pgr_stmt_cache_free(l->s);
        free(l->s);
    }
    if (l->idle) {
        pgr_stmt_cache_free(l->idle);
        free(l->idle);
    }
    l->s = NULL;
    pthread_mutex_lock(&px->mu);
    px->nopen--;
    c->done = true;
    pthread_mutex_unlock(&px->mu);
    return NULL;
}

/* Join and free the connections whose threads have finished (all of them when all). */
static void reap(pgr_proxy *px, bool all)
{
    for (;;) {
        conn_node *done = NULL;
        pthread_mutex_lock(&px->mu);
        for (conn_node **pp = &px->conns; *pp; pp = &(*pp)->next)
            if ((*pp)->done || all) {
                done = *pp;
                *pp = done->next;
                break;
            }
        pthread_mutex_unlock(&px->mu);
        if (!done) return;
        pthread_join(done->th, NULL);
        free(done);
    }
}

static void accept_one(pgr_proxy *px, int fd, int li, bool tcp)
{
    int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0) return;
    atomic_fetch_add(&px->n_conn, 1);
    if (tcp) {
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    int max = px->o.max_connections > 0 ? px->o.max_connections : 256;
    conn_node *c = NULL;
    pgr_session *own = NULL;
    pthread_mutex_lock(&px->mu);
    bool full = px->nopen >= max;
    int serial = ++px->serial;
    pthread_mutex_unlock(&px->mu);
    if (!full) {
        c = calloc(1, sizeof *c);
        if (c && !px->lis[li].s) own = calloc(1, sizeof *own);
    }
    if (full || !c || (!px->lis[li].s && !own)) {
        pgr_wire_link tmp = { .px = px, .cfd = cfd, .sfd = -1, .stop_fd = px->stop_fd };
        pgr_link_fatal(&tmp, "53300", full ? "sorry, too many clients already" : "out of memory");
        close(cfd);
        free(c);
        free(own);
        return;
    }
    pgr_wire_link *l = &c->link;
    *l = (pgr_wire_link){ .px = px, .cfd = cfd, .sfd = -1, .stop_fd = px->stop_fd, .serial = serial, .listener = li, .fresh = true,
                          .rng = px->o.seed ^ ((uint64_t)serial * 0x9E3779B97F4A7C15ULL), .tx_status = 'I' };
    if (own) {
        own->index = serial - 1;
        own->interrupted = NULL;             /* a signal reaches the run loop, which stops every link */
        own->fault = px->o.fault && px->o.fault->kind != PGR_FAULT_NONE ? px->o.fault : NULL;
        own->fault_site = own->fault_fired_at = -1;
        own->step_timeout_ns = (int64_t)(px->o.step_timeout_s * 1e9);
        l->s = own;
        l->own_session = true;
    } else {
        l->s = px->lis[li].s;
    }
    sigset_t block, old;
    sigfillset(&block);
    pthread_sigmask(SIG_BLOCK, &block, &old);            /* signals are the main thread's */
    pthread_mutex_lock(&px->mu);
    int rc = pthread_create(&c->th, NULL, conn_main, c);
    if (rc == 0) {
        c->next = px->conns;
        px->conns = c;
        px->nopen++;
    }
    pthread_mutex_unlock(&px->mu);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pgr_link_fatal(l, "53300", "cannot start a thread for this connection");
        close(cfd);
        if (own) free(own);
        free(c);
    }
}

/* ---- listeners ---- */

static int listen_tcp(listener *L, int port, char *err, size_t errlen)
{
    L->tcp_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (L->tcp_fd < 0) { snprintf(err, errlen, "socket: %s", strerror(errno)); return -1; }
    int one = 1;
    setsockopt(L->tcp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(L->tcp_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(L->tcp_fd, 128) != 0) {
        snprintf(err, errlen, "cannot listen on 127.0.0.1:%d: %s", port, strerror(errno));
        return -1;
    }
    socklen_t al = sizeof a;
    getsockname(L->tcp_fd, (struct sockaddr *)&a, &al);
    L->port = ntohs(a.sin_port);
    return 0;
}

static int listen_unix(pgr_proxy *px, listener *L, char *err, size_t errlen)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    int w = snprintf(a.sun_path, sizeof a.sun_path, "%s/.s.PGSQL.%d", px->dir, L->port);
    if (w < 0 || (size_t)w >= sizeof a.sun_path) {
        snprintf(err, errlen, "the socket directory's path is too long for a unix socket (%s)", px->dir);
        return -1;
    }
    struct stat st;
    if (lstat(a.sun_path, &st) == 0) {       /* left by a run that is gone? not if it answers */
        int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        bool live = probe >= 0 && S_ISSOCK(st.st_mode) && connect(probe, (struct sockaddr *)&a, sizeof a) == 0;
        if (probe >= 0) close(probe);
        if (live || !S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s is in use", a.sun_path);
            return -1;
        }
        unlink(a.sun_path);
    }
    L->unix_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (L->unix_fd < 0 || bind(L->unix_fd, (struct sockaddr *)&a, sizeof a) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", a.sun_path, strerror(errno));
        return -1;
    }
    snprintf(L->path, sizeof L->path, "%s", a.sun_path);
    bool shared = px->o.client_uid != 0 && px->o.client_uid != geteuid();
    if (chmod(a.sun_path, shared ? 0777 : 0700) != 0 || listen(L->unix_fd, 128) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", a.sun_path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The socket directory: made now (0700, or 0755 for a client of another user), or one of
 * ours that nobody else may write. */
static int socket_dir(pgr_proxy *px, char *err, size_t errlen)
{
    bool shared = px->o.client_uid != 0 && px->o.client_uid != geteuid();
    mode_t mode = shared ? 0755 : 0700;
    if (!px->o.socket_dir) {
        const char *tmp = getenv("TMPDIR");
        if (!tmp || !*tmp) tmp = "/tmp";
        snprintf(px->dir, sizeof px->dir, "%s/pgrace-proxy.XXXXXX", tmp);
        if (!mkdtemp(px->dir)) {
            snprintf(err, errlen, "cannot create a socket directory in %s: %s", tmp, strerror(errno));
            px->dir[0] = '\0';
            return -1;
        }
        px->made_dir = true;
    } else {
        snprintf(px->dir, sizeof px->dir, "%s", px->o.socket_dir);
        if (mkdir(px->dir, mode) == 0) {
            px->made_dir = true;
        } else if (errno != EEXIST) {
            snprintf(err, errlen, "cannot create the socket directory %s: %s", px->dir, strerror(errno));
            return -1;
        }
    }
    struct stat st;
    if (lstat(px->dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "the socket directory %s is not a directory", px->dir);
        return -1;
    }
    if (st.st_uid != geteuid() || (st.st_mode & 022)) {
        snprintf(err, errlen, "the socket directory %s is %s: refused", px->dir,
                 st.st_uid != geteuid() ? "someone else's" : "writable by others");
        return -1;
    }
    if (px->made_dir && chmod(px->dir, mode) != 0) {
        snprintf(err, errlen, "chmod %s: %s", px->dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- life ---- */

pgr_proxy *pgr_proxy_open(const pgr_proxy_opts *o, char *err, size_t errlen)
{
    pgr_proxy *px = calloc(1, sizeof *px);
    if (!px) { snprintf(err, errlen, "out of memory"); return NULL; }
    px->o = *o;
    px->stop_fd = -1;
    pthread_mutex_init(&px->mu, NULL);
    pthread_mutex_init(&px->admin_mu, NULL);
    for (int i = 0; i < PGR_PROXY_MAX_LISTENERS; i++) {
        px->lis[i].unix_fd = px->lis[i].tcp_fd = -1;
        pthread_mutex_init(&px->lis[i].step_mu, NULL);
    }
    snprintf(px->dsn, sizeof px->dsn, "%s", o->dsn ? o->dsn : "");
    px->nlis = o->nsessions > 0 ? o->nsessions : 1;
    if (px->nlis > PGR_PROXY_MAX_LISTENERS) {
        snprintf(err, errlen, "at most %d listeners", PGR_PROXY_MAX_LISTENERS);
        goto fail;
    }
    if (o->port && o->port + px->nlis - 1 > 65535) {
        snprintf(err, errlen, "ports %d..%d do not exist", o->port, o->port + px->nlis - 1);
        goto fail;
    }
    px->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (px->stop_fd < 0) { snprintf(err, errlen, "eventfd: %s", strerror(errno)); goto fail; }
    if (server_address(px, err, errlen) != 0 || socket_dir(px, err, errlen) != 0) goto fail;
    for (int i = 0; i < px->nlis; i++) {
        listener *L = &px->lis[i];
        L->s = o->nsessions > 0 ? o->sessions[i] : NULL;
        if (listen_tcp(L, o->port ? o->port + i : 0, err, errlen) != 0 || listen_unix(px, L, err, errlen) != 0) goto fail;
    }
    return px;
fail:
    pgr_proxy_close(px);
    return NULL;
}

const char *pgr_proxy_socket_dir(const pgr_proxy *px) { return px->dir; }
int pgr_proxy_port(const pgr_proxy *px, int i) { return i >= 0 && i < px->nlis ? px->lis[i].port : -1; }

void pgr_proxy_stop(pgr_proxy *px)
{
    uint64_t one = 1;
    if (px->stop_fd >= 0 && write(px->stop_fd, &one, sizeof one) < 0) { /* already readable */ }
}

const char *pgr_proxy_error(pgr_proxy *px)
{
    pthread_mutex_lock(&px->mu);
    const char *e = px->error[0] ? px->error : NULL;
    pthread_mutex_unlock(&px->mu);
    return e;
}

int pgr_proxy_run(pgr_proxy *px, char *err, size_t errlen)
{
    for (;;) {
        struct pollfd p[1 + 2 * PGR_PROXY_MAX_LISTENERS];
        int n = 0;
        p[n++] = (struct pollfd){ .fd = px->stop_fd, .events = POLLIN };
        for (int i = 0; i < px->nlis; i++) {
            p[n++] = (struct pollfd){ .fd = px->lis[i].unix_fd, .events = POLLIN };
            p[n++] = (struct pollfd){ .fd = px->lis[i].tcp_fd, .events = POLLIN };
        }
        int rc = poll(p, (nfds_t)n, 200);
        if (p[0].revents || (px->o.interrupted && *px->o.interrupted)) break;
        if (rc > 0)
            for (int i = 0; i < px->nlis; i++) {
                if (p[1 + 2 * i].revents) accept_one(px, px->lis[i].unix_fd, i, false);
                if (p[2 + 2 * i].revents) accept_one(px, px->lis[i].tcp_fd, i, true);
            }
        reap(px, false);
    }
    pgr_proxy_stop(px);                      /* every connection too */
    const char *e = pgr_proxy_error(px);
    if (e) {
        snprintf(err, errlen, "%s", e);
        return -1;
    }
    return 0;
}

static void *run_main(void *arg)
{
    pgr_proxy *px = arg;
    char err[PGR_ERRLEN];
    atomic_store(&px->run_rc, pgr_proxy_run(px, err, sizeof err));
    return NULL;
}

int pgr_proxy_start(pgr_proxy *px)
{
    sigset_t block, old;
    sigfillset(&block);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = pthread_create(&px->run_th, NULL, run_main, px);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) return -1;
    px->running_in_thread = true;
    return 0;
}

void pgr_proxy_close(pgr_proxy *px)
{
    if (!px) return;
    pgr_proxy_stop(px);
    if (px->running_in_thread) pthread_join(px->run_th, NULL);
    for (int i = 0; i < px->nlis; i++) {
        listener *L = &px->lis[i];
        if (L->tcp_fd >= 0) close(L->tcp_fd);
        if (L->unix_fd >= 0) close(L->unix_fd);
        if (L->path[0]) unlink(L->path);
    }
    reap(px, true);                          /* every thread sees the stop and closes both sides */
    if (px->made_dir) rmdir(px->dir);
    if (px->admin) PQfinish(px->admin);
    if (px->stop_fd >= 0) close(px->stop_fd);
    for (int i = 0; i < PGR_PROXY_MAX_LISTENERS; i++) pthread_mutex_destroy(&px->lis[i].step_mu);
    pthread_mutex_destroy(&px->mu);
    pthread_mutex_destroy(&px->admin_mu);
    free(px);
}

void pgr_proxy_get_stats(pgr_proxy *px, pgr_proxy_stats *out)
{
    pthread_mutex_lock(&px->mu);
    out->open = px->nopen;
    pthread_mutex_unlock(&px->mu);
    out->connections = atomic_load(&px->n_conn);
    out->steps = atomic_load(&px->n_steps);
    out->refused = atomic_load(&px->n_refused);
}
