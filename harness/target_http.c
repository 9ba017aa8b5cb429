/*
 * target_http.c — the HTTP target: a request is an HTTP/1.1 request to the session's own
 * instance of the application (webapp.c), built from the variant's template (http.c); the
 * application's statements reach the server through the session's proxy listener, so each is
 * a step through the seam like a C handler's.
 *
 * Last-byte sync (stress): every session writes its request but the final byte and waits;
 * the last to arrive writes every session's final byte in one loop, so the requests complete
 * within microseconds of each other (the single-packet attack's idea, on loopback). The
 * spread of those writes is the send side (http_sent_ns); the first statement's arrival at
 * the proxy is the arrival side (first_send_ns, stress's release skew).
 *
 * The answer's status is the request's status; its id is read from the JSON body at the
 * variant's `id` path. An instance that exits, closes the connection without an answer,
 * answers garbage, does not answer within the step timeout, or answers other than 4xx
 * without one statement through its listener is a harness error (exit 2), never an answer.
 */
#include "http.h"
#include "target.h"
#include "webapp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct pgr_http_target {
    pgr_http_target_opts o;
    const pgr_http_variant *hv;
    int fd[PGR_MAX_SESSIONS];        /* keep-alive connection to instance i; -1 none */
    char *in[PGR_MAX_SESSIONS];      /* bytes read past the last answer (none: HTTP/1.1 without pipelining) */
    /* last-byte sync */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int arrived;                     /* sessions waiting with their final byte unwritten */
    unsigned gen;                    /* +1 each time the final bytes are written */
    bool pending[PGR_MAX_SESSIONS];
    char last[PGR_MAX_SESSIONS];
    pgr_session *sess[PGR_MAX_SESSIONS];
};

static void harness_error(pgr_session *s, const pgr_http_target *h, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void harness_error(pgr_session *s, const pgr_http_target *h, const char *fmt, ...)
{
    char what[64];
    snprintf(what, sizeof what, "http variant '%s'", h->o.v->name);
    va_list ap;
    va_start(ap, fmt);
    pgr_target_error(s, what, fmt, ap);
    va_end(ap);
}

pgr_http_target *pgr_http_target_new(const pgr_http_target_opts *o)
{
    pgr_http_target *h = calloc(1, sizeof *h);
    if (!h) return NULL;
    h->o = *o;
    h->hv = o->v->http;
    for (int i = 0; i < PGR_MAX_SESSIONS; i++) h->fd[i] = -1;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    return h;
}

void pgr_http_target_free(pgr_http_target *h)
{
    if (!h) return;
    for (int i = 0; i < PGR_MAX_SESSIONS; i++)
        if (h->fd[i] >= 0) close(h->fd[i]);
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    free(h);
}

/* A connection to instance i, fresh or kept alive (one the application closed while idle is
 * replaced). -1 when it cannot connect. */
static int connection(pgr_http_target *h, int i)
{
    if (h->fd[i] >= 0) {
        struct pollfd pf = { .fd = h->fd[i], .events = POLLIN };
        if (poll(&pf, 1, 0) == 0) return h->fd[i];
        close(h->fd[i]);                     /* readable while idle: closed (or garbage) */
        h->fd[i] = -1;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)pgr_webapp_port(h->o.app, i)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { close(fd); return -1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    h->fd[i] = fd;
    return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write every pending final byte (h->mu held). */
static void release_last_bytes(pgr_http_target *h)
{
    for (int i = 0; i < h->o.nsessions; i++) {
        if (!h->pending[i]) continue;
        if (send(h->fd[i], &h->last[i], 1, MSG_NOSIGNAL) != 1) h->last[i] = 0;     /* 0: failed */
        else h->last[i] = 1;
        h->sess[i]->http_sent_ns = pgr_now_ns();
        h->pending[i] = false;
    }
    h->arrived = 0;
    h->gen++;
    pthread_cond_broadcast(&h->cv);
}

/* Last-byte sync: the final byte of session i's request waits for every session's (at most
 * 2 s: a session that never comes does not hold the others). 0, or -1 when the write failed. */
static int send_last_byte(pgr_http_target *h, pgr_session *s, char byte)
{
    int i = s->index;
    pthread_mutex_lock(&h->mu);
    h->pending[i] = true;
    h->last[i] = byte;
    h->sess[i] = s;
    unsigned gen = h->gen;
    if (++h->arrived >= h->o.nsessions) {
        release_last_bytes(h);
    } else {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 2;
        while (h->gen == gen && pthread_cond_timedwait(&h->cv, &h->mu, &until) == 0) {}
        if (h->gen == gen) release_last_bytes(h);    /* a session is late: go with who came */
    }
    int ok = h->last[i] == 1 ? 0 : -1;
    pthread_mutex_unlock(&h->mu);
    return ok;
}

/* Read one answer from fd into *buf (grown), parse it into a. 0; -1 with a harness error. */
static int read_answer(pgr_http_target *h, pgr_session *s, int fd, char **buf, size_t *len, pgr_http_answer *a)
{
    size_t cap = 0;
    *buf = NULL;
    *len = 0;
    double limit = h->o.timeout_s > 0 ? h->o.timeout_s : 30;
    int64_t deadline = pgr_now_ns() + (int64_t)(limit * 1e9);
    bool eof = false;
    char err[200];
    for (;;) {
        if (*len > 0 || eof) {
            long r = pgr_http_parse_answer(*buf ? *buf : "", *len, eof, a, err, sizeof err);
            if (r > 0) return 0;
            if (r < 0) {
                /* an instance that died closed the connection: say how it died (give it a moment to be reaped) */
                char gone[PGR_ERRLEN];
                bool dead = false;
                for (int k = 0; k < (eof ? 30 : 1) && !(dead = pgr_webapp_gone(h->o.app, s->index, gone, sizeof gone)); k++)
                    if (eof) poll(NULL, 0, 10);
                if (dead) harness_error(s, h, "%s", gone);
                else if (eof && *len == 0) harness_error(s, h, "app instance %d closed the connection without an answer", s->index + 1);
                else harness_error(s, h, "app instance %d answered what is not HTTP: %s", s->index + 1, err);
                return -1;
            }
        }
        if (eof) return -1;                          /* not reached: parse says why at eof */
        if (h->o.interrupted && *h->o.interrupted) { harness_error(s, h, "interrupted"); return -1; }
        int64_t now = pgr_now_ns();
        if (now > deadline) {
            harness_error(s, h, "app instance %d did not answer within the step timeout (%.0f s, --step-timeout)",
                          s->index + 1, limit);
            return -1;
        }
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        int pr = poll(&pf, 1, 50);
        if (pr < 0 && errno != EINTR) { harness_error(s, h, "poll: %s", strerror(errno)); return -1; }
        if (pr <= 0) continue;
        if (cap - *len < 4096) {
            size_t ncap = cap ? cap * 2 : 8192;
            if (ncap > PGR_HTTP_MAX_HEAD + PGR_HTTP_MAX_BODY + 8192) {
                harness_error(s, h, "app instance %d answered more than %u MiB", s->index + 1, PGR_HTTP_MAX_BODY >> 20);
                return -1;
            }
            char *g = realloc(*buf, ncap);
            if (!g) { harness_error(s, h, "out of memory"); return -1; }
            *buf = g;
            cap = ncap;
        }
        ssize_t got = recv(fd, *buf + *len, cap - *len, 0);
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got <= 0) eof = true;
        else *len += (size_t)got;
    }
}

static int serve_http(void *ctx, pgr_session *s, pgr_request *req, pgr_response *resp)
{
    pgr_http_target *h = ctx;
    int i = s->index;
    resp->status = 500;
    resp->id = -1;
    resp->sqlstate[0] = '\0';
    if (s->infra_error) return 500;
    char gone[PGR_ERRLEN];
    if (pgr_webapp_gone(h->o.app, i, gone, sizeof gone)) { harness_error(s, h, "%s", gone); return 500; }
    const pgr_http_request *r = &h->hv->requests[i % h->hv->nrequests];
    char host[64];
    snprintf(host, sizeof host, "127.0.0.1:%d", pgr_webapp_port(h->o.app, i));
    size_t n;
    char *bytes = pgr_http_request_bytes(r, host, req->text[0], req->text[1], req->text[2], &n);
    if (!bytes) { harness_error(s, h, "out of memory"); return 500; }
    int fd = connection(h, i);
    if (fd < 0) {
        free(bytes);
        harness_error(s, h, "cannot connect to app instance %d on 127.0.0.1:%d: %s", i + 1,
                      pgr_webapp_port(h->o.app, i), strerror(errno));
        return 500;
    }
    int n0 = s->nsteps;
    __atomic_store_n(&s->outside_request, 0, __ATOMIC_RELEASE);   /* from here its statements are this request's */
    if (h->o.sync) h->o.sync(h->o.port_ctx, i, 0.2);      /* the session's trial state, before its steps */
    bool sync_last = h->o.last_byte && s->http_sent_ns == 0;   /* the trial's first send only */
    int rc;
    if (sync_last) {
        rc = write_all(fd, bytes, n - 1);
        if (rc == 0) rc = send_last_byte(h, s, bytes[n - 1]);
    } else {
        rc = write_all(fd, bytes, n);
        s->http_sent_ns = pgr_now_ns();
    }
    free(bytes);
    if (rc != 0) {
        if (pgr_webapp_gone(h->o.app, i, gone, sizeof gone)) harness_error(s, h, "%s", gone);
        else harness_error(s, h, "app instance %d: the request could not be sent: %s", i + 1, strerror(errno));
        return 500;
    }
    char *buf = NULL;
    size_t len = 0;
    pgr_http_answer a;
    rc = read_answer(h, s, fd, &buf, &len, &a);
    if (h->o.sync) h->o.sync(h->o.port_ctx, i, 0.2);      /* its steps, before its answer */
    __atomic_store_n(&s->outside_request, 1, __ATOMIC_RELEASE);
    if (rc != 0) {
        free(buf);
        close(fd);
        h->fd[i] = -1;
        return 500;
    }
    resp->status = a.status;
    resp->id = pgr_http_json_id(a.body, a.body_len, h->hv->id_path);
    /* the body's shape, for the tally: its start, printable, every number as '#' (the ids
     * differ from trial to trial; what the answer says does not) */
    size_t o = 0;
    for (size_t k = 0; k < a.body_len && o + 1 < sizeof resp->body; k++) {
        unsigned char c = (unsigned char)a.body[k];
        if (c >= '0' && c <= '9') {
            while (k + 1 < a.body_len && a.body[k + 1] >= '0' && a.body[k + 1] <= '9') k++;
            resp->body[o++] = '#';
            continue;
        }
        resp->body[o++] = c >= 0x20 && c < 0x7f ? (char)c : c == '\n' || c == '\r' || c == '\t' ? ' ' : '?';
    }
    resp->body[o] = '\0';
    if (a.close) { close(fd); h->fd[i] = -1; }
    pgr_http_answer_free(&a);
    free(buf);
    if (s->nsteps - n0 <= 0 && !(resp->status >= 400 && resp->status < 500)) {
        harness_error(s, h, "app instance %d answered %d without one statement through its session's listener: it must "
                      "connect with DATABASE_URL (or PGHOST/PGPORT)", i + 1, resp->status);
        resp->status = 500;
        return 500;
    }
    return resp->status;
}

static const pgr_target_ops http_ops = { "http", serve_http };

pgr_target pgr_target_http(pgr_http_target *h)
{
    return (pgr_target){ &http_ops, h };
}
