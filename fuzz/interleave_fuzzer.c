/*
 * interleave_fuzzer.c — libFuzzer drives the explorer's scheduler over a real server.
 *
 * Input bytes: [0] which target (scenario/variant), [1] isolation level, [2] sessions (2 or
 * 3), [3] request case, with PGRACE_FUZZ_FAULT [4] the faulted session (low bits) and the
 * commit outcome (high bit) and [5] the site of its fault, then one byte per scheduling
 * decision (which of the ready sessions runs its next statement). Decisions past the last
 * byte come from a generator seeded with a hash of the whole input, so that every input,
 * however short, is a whole random schedule whose first decisions its bytes fix (with the
 * lowest ready session there instead, libFuzzer's short early inputs all ran the sessions
 * one after the other, and a 3-session race took it 500 to 1000 inputs instead of 1 to 3).
 * An invariant violation prints the interleaving and why, writes
 * a schedule file (replayable with `pgrace replay`), then aborts so libFuzzer keeps the
 * input. The interleaving signal (each step's outcome and every switch between sessions)
 * goes to libFuzzer's extra counters, so "new coverage" also means "new interleaving".
 *
 * Trials are prepared and checked in batches (PGRACE_FUZZ_BATCH inputs, default 64), as
 * stress does. A violation found by a batch's check is of the input that ran it: when that
 * is the input being run, the fuzzer aborts and libFuzzer saves it as usual; when it is an
 * earlier one of the batch, its bytes are written where libFuzzer writes crashes
 * (-artifact_prefix, as crash-pgrace-HASH) and the fuzzer exits with libFuzzer's error
 * code (-error_exitcode, 77) without saving the input being run, which did not violate.
 * Given input files to run (not directories), or with PGRACE_FUZZ_NO_ABORT, every input
 * is checked at once. Inputs still unchecked when the fuzzer stops are checked then.
 *
 * Environment:
 *   PGRACE_DSN              a server to use; else a throwaway one is started here
 *   PGRACE_FUZZ_TARGET      scenario[/variant] or "recommended" (every recommended variant);
 *                           default: every variant
 *   PGRACE_FUZZ_SPEC        spec files to load first (colon-separated): their variants are
 *                           targets like the built-in ones
 *   PGRACE_FUZZ_ISOLATION   fix the isolation level (read-committed, ...)
 *   PGRACE_FUZZ_SESSIONS    fix the session count (2..8, 1..8 with a fault; default 2 or 3)
 *   PGRACE_FUZZ_FAULT       inject this fault (timeout-retry, kill-backend, error-at[:STEP],
 *                           lost-commit) into every schedule, where the input says
 *   PGRACE_FUZZ_SAVE        directory for schedule files of violations (default .)
 *   PGRACE_FUZZ_NO_SIGNAL   1: do not feed the interleaving signal (to measure its worth)
 *   PGRACE_FUZZ_NO_ABORT    1: report a violation and go on (the replay main uses this);
 *                           every input is checked at once
 *   PGRACE_FUZZ_BATCH       inputs run before their invariants are checked together
 *                           (1..256, default 64)
 * The server is checked in LLVMFuzzerInitialize, never in the target: a server that dies
 * later makes the target reject inputs and say so, never a fake crash.
 */
#include "explore.h"
#include "intern.h"
#include "server.h"
#include "spec_scenario.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* libFuzzer's extra counters: must be kept (used), 64-byte aligned, in this section. */
__attribute__((used, section("__libfuzzer_extra_counters"), aligned(64)))
static uint8_t pgr_interleaving_counters[16384];

static pgr_fuzzer *fuzzer;
static pgr_server server;
static struct { const pgr_scenario *sc; const pgr_variant *v; } targets[256];
static int ntargets;
static int fixed_iso = -1, fixed_sessions;
static bool no_signal, no_abort, fuzzing, skip_repeats;
static long long inputs_run;
static const char *save_dir = ".";
static pgr_fault fault;                  /* PGRACE_FUZZ_FAULT: kind NONE = none */
static long long violations;
static char artifact_prefix[1024] = "./";
static int error_exitcode = 77;

long long pgr_fuzz_violations(void) { return violations; }

/* Inputs already run in this process, by hash: libFuzzer's mutations of short inputs give
 * back an input it has run before about every other time, and the same bytes are the same
 * schedule. Open addressing; once three quarters full, later inputs are not remembered. */
#define SEEN_SLOTS (1u << 20)
static uint64_t *seen;
static unsigned nseen;
static long long skipped;

/* true when an input of this hash ran before (and it is remembered now) */
static bool seen_before(uint64_t h)
{
    if (!seen) {
        seen = calloc(SEEN_SLOTS, sizeof *seen);
        if (!seen) return false;
    }
    h |= 1;                              /* 0 marks an empty slot */
    for (unsigned i = (unsigned)h & (SEEN_SLOTS - 1);; i = (i + 1) & (SEEN_SLOTS - 1)) {
        if (seen[i] == h) return true;
        if (!seen[i]) {
            if (nseen < SEEN_SLOTS / 4 * 3) { seen[i] = h; nseen++; }
            return false;
        }
    }
}

static bool server_started;

static void stop_server(void)
{
    if (server_started) pgr_server_stop(&server);
    server_started = false;
}

/* Close the fuzzer's pools: their schemas go, a user's server is left as it was. */
static void drop_fuzzer(void)
{
    pgr_fuzzer_free(fuzzer);
    fuzzer = NULL;
}

/* Print a violation; then, unless told to go on, stop the way libFuzzer would: abort when
 * the input being run is the one (libFuzzer saves it), else save the earlier input here
 * and exit with libFuzzer's error code. */
static void violation(const pgr_fuzz_outcome *o)
{
    violations++;
    fprintf(stderr, "\npgrace: violation of \"%s\" in %s/%s (%s, %d sessions, case %s), input %lld\n%s"
                    "pgrace: schedule written to %s\n",
            pgr_invariant_name(o->sc, o->invariant), o->sc->name, o->v->name, pgr_isolation_name(o->iso), o->sessions,
            o->sc->cases[o->kase].name, o->execution, o->table, o->path ? o->path : "(none)");
    if (no_abort) {
        if (o->earlier) fprintf(stderr, "pgrace: input %lld was checked in a batch with the inputs after it\n", o->execution);
        return;
    }
    if (!o->earlier) {
        drop_fuzzer();
        abort();
    }
    char path[1200];
    snprintf(path, sizeof path, "%scrash-pgrace-%016llx", artifact_prefix,
             (unsigned long long)pgr_bytes_hash(o->input, o->ninput));
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(o->input, 1, o->ninput, f) != o->ninput || fclose(f) != 0)
        fprintf(stderr, "pgrace fuzz: cannot write %s: %s\n", path, strerror(errno));
    else
        fprintf(stderr, "pgrace: input %lld was checked in a batch with the inputs after it: written to %s "
                        "(it replays alone); the input being run did not violate and is not saved\n",
                o->execution, path);
    fflush(stderr);
    drop_fuzzer();
    stop_server();
    _exit(error_exitcode);
}

/* At exit: check the inputs run since the last batch's check, then drop the schemas. */
static void check_the_rest(void)
{
    static pgr_fuzz_outcome out;
    char err[PGR_ERRLEN];
    if (!fuzzer) return;
    if (fuzzing)
        fprintf(stderr, "pgrace fuzz: %lld input(s) run, %lld repeat(s) of an input already run not run again\n",
                inputs_run, skipped);
    if (pgr_fuzz_flush(fuzzer, &out, err, sizeof err) != 0)
        fprintf(stderr, "pgrace fuzz: harness error checking the last inputs: %s\n", err);
    else if (out.violated) {
        out.earlier = true;              /* libFuzzer is done with its input: save it here */
        violation(&out);
    }
    drop_fuzzer();
}

/* libFuzzer's flags that say where crashes go and how it exits, and whether it was given
 * input files to run (then each input is checked at once). */
static bool read_flags(int argc, char **argv)
{
    bool files = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "-artifact_prefix=", 17) == 0) snprintf(artifact_prefix, sizeof artifact_prefix, "%s", a + 17);
        else if (strncmp(a, "-error_exitcode=", 16) == 0) error_exitcode = atoi(a + 16);
        else if (a[0] != '-') {
            struct stat st;
            files |= stat(a, &st) == 0 && S_ISREG(st.st_mode);
        }
    }
    return files;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    bool files = argc && argv && *argv ? read_flags(*argc, *argv) : false;
    char rerr[PGR_ERRLEN];
    if (pgr_register_builtins(rerr, sizeof rerr) != 0) { fprintf(stderr, "interleave_fuzzer: %s\n", rerr); exit(2); }
    const char *specs = getenv("PGRACE_FUZZ_SPEC");
    if (specs && *specs) {
        char *list = strdup(specs), *save = NULL;
        for (char *p = strtok_r(list, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
            const pgr_scenario *sc;
            if (pgr_spec_target(p, &sc, rerr, sizeof rerr) != 0) { fprintf(stderr, "interleave_fuzzer: %s\n", rerr); exit(2); }
        }
        free(list);
    }
    const char *want = getenv("PGRACE_FUZZ_TARGET");
    for (int i = 0; i < pgr_scenario_count(); i++) {
        const pgr_scenario *sc = pgr_scenario_at(i);
        for (int j = 0; j < sc->nvariants; j++) {
            char name[160];
            snprintf(name, sizeof name, "%s/%s", sc->name, sc->variants[j].name);
            bool ok = !want || !*want || strcmp(want, name) == 0 || strcmp(want, sc->name) == 0 ||
                      (strcmp(want, "recommended") == 0 && sc->variants[j].kind == PGR_RECOMMENDED);
            if (ok && ntargets < 256) targets[ntargets++] = (__typeof__(targets[0])){ sc, &sc->variants[j] };
        }
    }
    if (!ntargets) {
        fprintf(stderr, "pgrace fuzz: PGRACE_FUZZ_TARGET '%s' names no target (see 'pgrace list')\n", want);
        exit(2);
    }
    const char *iso = getenv("PGRACE_FUZZ_ISOLATION");
    if (iso && *iso) {
        pgr_isolation l;
        if (pgr_isolation_parse(iso, &l) != 0) {
            fprintf(stderr, "pgrace fuzz: bad PGRACE_FUZZ_ISOLATION '%s'\n", iso);
            exit(2);
        }
        fixed_iso = (int)l;
    }
    const char *fs = getenv("PGRACE_FUZZ_FAULT");
    if (fs && *fs) {
        char ferr[PGR_ERRLEN];
        if (pgr_fault_parse(fs, &fault, ferr, sizeof ferr) != 0) {
            fprintf(stderr, "pgrace fuzz: PGRACE_FUZZ_FAULT: %s\n", ferr);
            exit(2);
        }
    }
    const char *ns = getenv("PGRACE_FUZZ_SESSIONS");
    if (ns && *ns) {
        int lo = fault.kind != PGR_FAULT_NONE ? 1 : 2;   /* a fault needs no second session */
        fixed_sessions = atoi(ns);
        if (fixed_sessions < lo || fixed_sessions > PGR_MAX_EXPLORE_SESSIONS) {
            fprintf(stderr, "pgrace fuzz: PGRACE_FUZZ_SESSIONS must be %d..8, got '%s'\n", lo, ns);
            exit(2);
        }
    }
    no_signal = getenv("PGRACE_FUZZ_NO_SIGNAL") && strcmp(getenv("PGRACE_FUZZ_NO_SIGNAL"), "1") == 0;
    no_abort = getenv("PGRACE_FUZZ_NO_ABORT") && strcmp(getenv("PGRACE_FUZZ_NO_ABORT"), "1") == 0;
    if (getenv("PGRACE_FUZZ_SAVE") && *getenv("PGRACE_FUZZ_SAVE")) save_dir = getenv("PGRACE_FUZZ_SAVE");
    int batch = 64;
    const char *bs = getenv("PGRACE_FUZZ_BATCH");
    if (bs && *bs) {
        char *end;
        long n = strtol(bs, &end, 10);
        if (*end || n < 1 || n > PGR_MAX_BATCH) {
            fprintf(stderr, "pgrace fuzz: PGRACE_FUZZ_BATCH must be 1..%d, got '%s'\n", PGR_MAX_BATCH, bs);
            exit(2);
        }
        batch = (int)n;
    }
    if ((no_abort || files) && !(bs && *bs)) batch = 1;     /* each input checked at once, unless told */
    /* libFuzzer's own inputs: a repeat is not run again (given files, or with NO_ABORT, or
     * with PGRACE_FUZZ_RUN_REPEATS=1, every input runs) */
    fuzzing = !(no_abort || files);
    skip_repeats = fuzzing && !(getenv("PGRACE_FUZZ_RUN_REPEATS") && strcmp(getenv("PGRACE_FUZZ_RUN_REPEATS"), "1") == 0);

    char dsn[4200], err[PGR_ERRLEN];
    const char *env = getenv("PGRACE_DSN");
    if (env && *env) {
        snprintf(dsn, sizeof dsn, "%s", env);
        pgr_scrub_pg_env(true);
    } else {
        pgr_scrub_pg_env(false);
        if (pgr_server_start(&server, false, NULL, err, sizeof err) != 0) {
            fprintf(stderr, "pgrace fuzz: cannot start a throwaway server: %s\n", err);
            exit(2);
        }
        server_started = true;
        atexit(stop_server);
        snprintf(dsn, sizeof dsn, "%s", server.dsn);
    }
    PGconn *c = pgr_connect(dsn, err, sizeof err);
    if (!c) {
        fprintf(stderr, "pgrace fuzz: %s\n", err);
        exit(2);
    }
    pgr_disconnect(c);
    fuzzer = pgr_fuzzer_new(dsn);
    if (!fuzzer) { fprintf(stderr, "pgrace fuzz: out of memory\n"); exit(2); }
    pgr_fuzzer_set_batch(fuzzer, batch);
    atexit(check_the_rest);             /* after stop_server's: runs before it */
    char fname[80] = "no";
    if (fault.kind != PGR_FAULT_NONE) pgr_fault_format(&fault, fname, sizeof fname);
    char shown[4200];
    pgr_dsn_redact(dsn, NULL, shown, sizeof shown);
    fprintf(stderr, "pgrace fuzz: %d target(s), %s signal, %s fault, checked in batches of %d, server %s\n", ntargets,
            no_signal ? "no interleaving" : "interleaving", fname, batch, shown);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4) return -1;
    const pgr_scenario *sc = targets[data[0] % ntargets].sc;
    const pgr_variant *v = targets[data[0] % ntargets].v;
    pgr_isolation iso = fixed_iso >= 0 ? (pgr_isolation)fixed_iso : (pgr_isolation)(data[1] % PGR_NISO);
    int sessions = fixed_sessions ? fixed_sessions : 2 + data[2] % 2;
    int kase = data[3] % sc->ncases;
    /* with a fault, two more bytes say where it fires: session and commit outcome, site */
    pgr_fault_at at = { .fault = fault, .session = -1 };
    size_t head = 4;
    if (fault.kind != PGR_FAULT_NONE) {
        if (size < 6) return -1;
        at.session = data[4] % sessions;
        at.applies = data[4] >> 7;
        at.site = data[5] % 16;
        head = 6;
    }
    if (skip_repeats && seen_before(pgr_bytes_hash(data, size))) {
        skipped++;
        return 0;
    }
    inputs_run++;
    char path[4300], err[PGR_ERRLEN];
    snprintf(path, sizeof path, "%s/fuzz-%s-%s-%s.schedule", save_dir, sc->name, v->name, pgr_isolation_name(iso));
    static pgr_fuzz_outcome out;
    pgr_fuzz_input in = { .sc = sc, .v = v, .iso = iso, .sessions = sessions, .kase = kase, .fault = &at,
                          .choices = data + head, .nchoices = size - head, .bytes = data, .nbytes = size,
                          .save_path = path };
    if (pgr_fuzz_one(fuzzer, &in, &out, err, sizeof err) != 0) {
        static int warned;
        if (!warned++) fprintf(stderr, "pgrace fuzz: harness error, inputs rejected, not crashes: %s\n", err);
        return -1;
    }
    if (!no_signal)
        for (int i = 0; i < out.nsignal; i++) {
            uint8_t *c = &pgr_interleaving_counters[out.signal[i] % sizeof pgr_interleaving_counters];
            if (*c < 255) (*c)++;
        }
    if (out.violated) violation(&out);
    return 0;
}
