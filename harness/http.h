/*
 * http.h — the HTTP/1.1 a request to an application needs, and nothing more: a request built
 * from an http variant's template (:key, :session, :case substituted), an answer parsed as it
 * arrives (status line, headers, Content-Length or chunked body, or a body that ends with the
 * connection), the answer's id read from its JSON body (jansson). No sockets here:
 * target_http.c owns the connections. Every function is pure, so a fuzzer drives the parser.
 */
#ifndef PGRACE_HTTP_H
#define PGRACE_HTTP_H

#include "pgrace.h"

#include <stddef.h>

#define PGR_HTTP_MAX_HEAD (64u << 10)       /* a larger head (status line + headers) is garbage */
#define PGR_HTTP_MAX_BODY (16u << 20)       /* a larger body is refused */

/* The request's bytes (malloc'd, *len set), the placeholders of r substituted by key,
 * session and kase, Host: host, Content-Length (and Content-Type: application/json when
 * the template has a body and no Content-Type). NULL when out of memory. */
char *pgr_http_request_bytes(const pgr_http_request *r, const char *host, const char *key, const char *session,
                             const char *kase, size_t *len);

typedef struct pgr_http_answer {
    int status;                      /* 100..599 */
    bool close;                      /* Connection: close, or HTTP/1.0 without keep-alive */
    const char *body;                /* into the buffer parsed, or into dechunked */
    size_t body_len;
    char *dechunked;                 /* a chunked body, joined (malloc'd; pgr_http_answer_free) */
} pgr_http_answer;

/* Parse one answer from buf[0, len). eof: the connection has ended (a body without a length
 * ends there). Returns the bytes the answer took (> 0) with *a filled, 0 when more bytes are
 * needed, -1 when it is not HTTP (err says why, one line). */
long pgr_http_parse_answer(const char *buf, size_t len, bool eof, pgr_http_answer *a, char *err, size_t errlen);
void pgr_http_answer_free(pgr_http_answer *a);

/* The id at path (dotted: "id", "submission.id", "items.0.id") in a JSON body: a number
 * (integral), a string of digits, or another string hashed to a positive 63-bit id (so a
 * UUID still compares). -1 when the body is not JSON or the path is not there. */
long long pgr_http_json_id(const char *body, size_t len, const char *path);

#endif
