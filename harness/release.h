/* release.h — release barrier (coordinator opens; N sessions go together; last one home wakes it). */
#ifndef PGRACE_RELEASE_H
#define PGRACE_RELEASE_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct pgr_release {
    _Atomic uint32_t gen;      /* bumped by the coordinator: "go" for the next trial */
    _Atomic uint32_t pending;  /* sessions still running the current trial */
} pgr_release;

void pgr_release_init(pgr_release *r);
/* Coordinator: start `sessions` sessions now. */
void pgr_release_open(pgr_release *r, uint32_t sessions);
/* Session: wait until the generation moves past *seen; updates *seen. */
void pgr_release_wait(pgr_release *r, uint32_t *seen);
/* Session: this trial is finished. */
void pgr_release_done(pgr_release *r);
/* Coordinator: wait until every session released by the last open() is done. */
void pgr_release_join(pgr_release *r);

#endif
