/* cli.c — the command line: options, numbers with their names and ranges, commands and
 * their positional arguments. Only main() prints and exits; this fills an error line. */
#include "cli.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_JSON = 256, OPT_DSN, OPT_BUDGET, OPT_OUT, OPT_STRATEGY, OPT_MAXSCHED, OPT_SEED, OPT_DEPTH,
        OPT_SAVE, OPT_CASE, OPT_REPEAT, OPT_BASELINE, OPT_REGRESSIONS, OPT_FAULT, OPT_NO_FAULTS, OPT_STEP_TIMEOUT,
        OPT_SPEC, OPT_EXPECTED, OPT_PORT, OPT_SOCKET_DIR, OPT_TRACE, OPT_CLIENT, OPT_APP };

const pgr_command_spec pgr_commands[PGR_NCMDS] = {
    [PGR_CMD_LIST] = { "list", 0, INT_MAX, "" },
    [PGR_CMD_STRESS] = { "stress", 1, 1, "stress needs exactly one TARGET" },
    [PGR_CMD_RUN] = { "run", 0, INT_MAX, "" },
    [PGR_CMD_CI] = { "ci", 0, INT_MAX, "" },
    [PGR_CMD_SERVER] = { "server", 1, 1, "server needs one of start, stop, status" },
    [PGR_CMD_EXPLORE] = { "explore", 1, 1, "explore needs exactly one TARGET" },
    [PGR_CMD_REPLAY] = { "replay", 1, INT_MAX, "replay needs at least one schedule FILE" },
    [PGR_CMD_PAYLOADS] = { "payloads", 0, INT_MAX, "" },
    [PGR_CMD_ACCEPT] = { "accept", 1, 64, "accept needs one to 64 spec FILEs" },
    [PGR_CMD_ISOLATION] = { "isolation", 1, INT_MAX, "isolation needs at least one spec FILE" },
    [PGR_CMD_PROXY] = { "proxy", 0, 0, "proxy takes no arguments (options only)" },
    [PGR_CMD_HTTP] = { "http", 1, 1, "http needs exactly one FILE.spec[/variant] with http variants" },
};

const char pgr_usage_text[] =
    "usage: pgrace COMMAND [options]\n"
    "\n"
    "commands:\n"
    "  list [FILE.spec...]           one line per scenario/variant: target, kind, expectation, seed\n"
    "  stress TARGET                 fire synchronized concurrent requests, check invariants\n"
    "  run [TARGET...]               the matrix (variant x isolation x 2/8 sessions, explore), reports\n"
    "  ci [TARGET...]                replay regressions, run the matrix, report new failures\n"
    "  server start|stop|status      a throwaway PostgreSQL kept for several runs\n"
    "  explore TARGET                run the sessions' statements in chosen orders, one at a time\n"
    "  replay FILE...                re-run saved schedules deterministically, print the trace\n"
    "  accept FILE.spec...           measure the spec's variants (run's matrix: stress, explore\n"
    "                                and, unless --no-faults, the fault matrix) and write the\n"
    "                                verdicts into the file as expect lines\n"
    "  payloads [TARGET...]          hostile and edge-valid request payloads against the handlers:\n"
    "                                4xx, no statement and no row for every hostile one (-c, -i)\n"
    "  isolation FILE.spec...        run specs as PostgreSQL's isolationtester does, each in a fresh\n"
    "                                database, and print exactly what it prints\n"
    "  http FILE.spec[/VARIANT]      stress a spec's http variants: N synchronized HTTP requests per\n"
    "                                trial (last-byte sync) at the application, one instance per\n"
    "                                session started with PORT and DATABASE_URL (stress options)\n"
    "  proxy                         a PostgreSQL protocol proxy: programs connect to it instead of\n"
    "                                the server, every statement is a step (pass-through) until\n"
    "                                SIGINT/SIGTERM; prints where to connect\n"
    "\n"
    "TARGET = scenario[/variant] or FILE.spec[/variant]; no variant means every variant\n"
    "\n"
    "stress options:\n"
    "  -c, --sessions N              concurrent sessions, 1..64 (default 2)\n"
    "  -t, --trials N                trials, 1..1000000000 (default 2000)\n"
    "  -T, --seconds S               run for S seconds instead of a trial count\n"
    "  -i, --isolation LEVEL         read-committed | repeatable-read | serializable\n"
    "                                (default: read-committed)\n"
    "  -P, --progress S              progress on stderr every S seconds (default 2, 0 = off)\n"
    "  --case NAME                   every trial sends this request case (default: all, weighted)\n"
    "  --fault KIND[@RATE]           inject a fault into a share RATE of the requests (default 0.2),\n"
    "                                at a step chosen by --seed; the client retries once:\n"
    "                                timeout-retry | kill-backend | error-at[:STEP] | lost-commit\n"
    "explore options (and -c, -i):\n"
    "  --strategy S                  exhaustive (default) | random | pct\n"
    "  --max-schedules N             stop after N schedules (default: exhaustive all, else 1000)\n"
    "  --seed S                      random/pct seed (default 1)\n"
    "  --depth D                     pct bug depth, 1..8 (default 2)\n"
    "  --case NAME                   request case to explore (default: the scenario's first)\n"
    "  --save DIR                    write each distinct failing schedule, minimized, to DIR\n"
    "  --fault KIND                  also explore where the fault fires: every eligible step of\n"
    "                                every session is a choice (RATE is ignored)\n"
    "replay options:\n"
    "  --repeat N                    replay each file N times (default 1)\n"
    "ci options (and --budget, --out):\n"
    "  --baseline FILE               an earlier results.json: its failures are known, not new\n"
    "  --regressions DIR             schedules that must reproduce (default fuzz/regressions)\n"
    "isolation options:\n"
    "  --expected FILE|DIR           compare with FILE (one spec) or DIR/NAME.out: 0 identical, else\n"
    "                                a unified diff and 1\n"
    "  --step-timeout S              isolationtester's step limit: cancel after S, give up after 2S\n"
    "                                (default 300)\n"
    "proxy options (and --dsn, --fault, --seed):\n"
    "  -c, --sessions N              N listeners, listener i bound to session Si: its connections'\n"
    "                                statements run one at a time (ports PORT..PORT+N-1 with --port;\n"
    "                                default: one listener, each connection a session of its own)\n"
    "  --port N                      127.0.0.1's port, 1..65535 (default: chosen); the unix socket\n"
    "                                is DIR/.s.PGSQL.N\n"
    "  --socket-dir DIR              where the unix socket goes (created 0700 when missing; default\n"
    "                                a fresh directory under $TMPDIR)\n"
    "  --trace                       every step on stderr as it completes: session, label,\n"
    "                                SQLSTATE, rows, time\n"
    "  --fault KIND[@RATE]           each eligible statement gets the fault with probability RATE\n"
    "run options:\n"
    "  -i, --isolation LEVEL         the matrix at this level only (default: all three)\n"
    "  --budget S                    seconds for the whole matrix, setup aside (default 150); a\n"
    "                                cell it cuts below its minimum is marked short. 0: no limit,\n"
    "                                every cell its minimum (300 trials, a fault cell's 100,\n"
    "                                an exploration's whole space)\n"
    "  --out DIR                     where results.json, index.html, junit.xml and summary.md go\n"
    "                                (default out/)\n"
    "  --no-faults                   skip the fault matrix (proposed and recommended variants\n"
    "                                under each fault kind)\n"
    "  --spec FILE|DIR               also these spec files (a directory: its *.spec); with no\n"
    "                                TARGET, only they run (run, ci, list)\n"
    "  --client [NAME=]CMD           a spec's variants are these programs (stress, explore, run,\n"
    "                                list; repeat for several, each NAME=CMD): each session runs CMD\n"
    "                                once per trial through the proxy (README: Race your own program)\n"
    "  --app CMD                     the application a spec's http variants are sent to, instead of\n"
    "                                its `app` item: started once per session with PORT and\n"
    "                                DATABASE_URL set (README: Race your HTTP endpoint)\n"
    "common options:\n"
    "  --json FILE                   write the results as JSON (schema in README.md)\n"
    "  --dsn DSN                     use this server (or PGRACE_DSN); default: start a\n"
    "                                throwaway PostgreSQL in a private temporary directory\n"
    "  -q, --quiet                   no progress or notes on stderr\n"
    "  --step-timeout S              the watchdog: a statement stuck S seconds is cancelled and the\n"
    "                                run stops with a harness error (default 30)\n"
    "  -h, --help                    this text\n"
    "\n"
    "exit status: 0 verdicts matched expectations (payloads: every check ok; isolation: every output\n"
    "as expected), 1 a verdict did not (payloads: a check failed; isolation: an output differed, or\n"
    "a spec stopped where isolationtester exits 1), 2 error\n";

/* A usage error: the message, then where to look. Returns -1. */
static int usage_error(char *err, size_t errlen, const char *fmt, const char *a, const char *b)
{
    char m[PGR_ERRLEN];
    snprintf(m, sizeof m, fmt, a, b);
    snprintf(err, errlen, "%s (see 'pgrace --help')", m);
    return -1;
}

static int parse_ll(const char *opt, const char *s, long long lo, long long hi, long long *out, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) {
        snprintf(err, errlen, "%s must be an integer in %lld..%lld, got '%s'", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_seconds(const char *opt, const char *s, double lo, double hi, double *out, char *err, size_t errlen)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) {
        snprintf(err, errlen, "%s must be a number of seconds in %g..%g, got '%s'", opt, lo, hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

void pgr_config_defaults(pgr_config *c)
{
    *c = (pgr_config){ .sessions = 2, .progress = 2.0, .budget = 150, .out_dir = "out", .depth = 2, .repeat = 1 };
    const char *env_dsn = getenv("PGRACE_DSN");
    if (env_dsn && *env_dsn) c->dsn = env_dsn;
}

int pgr_cli_parse(int argc, char **argv, pgr_config *c, int *npos, char ***pos, char *err, size_t errlen)
{
    if (argc < 2) return usage_error(err, errlen, "no command given%s%s", "", "");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) return 1;
    c->command = argv[1];

    static const struct option opts[] = {
        { "sessions", required_argument, NULL, 'c' }, { "trials", required_argument, NULL, 't' },
        { "seconds", required_argument, NULL, 'T' }, { "isolation", required_argument, NULL, 'i' },
        { "progress", required_argument, NULL, 'P' }, { "quiet", no_argument, NULL, 'q' },
        { "help", no_argument, NULL, 'h' }, { "json", required_argument, NULL, OPT_JSON },
        { "dsn", required_argument, NULL, OPT_DSN }, { "budget", required_argument, NULL, OPT_BUDGET },
        { "out", required_argument, NULL, OPT_OUT }, { "strategy", required_argument, NULL, OPT_STRATEGY },
        { "max-schedules", required_argument, NULL, OPT_MAXSCHED }, { "seed", required_argument, NULL, OPT_SEED },
        { "depth", required_argument, NULL, OPT_DEPTH }, { "save", required_argument, NULL, OPT_SAVE },
        { "case", required_argument, NULL, OPT_CASE }, { "repeat", required_argument, NULL, OPT_REPEAT },
        { "baseline", required_argument, NULL, OPT_BASELINE }, { "regressions", required_argument, NULL, OPT_REGRESSIONS },
        { "fault", required_argument, NULL, OPT_FAULT }, { "no-faults", no_argument, NULL, OPT_NO_FAULTS },
        { "step-timeout", required_argument, NULL, OPT_STEP_TIMEOUT },
        { "spec", required_argument, NULL, OPT_SPEC },
        { "expected", required_argument, NULL, OPT_EXPECTED },
        { "port", required_argument, NULL, OPT_PORT }, { "socket-dir", required_argument, NULL, OPT_SOCKET_DIR },
        { "trace", no_argument, NULL, OPT_TRACE }, { "client", required_argument, NULL, OPT_CLIENT },
        { "app", required_argument, NULL, OPT_APP },
        { NULL, 0, NULL, 0 } };
    opterr = 0;
    optind = 0;                  /* GNU: start afresh (the parser may run more than once) */
    int ch;
    long long v;
    while ((ch = getopt_long(argc - 1, argv + 1, ":c:t:T:i:P:qh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            if (parse_ll("-c/--sessions", optarg, 1, PGR_MAX_SESSIONS, &v, err, errlen)) return -1;
            c->sessions = (int)v;
            c->sessions_given = true;
            break;
        case 't':
            if (parse_ll("-t/--trials", optarg, 1, 1000000000LL, &v, err, errlen)) return -1;
            c->trials = v;
            break;
        case 'T':
            if (parse_seconds("-T/--seconds", optarg, 0.001, 86400, &c->seconds, err, errlen)) return -1;
            break;
        case 'P':
            if (parse_seconds("-P/--progress", optarg, 0, 3600, &c->progress, err, errlen)) return -1;
            break;
        case 'i':
            if (pgr_isolation_parse(optarg, &c->iso) != 0)
                return usage_error(err, errlen, "-i/--isolation must be read-committed, repeatable-read or serializable, got '%s'%s", optarg, "");
            c->iso_given = true;
            break;
        case 'q': c->quiet = true; break;
        case 'h': return 1;
        case OPT_JSON: c->json_path = optarg; break;
        case OPT_DSN: c->dsn = optarg; break;
        case OPT_BUDGET:
            if (parse_seconds("--budget", optarg, 0, 86400, &c->budget, err, errlen)) return -1;
            break;
        case OPT_OUT: c->out_dir = optarg; break;
        case OPT_STRATEGY:
            if (strcmp(optarg, "exhaustive") == 0) c->strategy = PGR_EXHAUSTIVE;
            else if (strcmp(optarg, "random") == 0) c->strategy = PGR_RANDOM;
            else if (strcmp(optarg, "pct") == 0) c->strategy = PGR_PCT;
            else return usage_error(err, errlen, "--strategy must be exhaustive, random or pct, got '%s'%s", optarg, "");
            break;
        case OPT_MAXSCHED:
            if (parse_ll("--max-schedules", optarg, 1, 100000000LL, &v, err, errlen)) return -1;
            c->max_schedules = v;
            break;
        case OPT_SEED:
            if (parse_ll("--seed", optarg, 0, LLONG_MAX, &v, err, errlen)) return -1;
            c->seed = (unsigned long long)v;
            break;
        case OPT_DEPTH:
            if (parse_ll("--depth", optarg, 1, 8, &v, err, errlen)) return -1;
            c->depth = (int)v;
            break;
        case OPT_SAVE: c->save_dir = optarg; break;
        case OPT_BASELINE: c->baseline = optarg; break;
        case OPT_REGRESSIONS: c->regressions = optarg; break;
        case OPT_CASE: c->kase = optarg; break;
        case OPT_FAULT:
            if (pgr_fault_parse(optarg, &c->fault, err, errlen) != 0) return -1;
            break;
        case OPT_NO_FAULTS: c->no_faults = true; break;
        case OPT_SPEC:
            if (c->nspecs == (int)(sizeof c->specs / sizeof c->specs[0]))
                return usage_error(err, errlen, "--spec given more than %s times%s", "16", "");
            c->specs[c->nspecs++] = optarg;
            break;
        case OPT_CLIENT:
            if (c->nclients == (int)(sizeof c->clients / sizeof c->clients[0]))
                return usage_error(err, errlen, "--client given more than %s times%s", "16", "");
            c->clients[c->nclients++] = optarg;
            break;
        case OPT_APP:
            if (!*optarg) return usage_error(err, errlen, "--app needs a command%s%s", "", "");
            c->app = optarg;
            break;
        case OPT_EXPECTED: c->expected = optarg; break;
        case OPT_PORT:
            if (parse_ll("--port", optarg, 1, 65535, &v, err, errlen)) return -1;
            c->port = (int)v;
            break;
        case OPT_SOCKET_DIR:
            if (!*optarg) return usage_error(err, errlen, "--socket-dir needs a directory%s%s", "", "");
            c->socket_dir = optarg;
            break;
        case OPT_TRACE: c->trace = true; break;
        case OPT_STEP_TIMEOUT:
            if (parse_seconds("--step-timeout", optarg, 0.01, 3600, &c->step_timeout, err, errlen)) return -1;
            break;
        case OPT_REPEAT:
            if (parse_ll("--repeat", optarg, 1, 1000000, &v, err, errlen)) return -1;
            c->repeat = (int)v;
            break;
        case ':': return usage_error(err, errlen, "option %s needs a value%s", argv[optind], "");
        default: return usage_error(err, errlen, "unknown option '%s'%s", argv[optind], "");
        }
    }
    if (c->trials && c->seconds > 0) return usage_error(err, errlen, "give -t/--trials or -T/--seconds, not both%s%s", "", "");
    *npos = argc - 1 - optind;
    *pos = argv + 1 + optind;


    for (int i = 0; i < PGR_NCMDS; i++)
        if (strcmp(c->command, pgr_commands[i].name) == 0) {
            c->cmd = (pgr_command)i;
            if (*npos < pgr_commands[i].min || *npos > pgr_commands[i].max)
                return usage_error(err, errlen, "%s%s", pgr_commands[i].need, "");
            return 0;
        }
    return usage_error(err, errlen, "unknown command '%s'%s", c->command, "");
}
