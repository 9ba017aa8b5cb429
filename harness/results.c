/*
 * results.c — what a run found: tallies, distributions, counterexamples and the verdict's
 * inputs. Filled by every mode (pgr_account_trial after each trial, pgr_violation from the
 * scenarios' checks), read by the output, the reports and ci.
 */
#include "runner.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const char *pgr_mode_name(pgr_mode m)
{
    static const char *const n[PGR_NMODES] = { "stress", "explore", "replay", "fuzz", "payloads" };
    return m >= 0 && m < PGR_NMODES ? n[m] : "?";
}

const char *pgr_seed_sql_name(const pgr_seed_sql *q)
{
    if (strcmp(q->which, "ddl") == 0) return "DDL";
    if (strcmp(q->which, "rollback") == 0) return "rollback plan";
    return q->which;
}

void pgr_result_init(pgr_result *res, const pgr_scenario *sc, const pgr_variant *v,
                     pgr_isolation iso, int sessions, pgr_mode mode)
{
    memset(res, 0, sizeof *res);
    res->sc = sc;
    res->v = v;
    res->iso = iso;
    res->sessions = sessions;
    res->mode = mode;
    res->expected = v->expect[iso];
    /* a retry loop that absorbs a bounded number of concurrent losers races only from N on */
    if (res->expected == PGR_RACE && sessions < v->race_from[iso]) res->expected = PGR_SAFE;
    /* a race that is real but rare with few sessions: a stress cell may or may not meet it
     * (exploration is not a matter of chance: it keeps the expectation) */
    if (res->expected == PGR_RACE && mode == PGR_MODE_STRESS && sessions < v->race_rare_below[iso])
        res->expected = PGR_EITHER;
}

bool pgr_result_matched(const pgr_result *r)
{
    return !r->error[0] && (r->expected == PGR_EITHER || r->verdict == r->expected);
}

static void dist_add(pgr_dist *d, double v)
{
    if (d->n == d->cap) {
        long cap = d->cap ? d->cap * 2 : 4096;
        double *nv = realloc(d->v, (size_t)cap * sizeof *nv);
        if (!nv) return;
        d->v = nv;
        d->cap = cap;
    }
    d->v[d->n++] = v;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double pgr_dist_pct(pgr_dist *d, double p)
{
    if (d->n == 0) return 0;
    qsort(d->v, (size_t)d->n, sizeof *d->v, cmp_double);
    long i = (long)(p / 100.0 * (double)(d->n - 1) + 0.5);
    if (i >= d->n) i = d->n - 1;
    return d->v[i];
}

void pgr_tally_sqlstate(pgr_tally *t, const char *code, long long n)
{
    for (int i = 0; i < t->nsqlstates; i++)
        if (strcmp(t->sqlstates[i].code, code) == 0) { t->sqlstates[i].n += n; return; }
    if (t->nsqlstates == PGR_MAX_SQLSTATES) return;
    snprintf(t->sqlstates[t->nsqlstates].code, 6, "%s", code);
    t->sqlstates[t->nsqlstates++].n = n;
}

void pgr_result_free(pgr_result *r)
{
    for (int i = 0; i < r->tally.ncex; i++) free(r->tally.cex[i].steps);
    r->tally.ncex = 0;
    free(r->latency.v);
    free(r->skew.v);
    free(r->http_spread.v);
    r->latency.v = r->skew.v = r->http_spread.v = NULL;
}

static int cex_from_trial(pgr_counterexample *c, const pgr_trial *tr)
{
    size_t sz = (size_t)tr->nsessions * PGR_MAX_STEPS * sizeof(pgr_step);
    c->steps = malloc(sz);
    if (!c->steps) return -1;
    memcpy(c->steps, tr->trace, sz);
    c->trial_no = tr->trial_no;
    c->kase = tr->kase;
    c->invariant = tr->first_invariant;
    c->nsessions = tr->nsessions;
    memcpy(c->resp, tr->resp, sizeof c->resp);
    memcpy(c->nsteps, tr->nsteps, sizeof c->nsteps);
    memcpy(c->fault_step, tr->fault_step, sizeof c->fault_step);
    memcpy(c->fault_status, tr->fault_status, sizeof c->fault_status);
    memcpy(c->fault_retried, tr->fault_retried, sizeof c->fault_retried);
    snprintf(c->why, sizeof c->why, "%s", tr->why);
    return 0;
}

int pgr_cex_order(const pgr_counterexample *c, int *session, int *step)
{
    int idx[PGR_MAX_SESSIONS] = { 0 }, m = 0;
    for (;;) {
        int best = -1;
        int64_t bt = 0;
        for (int s = 0; s < c->nsessions; s++) {
            int n = c->nsteps[s] < PGR_MAX_STEPS ? c->nsteps[s] : PGR_MAX_STEPS;
            if (idx[s] >= n) continue;
            const pgr_step *st = PGR_TRACE_AT(c->steps, s, idx[s]);
            if (best < 0 || st->t_send_ns < bt) { best = s; bt = st->t_send_ns; }
        }
        if (best < 0) return m;
        session[m] = best;
        step[m++] = idx[best]++;
    }
}

void pgr_result_lead_counterexample(pgr_result *res, const pgr_trial *t)
{
    pgr_tally *ty = &res->tally;
    if (ty->ncex == PGR_MAX_CEX) free(ty->cex[--ty->ncex].steps);
    memmove(&ty->cex[1], &ty->cex[0], (size_t)ty->ncex * sizeof ty->cex[0]);
    if (cex_from_trial(&ty->cex[0], t) != 0) {
        memmove(&ty->cex[0], &ty->cex[1], (size_t)ty->ncex * sizeof ty->cex[0]);
        return;
    }
    ty->ncex++;
}

const char *pgr_invariant_name(const pgr_scenario *sc, int inv)
{
    if (inv == PGR_INV_RETRY) return PGR_INV_RETRY_NAME;
    if (inv == PGR_INV_ATOMIC) return PGR_INV_ATOMIC_NAME;
    return inv >= 0 && inv < sc->ninvariants ? sc->invariants[inv] : "";
}

void pgr_violation(pgr_batch *b, const pgr_trial *tc, int inv, const char *fmt, ...)
{
    pgr_tally *t = b->tally;
    pgr_trial *tr = (pgr_trial *)tc;
    if (inv >= 0 && b->sc && (b->sc->answer_invariants >> inv & 1u)) {
        bool lost = false;
        for (int j = 0; j < tr->nsessions; j++) lost |= tr->fault_retried[j];
        if (lost) { t->unjudged++; return; }       /* an answer never arrived: not judged */
    }
    if (inv >= 0 && inv < PGR_MAX_INV) t->inv[inv]++;
    if (inv == PGR_INV_RETRY) t->retry_failed++;
    if (inv == PGR_INV_ATOMIC) t->half_committed++;
    if (tr->violated) return;
    tr->violated = true;
    tr->first_invariant = inv;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tr->why, sizeof tr->why, fmt, ap);
    va_end(ap);
    t->violated_trials++;
    /* Keep examples of distinct invariants, the scenario's first (its race) first: a later
     * trial replaces the example of a less important invariant, or one already shown. */
    int slot = t->ncex < PGR_MAX_CEX ? t->ncex : -1;
    bool have = false;
    for (int i = 0; i < t->ncex; i++) have |= t->cex[i].invariant == inv;
    if (slot < 0) {
        int worst = -1;
        for (int i = 0; i < t->ncex; i++) {
            bool dup_inv = false;
            for (int j = 0; j < i; j++) dup_inv |= t->cex[j].invariant == t->cex[i].invariant;
            if (!have && (dup_inv || t->cex[i].invariant > inv) && (worst < 0 || t->cex[i].invariant >= t->cex[worst].invariant))
                worst = i;
        }
        if (worst < 0) return;
        free(t->cex[worst].steps);
        slot = worst;
    } else {
        t->ncex++;
    }
    if (cex_from_trial(&t->cex[slot], tr) != 0) {      /* out of memory: drop the slot */
        t->cex[slot] = t->cex[--t->ncex];
        return;
    }
    for (int i = slot; i > 0 && t->cex[i].invariant < t->cex[i - 1].invariant; i--) {
        pgr_counterexample tmp = t->cex[i];
        t->cex[i] = t->cex[i - 1];
        t->cex[i - 1] = tmp;
    }
}

void pgr_account_trial(pgr_result *res, const pgr_trial *t)
{
    int64_t lo = INT64_MAX, hi = INT64_MIN, hlo = INT64_MAX, hhi = INT64_MIN;
    for (int i = 0; i < t->nsessions; i++) {
        if (t->http_sent_ns[i]) {
            if (t->http_sent_ns[i] < hlo) hlo = t->http_sent_ns[i];
            if (t->http_sent_ns[i] > hhi) hhi = t->http_sent_ns[i];
        }
        int st = t->resp[i].status;
        if (st >= 0 && st < 600) res->tally.statuses[st]++;
        dist_add(&res->latency, (double)t->latency_ns[i] / 1000.0);
        if (t->first_send_ns[i]) {
            if (t->first_send_ns[i] < lo) lo = t->first_send_ns[i];
            if (t->first_send_ns[i] > hi) hi = t->first_send_ns[i];
        }
        int n = t->nsteps[i] < PGR_MAX_STEPS ? t->nsteps[i] : PGR_MAX_STEPS;
        for (int k = 0; k < n; k++)
            pgr_tally_sqlstate(&res->tally, PGR_TRACE_AT(t->trace, i, k)->sqlstate, 1);
    }
    if (hi >= lo && t->nsessions > 1) dist_add(&res->skew, (double)(hi - lo) / 1000.0);
    if (hhi >= hlo && t->nsessions > 1) dist_add(&res->http_spread, (double)(hhi - hlo) / 1000.0);
    for (int i = 0; i < t->nsessions; i++) {
        if (t->fault_site[i] >= 0) res->tally.faults_armed++;
        if (t->fault_step[i] < 0) continue;
        res->tally.faults_fired++;
        if (res->fault.kind == PGR_FAULT_LOST_COMMIT) res->tally.faults_indeterminate++;
        if (t->fault_retried[i]) res->tally.faults_retried++;
    }
    res->tally.case_trials[t->kase]++;
    for (int i = 0; i < t->nsessions; i++) {
        const pgr_response *a = &t->resp[i];
        if (!a->body[0]) continue;
        pgr_tally *ty = &res->tally;
        int k = 0;
        while (k < ty->nbodies && !(ty->bodies[k].status == a->status && strcmp(ty->bodies[k].body, a->body) == 0)) k++;
        if (k == ty->nbodies) {
            if (k == PGR_MAX_BODIES) { ty->bodies_other++; continue; }
            ty->nbodies++;
            ty->bodies[k].status = a->status;
            snprintf(ty->bodies[k].body, sizeof ty->bodies[k].body, "%s", a->body);
        }
        ty->bodies[k].n++;
    }
}
