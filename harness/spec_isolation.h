/* spec_isolation.h — run a spec's permutations as PostgreSQL's isolationtester does
 * (spec_isolation.c), printing exactly what it prints. `pgrace isolation` (cmd_isolation.c)
 * gives each spec a fresh database and compares with expected files. */
#ifndef PGRACE_SPEC_ISOLATION_H
#define PGRACE_SPEC_ISOLATION_H

#include "spec.h"

#include <stdio.h>

/* What a run printed: both of isolationtester's streams, in the order it wrote them
 * (`isolationtester ... 2>&1`). With echo, each piece also goes to this process's stdout
 * (isolationtester's stdout) or stderr (its stderr) as it is written. */
typedef struct pgr_iso_out {
    char *buf;                   /* NUL-terminated; malloc'd */
    size_t len, cap;
    bool echo;
    bool oom;                    /* a piece was lost for want of memory */
} pgr_iso_out;

void pgr_iso_out_free(pgr_iso_out *o);

typedef struct pgr_iso_opts {
    const char *dsn;             /* base DSN: host, port, user... */
    const char *dbname;          /* the database to run in (overrides the DSN's) */
    double max_step_wait;        /* seconds: cancel a step after this, give up after twice
                                  * this (isolationtester's PGISOLATIONTIMEOUT, default 300) */
    volatile int *interrupted;   /* set on SIGINT/SIGTERM: stop at once */
} pgr_iso_opts;

/* How a run ended. */
typedef enum {
    PGR_ISO_DONE,                /* every permutation ran (isolationtester exits 0) */
    PGR_ISO_STOPPED,             /* it stopped where isolationtester exits 1 (setup failed, a
                                  * step timed out, mutually blocking steps): out says why */
    PGR_ISO_ERROR                /* a harness error (connection lost, interrupted): err */
} pgr_iso_end;

/* All permutations of the sessions' steps when the spec lists none (isolationtester runs
 * every one): their number, saturating at limit + 1 (limit < 2^31). */
long long pgr_iso_permutation_count(const pgr_spec *spec, long long limit);

/* Run spec in opts->dbname: "Parsed test spec...", each permutation (the listed ones, or
 * every one), its setup, steps and teardown, into out. The database must exist with
 * isolationtester's settings (cmd_isolation.c makes it). */
pgr_iso_end pgr_iso_run(const pgr_spec *spec, const pgr_iso_opts *opts, pgr_iso_out *out, char *err, size_t errlen);

#endif
