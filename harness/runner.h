/* runner.h — everything a mode driver needs: connections, results, the pool, stress,
 * output and fault plans. Each part has its own header; this one only gathers them. */
#ifndef PGRACE_RUNNER_H
#define PGRACE_RUNNER_H

#include "conn.h"
#include "output.h"
#include "pool.h"
#include "results.h"
#include "stress.h"

/* Arm trial t's requests with fault f: each with probability f->rate, at a site chosen
 * among `sites` (a pure function of seed, trial number and session). */
void pgr_fault_plan(pgr_trial *t, const pgr_fault *f, unsigned long long seed, int sites);

#endif
