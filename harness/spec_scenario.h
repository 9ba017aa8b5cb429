/* spec_scenario.h — a spec file's variants as a registered scenario (spec_scenario.c). */
#ifndef PGRACE_SPEC_SCENARIO_H
#define PGRACE_SPEC_SCENARIO_H

#include "spec.h"

/* Load the spec at path, compile its variants and register it as a scenario named after
 * the file. Parse and compile errors are one line ("PATH:LINE:COL: what"); nothing touches
 * a server. 0 with *out set, or -1 with err. The scenario lives until the process ends. */
int pgr_spec_register(const char *path, const pgr_scenario **out, char *err, size_t errlen);
/* The scenario of the spec at path: the one registered from that file already, else
 * pgr_spec_register's. 0 or -1 with err. */
int pgr_spec_target(const char *path, const pgr_scenario **out, char *err, size_t errlen);
/* The spec a registered scenario came from; NULL for a C scenario. */
const pgr_spec *pgr_spec_of(const pgr_scenario *sc);

/* --client [NAME=]CMD, given before any spec is registered: every spec registered after
 * has these programs as its variants instead of its own (NAME defaults to "client" for one).
 * 0, or -1 with err. */
/* --app CMD: the application every http variant's requests go to, instead of a spec's
 * `app`. Call before pgr_spec_register; cmd must live as long as the process. */
void pgr_spec_set_app(const char *cmd);
int pgr_spec_set_clients(const char *const *clients, int n, char *err, size_t errlen);

#endif
