/* cli.h — the command line: one parser that validates everything and never prints or exits. */
#ifndef PGRACE_CLI_H
#define PGRACE_CLI_H

#include "explore.h"

/* The commands; pgr_commands[] says how many arguments each takes. */
typedef enum {
    PGR_CMD_LIST, PGR_CMD_STRESS, PGR_CMD_RUN, PGR_CMD_CI, PGR_CMD_SERVER, PGR_CMD_EXPLORE, PGR_CMD_REPLAY,
    PGR_CMD_PAYLOADS, PGR_CMD_ACCEPT, PGR_CMD_ISOLATION, PGR_CMD_PROXY, PGR_CMD_HTTP, PGR_NCMDS
} pgr_command;

typedef struct pgr_command_spec {
    const char *name;
    int min, max;                /* positional arguments */
    const char *need;            /* the usage error when they are not */
} pgr_command_spec;

extern const pgr_command_spec pgr_commands[PGR_NCMDS];

/* All configuration of one invocation. */
typedef struct pgr_config {
    const char *command;         /* as typed */
    pgr_command cmd;
    const char *dsn;             /* --dsn or PGRACE_DSN; NULL: throwaway server */
    const char *json_path;       /* --json */
    const char *out_dir;         /* run --out */
    bool quiet;
    int sessions;
    bool sessions_given;         /* -c was given (proxy: listeners bound to sessions) */
    bool iso_given;              /* -i was given (run: the matrix at that level only) */
    long long trials;
    double seconds;
    double budget;
    double progress;
    pgr_isolation iso;
    pgr_strategy strategy;       /* explore */
    long long max_schedules;
    unsigned long long seed;
    int depth;
    const char *save_dir;
    const char *kase;
    int repeat;                  /* replay */
    const char *baseline;        /* ci */
    const char *regressions;     /* ci */
    pgr_fault fault;             /* stress/explore --fault; kind NONE: none */
    bool no_faults;              /* run/ci --no-faults: skip the fault matrix */
    double step_timeout;         /* --step-timeout: the watchdog, seconds (0: 30; isolation: 300) */
    const char *specs[16];       /* --spec FILE|DIR (run, ci, list): spec targets */
    int nspecs;
    const char *expected;        /* isolation --expected: a file, or a directory of NAME.out */
    int port;                    /* proxy --port: 127.0.0.1's port (0: chosen) */
    const char *socket_dir;      /* proxy --socket-dir (NULL: a fresh one) */
    bool trace;                  /* proxy --trace: every step on stderr */
    const char *clients[16];     /* --client [NAME=]CMD: programs as a spec's variants */
    int nclients;
    const char *app;             /* --app CMD: the application of a spec's http variants */
} pgr_config;


extern const char pgr_usage_text[];

/* The defaults, and PGRACE_DSN from the environment. */
void pgr_config_defaults(pgr_config *c);

/* Parse argv (argv[1] is the command) into c, with the positional arguments in *pos.
 * 0 ok, 1 help asked for, -1 bad input with err set to one line (no "pgrace: " prefix). */
int pgr_cli_parse(int argc, char **argv, pgr_config *c, int *npos, char ***pos, char *err, size_t errlen);

#endif
