/*
 * output.c — the human summary (stdout) and the JSON results file.
 * JSON goes through jansson (Debian's libjansson-dev): escaping SQL text, error messages
 * and arbitrary parameters correctly is exactly what a well-kept library is for.
 */
#include "runner.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

static long long status_total(const pgr_tally *t)
{
    long long n = 0;
    for (int i = 0; i < 600; i++) n += t->statuses[i];
    return n;
}

static void print_trace(FILE *f, const pgr_result *r, const pgr_counterexample *c)
{
    fprintf(f, "    counterexample: trial %lld (%s): %s\n", c->trial_no,
            r->sc->cases[c->kase].name, c->why);
    /* steps of all sessions in the order they were sent */
    int order_s[PGR_MAX_SESSIONS * PGR_MAX_STEPS], order_k[PGR_MAX_SESSIONS * PGR_MAX_STEPS];
    int m = pgr_cex_order(c, order_s, order_k);
    for (int i = 0; i < m; i++) {
        const pgr_step *st = PGR_TRACE_AT(c->steps, order_s[i], order_k[i]);
        bool fault = c->fault_step[order_s[i]] == order_k[i];
        fprintf(f, "      S%-2d %-20s rows=%-3ld %s%s%s%s%s\n", order_s[i] + 1, st->label, st->rows,
                st->sqlstate, st->constraint[0] ? " " : "", st->constraint, fault ? "  <- FAULT: " : "",
                fault ? st->message : "");
    }
    fprintf(f, "      answers:");
    for (int s = 0; s < c->nsessions; s++) {
        fprintf(f, " S%d=%d", s + 1, c->resp[s].status);
        if (c->resp[s].id >= 0) fprintf(f, "(id %lld)", c->resp[s].id);
        if (c->fault_retried[s]) {
            if (c->fault_status[s]) fprintf(f, "[retry; the faulted attempt answered %d]", c->fault_status[s]);
            else fprintf(f, "[retry; the faulted attempt's answer was lost]");
        }
    }
    fprintf(f, "\n");
}

/* Violations per invariant, then the status histogram (the line is left open). */
static void print_invariants_statuses(FILE *f, const pgr_result *r)
{
    for (int i = 0; i < r->sc->ninvariants; i++)
        fprintf(f, "    %8lld  %s\n", r->tally.inv[i], r->sc->invariants[i]);
    if (r->fault.kind != PGR_FAULT_NONE) {
        fprintf(f, "    %8lld  %s\n", r->tally.retry_failed, PGR_INV_RETRY_NAME);
        if (r->sessions == 1) fprintf(f, "    %8lld  %s\n", r->tally.half_committed, PGR_INV_ATOMIC_NAME);
    }
    fprintf(f, "  statuses:");
    for (int i = 0; i < 600; i++)
        if (r->tally.statuses[i]) fprintf(f, " %d x%lld", i, r->tally.statuses[i]);
}

/* What the fault did in this run (nothing when none was injected). */
static void print_faults(FILE *f, const pgr_result *r)
{
    if (r->fault.kind == PGR_FAULT_NONE) return;
    char name[80];
    pgr_fault_format(&r->fault, name, sizeof name);
    if (r->mode != PGR_MODE_STRESS) name[strcspn(name, "@")] = '\0';   /* explore: every site, no rate */
    const pgr_tally *t = &r->tally;
    fprintf(f, "  fault %s: %lld requests armed, %lld fired, %lld retried by the client", name, t->faults_armed,
            t->faults_fired, t->faults_retried);
    if (r->fault.kind == PGR_FAULT_LOST_COMMIT) fprintf(f, ", %lld indeterminate (commit outcome unknown)", t->faults_indeterminate);
    fprintf(f, "; %lld answer checks not judged (an answer was lost)\n", t->unjudged);
    if (t->faults_armed > 0 && t->faults_fired == 0)
        fprintf(f, "  note: the fault never fired: %s\n", r->fault.kind == PGR_FAULT_ERROR && r->fault.step[0]
                ? "no step of this variant has that label (see the steps in a counterexample or 'pgrace explore')"
                : "no request of this variant reached an eligible step");
}

/* "race", "safe", or for PGR_EITHER what it means. */
static const char *expected_text(const pgr_result *r)
{
    return r->expected == PGR_EITHER ? "race or safe: the race is rare with this few sessions" : pgr_verdict_name(r->expected);
}

/* The server's verdict on the seed's own SQL, where it does not run as written. */
static void print_seed_sql(FILE *f, const pgr_result *r)
{
    for (int i = 0; i < r->nseed_sql; i++) {
        const pgr_seed_sql *q = &r->seed_sql[i];
        if (!q->error[0]) continue;
        bool ddl = strcmp(q->which, "ddl") == 0;
        fprintf(f, "  note: the seed's %s as written fails on PostgreSQL (%s)%s\n", ddl ? "DDL" : pgr_seed_sql_name(q),
                q->error, ddl ? "; ran the closest faithful form" : "");
    }
}

/* A harness error stopped the cell: it has no verdict, only what finished before. */
static void print_error(FILE *f, const pgr_result *r, const char *unit)
{
    fprintf(f, "  error: %s\n  (so no verdict; %lld %s finished, %lld of them violating an invariant)\n", r->error,
            r->trials, unit, r->tally.violated_trials);
}

static void print_explore(FILE *f, pgr_result *r)
{
    bool match = pgr_result_matched(r);
    const pgr_explore_stats *e = &r->ex;
    fprintf(f, "%s/%s  [%s]  %s, %d sessions, %s: %lld schedules%s in %.2f s (%.0f schedules/s)\n",
            r->sc->name, r->v->name, pgr_kind_name(r->v->kind), pgr_isolation_name(r->iso), r->sessions,
            e->strategy, e->schedules, e->complete ? " (the whole space)" : "", r->seconds,
            r->seconds > 0 ? (double)e->schedules / r->seconds : 0.0);
    if (strcmp(e->strategy, "exhaustive") == 0)
        fprintf(f, "  pruned %lld equivalent interleavings (sleep sets)\n", e->pruned);
    if (strcmp(e->strategy, "pct") == 0)
        fprintf(f, "  pct depth %d, k = %d steps: a depth-%d bug is found with probability >= 1/(n*k^(d-1)) = %.3g per schedule\n",
                e->depth, e->max_steps, e->depth, e->pct_bound);
    print_seed_sql(f, r);
    print_faults(f, r);
    if (r->error[0])
        print_error(f, r, "schedules");
    else if (r->verdict == PGR_RACE)
        fprintf(f, "  verdict: RACE in %lld of %lld schedules, first at schedule %lld (expected %s)%s\n",
                r->tally.violated_trials, e->schedules, e->first_violation, expected_text(r), match ? "" : "  <-- MISMATCH");
    else
        fprintf(f, "  verdict: safe, 0 of %lld schedules violated an invariant (expected %s)%s\n", e->schedules,
                expected_text(r), match ? "" : "  <-- MISMATCH");
    if (r->budget_short) fprintf(f, "  short: the run's budget ran out before the whole space was explored\n");
    print_invariants_statuses(f, r);
    fprintf(f, "\n");
    if (e->minimal[0])
        fprintf(f, "  minimal counterexample (%d sessions, %d steps, %d preemptions):\n%s", e->minimal_sessions,
                e->minimal_steps, e->minimal_switches, e->minimal);
    for (int i = 0; i < e->nsaved; i++) fprintf(f, "  saved %s\n", e->saved[i]);
}

void pgr_print_result(FILE *f, pgr_result *r)
{
    if (r->mode == PGR_MODE_EXPLORE) { print_explore(f, r); return; }
    bool match = pgr_result_matched(r);
    fprintf(f, "%s/%s  [%s]  %s, %d sessions, %lld trials in %.2f s (%.0f trials/s, %.0f statements/s)\n",
            r->sc->name, r->v->name, pgr_kind_name(r->v->kind), pgr_isolation_name(r->iso), r->sessions,
            r->trials, r->seconds, r->seconds > 0 ? (double)r->trials / r->seconds : 0.0,
            r->seconds > 0 ? (double)r->statements / r->seconds : 0.0);
    print_seed_sql(f, r);
    if (r->error[0])
        print_error(f, r, "trials");
    else if (r->verdict == PGR_RACE)
        fprintf(f, "  verdict: RACE in %lld of %lld trials (expected %s)%s\n", r->tally.violated_trials, r->trials,
                expected_text(r), match ? "" : "  <-- MISMATCH");
    else
        fprintf(f, "  verdict: safe, 0 of %lld trials violated an invariant (expected %s)%s\n", r->trials,
                expected_text(r), match ? "" : "  <-- MISMATCH");
    if (r->budget_short)
        fprintf(f, "  short: the run's budget ran out after %lld of its %lld trials; the verdict rests on fewer\n",
                r->trials, r->min_trials);
    print_faults(f, r);
    print_invariants_statuses(f, r);
    fprintf(f, "  (%lld answers)\n", status_total(&r->tally));
    for (int i = 0; i < r->tally.nbodies; i++)
        fprintf(f, "  %s %d %s x%lld\n", i == 0 ? "bodies:" : "       ", r->tally.bodies[i].status, r->tally.bodies[i].body,
                r->tally.bodies[i].n);
    if (r->tally.bodies_other) fprintf(f, "          (%lld answers with other bodies)\n", r->tally.bodies_other);
    fprintf(f, "  sqlstates:");
    for (int i = 0; i < r->tally.nsqlstates; i++)
        fprintf(f, " %s x%lld", r->tally.sqlstates[i].code, r->tally.sqlstates[i].n);
    fprintf(f, "\n  latency p50 %.0f us, p99 %.0f us; release skew p50 %.1f us, p99 %.1f us (%s release)\n",
            pgr_dist_pct(&r->latency, 50), pgr_dist_pct(&r->latency, 99),
            pgr_dist_pct(&r->skew, 50), pgr_dist_pct(&r->skew, 99), r->release ? r->release : "normal");
    if (r->http_spread.n)
        fprintf(f, "  HTTP last-byte spread p50 %.1f us, p99 %.1f us (the requests' final bytes, sent side; the "
                "release skew above is their first statements' arrival at the proxy)\n",
                pgr_dist_pct(&r->http_spread, 50), pgr_dist_pct(&r->http_spread, 99));
    if (r->tally.ncex) print_trace(f, r, &r->tally.cex[0]);
}

static json_t *dist_json(pgr_dist *d)
{
    return json_pack("{s:f, s:f, s:f, s:I}", "p50", pgr_dist_pct(d, 50), "p99", pgr_dist_pct(d, 99),
                     "max", d->n ? pgr_dist_pct(d, 100) : 0.0, "samples", (json_int_t)d->n);
}

static json_t *cex_json(const pgr_result *r, const pgr_counterexample *c)
{
    json_t *steps = json_array(), *answers = json_array();
    int64_t t0 = INT64_MAX;
    for (int s = 0; s < c->nsessions; s++)
        if (c->nsteps[s] > 0 && PGR_TRACE_AT(c->steps, s, 0)->t_send_ns < t0)
            t0 = PGR_TRACE_AT(c->steps, s, 0)->t_send_ns;
    for (int s = 0; s < c->nsessions; s++) {
        int n = c->nsteps[s] < PGR_MAX_STEPS ? c->nsteps[s] : PGR_MAX_STEPS;
        for (int k = 0; k < n; k++) {
            const pgr_step *st = PGR_TRACE_AT(c->steps, s, k);
            json_array_append_new(steps, json_pack("{s:i, s:s, s:s, s:s, s:s, s:s, s:I, s:i, s:f, s:f, s:s, s:b}",
                "session", s + 1, "label", st->label, "sql", st->sql, "params", st->params,
                "sqlstate", st->sqlstate, "constraint", st->constraint, "rows", (json_int_t)st->rows,
                "attempt", st->attempt, "t_send_us", (double)(st->t_send_ns - t0) / 1000.0,
                "t_done_us", (double)(st->t_done_ns - t0) / 1000.0, "values", st->values,
                "waited", st->waited));
            json_object_set_new(json_array_get(steps, json_array_size(steps) - 1), "message", json_string(st->message));
        }
        json_t *a = json_pack("{s:i, s:i}", "session", s + 1, "status", c->resp[s].status);
        if (c->fault_step[s] >= 0)
            json_object_set_new(a, "fault", json_pack("{s:i, s:i, s:b}", "step", c->fault_step[s] + 1,
                                                      "faulted_status", c->fault_status[s], "retried", c->fault_retried[s]));
        if (c->resp[s].id >= 0) json_object_set_new(a, "id", json_integer(c->resp[s].id));
        if (c->resp[s].sqlstate[0]) json_object_set_new(a, "sqlstate", json_string(c->resp[s].sqlstate));
        json_array_append_new(answers, a);
    }
    return json_pack("{s:I, s:s, s:s, s:s, s:o, s:o}", "trial", (json_int_t)c->trial_no,
                     "case", r->sc->cases[c->kase].name,
                     "invariant", pgr_invariant_name(r->sc, c->invariant),
                     "explanation", c->why, "steps", steps, "answers", answers);
}

static json_t *result_json(pgr_result *r)
{
    json_t *inv = json_object(), *st = json_object(), *ss = json_object(), *cases = json_object(),
           *cex = json_array();
    for (int i = 0; i < r->sc->ninvariants; i++)
        json_object_set_new(inv, r->sc->invariants[i], json_integer(r->tally.inv[i]));
    for (int i = 0; i < 600; i++)
        if (r->tally.statuses[i]) {
            char k[8];
            snprintf(k, sizeof k, "%d", i);
            json_object_set_new(st, k, json_integer(r->tally.statuses[i]));
        }
    for (int i = 0; i < r->tally.nsqlstates; i++)
        json_object_set_new(ss, r->tally.sqlstates[i].code, json_integer(r->tally.sqlstates[i].n));
    for (int i = 0; i < r->sc->ncases; i++)
        json_object_set_new(cases, r->sc->cases[i].name, json_integer(r->tally.case_trials[i]));
    for (int i = 0; i < r->tally.ncex; i++) json_array_append_new(cex, cex_json(r, &r->tally.cex[i]));
    json_t *o = json_pack("{s:s, s:s, s:s, s:s?, s:s, s:i, s:s, s:I, s:I, s:f, s:I, s:f, s:f, s:s, s:s, s:b}",
        "scenario", r->sc->name, "variant", r->v->name, "kind", pgr_kind_name(r->v->kind),
        "seed", r->sc->seed, "isolation", pgr_isolation_name(r->iso), "sessions", r->sessions,
        "mode", pgr_mode_name(r->mode), "trials", (json_int_t)r->trials, "violations", (json_int_t)r->tally.violated_trials,
        "seconds", r->seconds, "statements", (json_int_t)r->statements,
        "trials_per_s", r->seconds > 0 ? (double)r->trials / r->seconds : 0.0,
        "statements_per_s", r->seconds > 0 ? (double)r->statements / r->seconds : 0.0,
        "verdict", r->error[0] ? "error" : pgr_verdict_name(r->verdict), "expected", pgr_verdict_name(r->expected),
        "matched", pgr_result_matched(r));
    if (r->fault.kind != PGR_FAULT_NONE) json_object_set_new(inv, PGR_INV_RETRY_NAME, json_integer(r->tally.retry_failed));
    if (r->fault.kind != PGR_FAULT_NONE && r->sessions == 1)
        json_object_set_new(inv, PGR_INV_ATOMIC_NAME, json_integer(r->tally.half_committed));
    json_object_set_new(o, "invariants", inv);
    json_t *fault = json_null();
    if (r->fault.kind != PGR_FAULT_NONE) {
        const pgr_tally *t = &r->tally;
        fault = json_pack("{s:s, s:s, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "kind", pgr_fault_name(r->fault.kind),
            "step", r->fault.step, "rate", r->fault.rate, "armed", (json_int_t)t->faults_armed,
            "fired", (json_int_t)t->faults_fired, "retried", (json_int_t)t->faults_retried,
            "indeterminate", (json_int_t)t->faults_indeterminate, "retry_failed", (json_int_t)t->retry_failed,
            "half_committed", (json_int_t)t->half_committed, "unjudged", (json_int_t)t->unjudged);
    }
    json_object_set_new(o, "fault", fault);
    json_object_set_new(o, "statuses", st);
    json_object_set_new(o, "sqlstates", ss);
    json_object_set_new(o, "cases", cases);
    json_object_set_new(o, "latency_us", dist_json(&r->latency));
    json_object_set_new(o, "release_skew_us", dist_json(&r->skew));
    if (r->http_spread.n) json_object_set_new(o, "http_spread_us", dist_json(&r->http_spread));
    if (r->tally.nbodies) {
        json_t *bodies = json_array();
        for (int i = 0; i < r->tally.nbodies; i++)
            json_array_append_new(bodies, json_pack("{s:i, s:s, s:I}", "status", r->tally.bodies[i].status, "body",
                                                    r->tally.bodies[i].body, "answers", (json_int_t)r->tally.bodies[i].n));
        json_object_set_new(o, "bodies", bodies);
    }
    json_object_set_new(o, "release", json_string(r->release ? r->release : "normal"));
    json_object_set_new(o, "counterexamples", cex);
    if (r->mode == PGR_MODE_EXPLORE) {
        const pgr_explore_stats *e = &r->ex;
        json_t *saved = json_array();
        for (int i = 0; i < e->nsaved; i++) json_array_append_new(saved, json_string(e->saved[i]));
        json_object_set_new(o, "explore", json_pack("{s:s, s:I, s:I, s:I, s:b, s:I, s:i, s:i, s:f, s:o, s:s}",
            "strategy", e->strategy, "schedules", (json_int_t)e->schedules, "pruned", (json_int_t)e->pruned,
            "first_violation", (json_int_t)e->first_violation, "complete", e->complete,
            "seed", (json_int_t)e->seed, "depth", e->depth, "max_steps", e->max_steps,
            "pct_bound", e->pct_bound, "saved", saved, "minimal", e->minimal));
        json_object_set_new(json_object_get(o, "explore"), "minimal_size",
            json_pack("{s:i, s:i, s:i}", "sessions", e->minimal_sessions, "steps", e->minimal_steps,
                      "preemptions", e->minimal_switches));
        json_object_set_new(o, "schedules", json_integer(e->schedules));
    }
    json_t *seed_sql = json_array();
    const char *first_error = NULL;
    for (int i = 0; i < r->nseed_sql; i++) {
        const pgr_seed_sql *q = &r->seed_sql[i];
        json_array_append_new(seed_sql, json_pack("{s:s, s:s, s:o, s:o}", "which", q->which, "sql", q->sql,
            "sqlstate", q->error[0] ? json_stringn(q->error, strcspn(q->error, " ")) : json_null(),
            "error", q->error[0] ? json_string(q->error) : json_null()));
        if (q->error[0] && !first_error) first_error = q->error;
    }
    json_object_set_new(o, "seed_sql", seed_sql);
    json_object_set_new(o, "seed_sql_error", first_error ? json_string(first_error) : json_null());
    json_object_set_new(o, "budget_short", json_boolean(r->budget_short));
    json_object_set_new(o, "min_trials", json_integer(r->min_trials));
    json_object_set_new(o, "error", r->error[0] ? json_string(r->error) : json_null());
    return o;
}

int pgr_write_json(const char *path, const char *server, pgr_result *rs, int n,
                   const char *error, char *err, size_t errlen)
{
    json_t *results = json_array();
    for (int i = 0; i < n; i++) json_array_append_new(results, result_json(&rs[i]));
    return pgr_write_json_document(path, server, "results", results, error, err, errlen);
}

int pgr_write_json_document(const char *path, const char *server, const char *key, struct json_t *items,
                            const char *error, char *err, size_t errlen)
{
    json_t *top = json_pack("{s:s, s:s, s:o}", "pgrace_version", PGR_VERSION, "server", server ? server : "",
                            key, items);
    json_object_set_new(top, "error", error && *error ? json_string(error) : json_null());
    errno = 0;
    int rc = json_dump_file(top, path, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    int e = errno;
    json_decref(top);
    if (rc != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, e ? strerror(e) : "write failed");
        return -1;
    }
    return 0;
}
