/* app.h — what the command implementations (commands.c, cells.c, cmd_run.c) share: the
 * invocation's configuration, the interrupt flag, the server and target lookups. */
#ifndef PGRACE_APP_H
#define PGRACE_APP_H

#include "cli.h"
#include "runner.h"

extern pgr_config pgr_cfg;               /* this invocation's options (main.c) */
extern volatile int pgr_interrupted;     /* the signal that asked us to stop; 0 none */

/* The DSN to use: --dsn / PGRACE_DSN, or a throwaway server started now (once). 0, or -1
 * after printing why. */
int pgr_obtain_server(char *dsn, size_t len);
/* "PostgreSQL 15.x" of the server at dsn; "" when it cannot be asked. */
void pgr_server_version_of(const char *dsn, char *out, size_t len);
/* TARGET into (scenario, variant index or -1). 0, or -1 after printing why. */
int pgr_resolve_target(const char *target, const pgr_scenario **sc, int *vi);
/* The command's targets: its positional ones, then every --spec file (a directory: its
 * *.spec, sorted). malloc'd (the strings live for the process); NULL after printing why. */
char **pgr_expand_targets(char **pos, int npos, int *nout);
/* --case NAME of scenario sc: its index, -1 when not given, -2 (after a message) when unknown. */
int pgr_case_option(const pgr_scenario *sc);

/* One cell of a run: a variant under one mode, level, session count and fault. */
typedef struct pgr_cell {
    const pgr_scenario *sc;
    const pgr_variant *v;
    pgr_isolation iso;
    int sessions;
    bool explore;            /* exhaustive exploration instead of stress */
    pgr_fault fault;         /* stress with this fault (kind NONE: none) */
    int force_case;          /* -1: the scenario's weights */
    long long trials;        /* 0: the run's budget */
} pgr_cell;

#define PGR_MIN_STRESS_TRIALS 300  /* a budgeted stress cell with fewer is marked short */

/* Run the cells, print each (or the table), write the JSON and the reports. budget_s > 0:
 * the whole run's seconds, shared out (cells that end by themselves first, each capped at an
 * equal share of what is left; then the stress cells, sharing what is left), and a cell
 * below its minimum (PGR_MIN_STRESS_TRIALS, a fault cell's trials, an exploration's whole
 * space) is marked budget_short; else every stress cell runs seconds_each or trials_each.
 * Returns the exit status: 0 all matched, 1 a mismatch, 2 a harness error. With keep, the
 * results (as many as ran, in the cells' order, *keep_n) are handed to the caller
 * (pgr_result_free each, free). */
int pgr_run_cells(const pgr_cell *cells, int n, double budget_s, double seconds_each, long long trials_each,
                  const char *json_path, const char *report_dir, bool table, pgr_result **keep, int *keep_n);
/* The run's matrix for the targets (every variant x level x stress 2/8 and explore 2, then
 * with faults the fault matrix). 0, or -1 after printing why. */
int pgr_matrix_cells(char **pos, int npos, bool faults, pgr_cell **out, int *ncells);

/* The whole command line: parse argv, run the command, stop the throwaway server. Returns
 * the exit status. Scenarios must be registered before (pgr_register). */
int pgr_main(int argc, char **argv);

int pgr_cmd_run(char **targets, int ntargets);
int pgr_cmd_accept(char **targets, int ntargets);
int pgr_cmd_ci(char **targets, int ntargets);
int pgr_cmd_isolation(char **files, int nfiles);
int pgr_cmd_proxy(char **pos, int npos);

#endif
