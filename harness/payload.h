/* payload.h — request payloads against the handlers: the generator and `pgrace payloads`. */
#ifndef PGRACE_PAYLOAD_H
#define PGRACE_PAYLOAD_H

#include "runner.h"

#include <stdio.h>

#define PGR_MAX_PAYLOADS 24          /* per field */

/* One payload for one field. */
typedef struct pgr_payload {
    char name[32];                   /* "lone 0xff", "2^63-1", ... */
    bool hostile;                    /* must be rejected (4xx, no statement, no row); else
                                      * edge-valid: never a 5xx, a 4xx writes nothing */
    char *bytes;                     /* owned; may hold NUL bytes */
    size_t len;
} pgr_payload;

/* The payloads for field f, built around base (a value the scenario really sends, so a
 * payload that slipped through would reach a real row). Returns how many (at most
 * PGR_MAX_PAYLOADS), or -1 when out of memory (nothing to free then). */
int pgr_payloads_make(const pgr_field *f, const char *base, pgr_payload *out);
void pgr_payloads_free(pgr_payload *p, int n);

/* The verdict on one payload check: one trial of a variant, every session sending the
 * scenario's first case with one field replaced by the payload. */
typedef struct pgr_payload_check {
    const pgr_scenario *sc;
    const pgr_variant *v;
    const char *field;
    char payload[32];
    bool hostile;
    int nsessions;
    int statuses[PGR_MAX_SESSIONS];  /* each session's (last) answer */
    long long statements;            /* statements the sessions sent */
    bool changed;                    /* some table of the variant's schema changed */
    bool ok;
    bool race;                       /* ok, though a session answered 500: the variant's known
                                      * race (23505/40001/40P01 where stress expects a race) */
    char why[256];                   /* the validator's reason, or what failed; "" = none */
} pgr_payload_check;

typedef struct pgr_payload_checks {  /* a growing list */
    pgr_payload_check *v;
    int n, cap;
} pgr_payload_checks;

typedef struct pgr_payload_opts {
    int sessions;
    pgr_isolation iso;
    volatile int *interrupted;
} pgr_payload_opts;

/* Run every payload of every field of variant v; append the checks to out. 0, or -1 with
 * err on a harness or server error (the checks that finished are kept). */
int pgr_payloads_run(const char *dsn, const pgr_scenario *sc, const pgr_variant *v,
                     const pgr_payload_opts *o, pgr_payload_checks *out, char *err, size_t errlen);

/* The table of checks[0..n) (one scenario) on f. */
void pgr_print_payload_checks(FILE *f, const pgr_payload_check *checks, int n);
/* Write {"pgrace_version", "server", "payloads": [...], "error"} to path. 0 or -1+err. */
int pgr_write_payloads_json(const char *path, const char *server, const pgr_payload_checks *c,
                            const char *error, char *err, size_t errlen);

#endif
