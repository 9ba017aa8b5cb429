/*
 * report.c — the reports a person and a CI job read, rendered from a run's results:
 *   index.html   stands alone (no network, inline CSS and SVG): verdict matrix, the seed's
 *                claims held or broken with numbers, status-code bars, latency, release
 *                skew, and every counterexample as a session-by-session diagram;
 *   junit.xml    one testcase per scenario/variant/isolation/sessions/mode; a verdict that
 *                does not match its expectation is a failure carrying the trace;
 *   summary.md   sized for a CI step summary.
 */
#include "model_table.h"
#include "report.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default:
            if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t') fputc('?', f);
            else fputc(*s, f);
        }
    }
}

static bool matched(const pgr_result *r) { return pgr_result_matched(r); }
/* A harness error stopped the cell: it has no verdict, and is reported as the error. */
static bool errored(const pgr_result *r) { return r->error[0] != '\0'; }
static bool mismatched(const pgr_result *r) { return !errored(r) && !pgr_result_matched(r); }
static bool faulted(const pgr_result *r) { return r->fault.kind != PGR_FAULT_NONE; }
/* A stress cell of the concurrency matrix (the fault matrix has its own section). */
static bool is_stress(const pgr_result *r) { return r->mode == PGR_MODE_STRESS && !faulted(r); }

/* "invite_claim/proposed" or, under a fault, "invite_claim/proposed under kill-backend@0.5" */
static void cell_name(char *out, size_t len, const pgr_result *r)
{
    char fault[80] = "";
    if (faulted(r)) pgr_fault_format(&r->fault, fault, sizeof fault);
    snprintf(out, len, "%s/%s%s%s", r->sc->name, r->v->name, fault[0] ? " under " : "", fault);
}

static const char *status_color(int code)
{
    if (code == 201) return "#2e7d32";
    if (code >= 200 && code < 300) return "#66bb6a";
    if (code == 409) return "#ef6c00";
    if (code >= 400 && code < 500) return "#ffb74d";
    if (code >= 500) return "#c62828";
    return "#9e9e9e";
}

/* The scenarios that have results, in the order they first appear (the run's order). */
static int scenarios_of(const pgr_result *rs, int n, const pgr_scenario **out)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        bool seen = false;
        for (int k = 0; k < m; k++) seen |= out[k] == rs[i].sc;
        if (!seen) out[m++] = rs[i].sc;
    }
    return m;
}

/* A column of the verdict matrix (within one isolation level): stress at a session count, or
 * explore at one. Taken from the results, never fixed here. */
typedef struct matrix_col { pgr_mode mode; int sessions; } matrix_col;

static int matrix_cols(const pgr_result *rs, int n, matrix_col *cols, int cap)
{
    int m = 0;
    for (int pass = 0; pass < 2; pass++)                /* stress columns first, then explore */
        for (int i = 0; i < n; i++) {
            const pgr_result *r = &rs[i];
            pgr_mode want = pass == 0 ? PGR_MODE_STRESS : PGR_MODE_EXPLORE;
            if (r->mode != want || faulted(r)) continue;
            bool seen = false;
            for (int k = 0; k < m; k++) seen |= cols[k].mode == r->mode && cols[k].sessions == r->sessions;
            if (seen || m == cap) continue;
            int k = m++;                                /* sorted by sessions within a mode */
            while (k > 0 && cols[k - 1].mode == want && cols[k - 1].sessions > r->sessions) { cols[k] = cols[k - 1]; k--; }
            cols[k] = (matrix_col){ r->mode, r->sessions };
        }
    return m;
}

static bool in_col(const pgr_result *r, const matrix_col *c)
{
    return r->mode == c->mode && r->sessions == c->sessions && !faulted(r);
}

/* " <span class=k>seed 001</span>" for a seed's scenario; nothing for a team's own. */
static void seed_tag(FILE *f, const pgr_scenario *sc)
{
    if (sc->seed && *sc->seed) fprintf(f, " <span class=k>seed %s</span>", sc->seed);
}

/* The seed's own SQL that the variants ran as written (in a savepoint, rolled back), and
 * the server's verdict on each: the first result of each variant that has them. */
static void seed_sql_section(FILE *f, const pgr_scenario *sc, pgr_result *rs, int n)
{
    bool opened = false;
    for (int j = 0; j < sc->nvariants; j++) {
        const pgr_result *r = NULL;
        for (int i = 0; i < n && !r; i++)
            if (rs[i].v == &sc->variants[j] && rs[i].nseed_sql) r = &rs[i];
        if (!r) continue;
        if (!opened) {
            fputs("<h3>The seed's SQL, run as written</h3><ul class=seedsql>\n", f);
            opened = true;
        }
        for (int k = 0; k < r->nseed_sql; k++) {
            const pgr_seed_sql *q = &r->seed_sql[k];
            bool ddl = strcmp(q->which, "ddl") == 0;
            fprintf(f, "<li class=%s><b>%s</b> %s: the seed's %s ", q->error[0] ? "broken" : "held",
                    q->error[0] ? "FAILS" : "RUNS", sc->variants[j].name, pgr_seed_sql_name(q));
            if (q->error[0]) {
                fputs("is rejected by PostgreSQL: <code>", f);
                esc(f, q->error);
                fputs(ddl ? "</code>; the variant runs the closest faithful form" : "</code>", f);
            } else {
                fputs("runs on PostgreSQL as written", f);
            }
            fputs("<pre>", f);
            esc(f, q->sql);
            fputs("</pre></li>\n", f);
        }
    }
    if (opened) fputs("</ul>\n", f);
}

/* Claim evaluation: violations of the claim's invariant by its variant over every cell. */
typedef struct claim_tally { long long violations, trials; int cells, cells_broken; } claim_tally;

static claim_tally tally_claim(const pgr_scenario *sc, const pgr_claim *c, pgr_result *rs, int n)
{
    claim_tally t = { 0, 0, 0, 0 };
    for (int i = 0; i < n; i++) {
        if (rs[i].sc != sc || strcmp(rs[i].v->name, c->variant) != 0 || faulted(&rs[i])) continue;
        t.cells++;
        t.trials += rs[i].trials;
        t.violations += rs[i].tally.inv[c->invariant];
        t.cells_broken += rs[i].tally.inv[c->invariant] > 0;
    }
    return t;
}

/* The counterexample to draw for a variant: the explorer's minimal one if any, else stress's. */
static const pgr_result *cex_source(const pgr_variant *v, pgr_result *rs, int n)
{
    const pgr_result *best = NULL;
    for (int i = 0; i < n; i++) {
        if (rs[i].v != v || rs[i].tally.ncex == 0 || faulted(&rs[i])) continue;
        if (rs[i].mode == PGR_MODE_EXPLORE) return &rs[i];
        if (!best) best = &rs[i];
    }
    return best;
}

/* A session-by-session diagram: one lane per session, one row per statement in the order
 * they ran; lock waits hatched, errors red, each session's answer at the bottom. */
static void swimlane(FILE *f, const pgr_counterexample *c)
{
    int order_s[PGR_MAX_SESSIONS * PGR_MAX_STEPS], order_k[PGR_MAX_SESSIONS * PGR_MAX_STEPS];
    int m = pgr_cex_order(c, order_s, order_k);
    int lanes = c->nsessions > 8 ? 8 : c->nsessions;
    int lw = lanes == 1 ? 460 : 250, rh = 30, top = 30, w = 40 + lanes * lw, h = top + (m + 1) * rh + 20;
    fprintf(f, "<svg class=lane width=%d height=%d viewBox='0 0 %d %d' role=img>\n", w, h, w, h);
    fprintf(f, "<defs><pattern id=hatch width=6 height=6 patternUnits=userSpaceOnUse patternTransform='rotate(45)'>"
               "<line x1='0' y1='0' x2='0' y2='6' stroke='#f9a825' stroke-width='3'/></pattern></defs>\n");
    for (int s = 0; s < lanes; s++) {
        int x = 40 + s * lw;
        fprintf(f, "<text x=%d y=18 class=lh>S%d</text><line x1='%d' y1='%d' x2='%d' y2='%d' class='ll'/>\n",
                x + lw / 2 - 8, s + 1, x + lw / 2, top, x + lw / 2, h - 10);
    }
    for (int i = 0; i < m; i++) {
        int s = order_s[i];
        if (s >= lanes) continue;
        const pgr_step *st = PGR_TRACE_AT(c->steps, s, order_k[i]);
        int x = 40 + s * lw + 8, y = top + i * rh + 4;
        bool err = strcmp(st->sqlstate, "00000") != 0, fault = c->fault_step[s] == order_k[i];
        fprintf(f, "<g><title>");
        esc(f, st->sql);
        if (st->params[0]) { fputs(" -- params: ", f); esc(f, st->params); }
        if (st->values[0]) { fputs(" -- first row: ", f); esc(f, st->values); }
        if (st->message[0]) { fputs(" -- ", f); esc(f, st->message); }
        fprintf(f, "</title><rect x=%d y=%d width=%d height=%d rx=4 class='st%s'%s/>", x, y, lw - 16, rh - 6,
                err ? " err" : "", st->waited ? " fill='url(#hatch)'" : "");
        fprintf(f, "<text x=%d y=%d class=sl>%d. ", x + 6, y + 16, i + 1);
        esc(f, st->label);
        fprintf(f, " rows=%ld", st->rows);
        if (err) { fputc(' ', f); esc(f, st->sqlstate); }
        if (st->waited) fputs(" (waited)", f);
        if (fault) fputs(" &#9889; FAULT", f);
        fprintf(f, "</text></g>\n");
    }
    int y = top + m * rh + 18;
    for (int s = 0; s < lanes; s++) {
        fprintf(f, "<text x=%d y=%d class=ans>answer %d", 40 + s * lw + 8, y, c->resp[s].status);
        if (c->resp[s].id >= 0) fprintf(f, " (id %lld)", c->resp[s].id);
        if (c->fault_retried[s]) fputs(c->fault_status[s] ? " to the retry" : " to the retry (1st answer lost)", f);
        fprintf(f, "</text>\n");
    }
    fprintf(f, "</svg>\n");
}

static void status_bars(FILE *f, const pgr_scenario *sc, pgr_result *rs, int n)
{
    int rows = 0;
    for (int j = 0; j < sc->nvariants; j++) rows++;
    int w = 760, rh = 34, h = rows * rh + 40;
    fprintf(f, "<svg width=%d height=%d viewBox='0 0 %d %d' role=img><text x=0 y=12 class=cap>"
               "answers of all stress cells, by status</text>\n", w, h, w, h);
    bool used[600] = { false };
    for (int j = 0; j < sc->nvariants; j++) {
        long long st[600] = { 0 }, total = 0;
        for (int i = 0; i < n; i++)
            if (rs[i].v == &sc->variants[j] && is_stress(&rs[i]))
                for (int k = 0; k < 600; k++) { st[k] += rs[i].tally.statuses[k]; total += rs[i].tally.statuses[k]; }
        int y = 22 + j * rh;
        fprintf(f, "<text x=0 y=%d class=bl>", y + 15);
        esc(f, sc->variants[j].name);
        fprintf(f, "</text>\n");
        double x = 110, bw = w - 120;
        for (int k = 0; k < 600 && total; k++) {
            if (!st[k]) continue;
            used[k] = true;
            double wd = bw * (double)st[k] / (double)total;
            fprintf(f, "<rect x=%.1f y=%d width=%.1f height=22 fill='%s'><title>%d: %lld of %lld answers</title></rect>",
                    x, y, wd, status_color(k), k, st[k], total);
            if (wd > 34) fprintf(f, "<text x=%.1f y=%d class=bt>%d</text>", x + 4, y + 15, k);
            fputc('\n', f);
            x += wd;
        }
    }
    int lx = 110;
    for (int k = 0; k < 600; k++)
        if (used[k]) {
            fprintf(f, "<rect x=%d y=%d width=12 height=12 fill='%s'/><text x=%d y=%d class=cap>%d</text>\n", lx,
                    h - 14, status_color(k), lx + 16, h - 4, k);
            lx += 60;
        }
    fprintf(f, "</svg>\n");
}

static void latency_chart(FILE *f, const pgr_scenario *sc, pgr_result *rs, int n)
{
    /* p50 and p99 latency of each stress cell at the largest session count, per variant and level */
    double maxv = 1;
    int cells = 0;
    for (int i = 0; i < n; i++)
        if (rs[i].sc == sc && is_stress(&rs[i]) && rs[i].latency.n) {
            double p99 = pgr_dist_pct(&rs[i].latency, 99);
            if (p99 > maxv) maxv = p99;
            cells++;
        }
    if (!cells) return;
    int rh = 18, w = 760, h = cells * rh + 40;
    fprintf(f, "<svg width=%d height=%d viewBox='0 0 %d %d' role=img><text x=0 y=12 class=cap>latency per "
               "request, p50 (dark) and p99 (light), microseconds</text>\n", w, h, w, h);
    int row = 0;
    for (int i = 0; i < n; i++) {
        pgr_result *r = &rs[i];
        if (r->sc != sc || !is_stress(r) || !r->latency.n) continue;
        double p50 = pgr_dist_pct(&r->latency, 50), p99 = pgr_dist_pct(&r->latency, 99);
        int y = 22 + row++ * rh;
        double bw = w - 330;
        fprintf(f, "<text x=0 y=%d class=cap>", y + 12);
        esc(f, r->v->name);
        fprintf(f, " %s c=%d</text>", pgr_isolation_name(r->iso), r->sessions);
        fprintf(f, "<rect x=220 y=%d width=%.1f height=14 fill='#90caf9'/><rect x=220 y=%d width=%.1f height=14 "
                   "fill='#1565c0'/><text x=%.1f y=%d class=cap>%.0f / %.0f</text>\n",
                y, bw * p99 / maxv, y, bw * p50 / maxv, 226 + bw * p99 / maxv, y + 12, p50, p99);
    }
    fprintf(f, "</svg>\n");
}

/* Latency histogram per variant: every request of its stress cells, in log2 buckets
 * from 64 us to 65 ms (the first and last bucket take everything below and above). */
static void latency_histogram(FILE *f, const pgr_scenario *sc, pgr_result *rs, int n)
{
    enum { NB = 11 };
    int w = 760, ph = 90, pw = 230, gap = 20;
    fprintf(f, "<svg width=%d height=%d viewBox='0 0 %d %d' role=img><text x=0 y=12 class=cap>latency histogram "
               "per variant (requests of all stress cells; buckets 64 &micro;s .. 65 ms, doubling)</text>\n",
            w, ph + 60, w, ph + 60);
    for (int j = 0; j < sc->nvariants && j < 3; j++) {
        long long b[NB] = { 0 }, maxb = 1, total = 0;
        for (int i = 0; i < n; i++) {
            if (rs[i].v != &sc->variants[j] || rs[i].mode != PGR_MODE_STRESS) continue;
            for (long k = 0; k < rs[i].latency.n; k++) {
                double us = rs[i].latency.v[k];
                int bi = 0;
                while (bi < NB - 1 && us >= 64.0 * (double)(1 << (bi + 1))) bi++;
                b[bi]++;
                total++;
            }
        }
        for (int k = 0; k < NB; k++) if (b[k] > maxb) maxb = b[k];
        int x0 = j * (pw + gap), y0 = 24;
        fprintf(f, "<text x=%d y=%d class=bl>", x0, y0 + 10);
        esc(f, sc->variants[j].name);
        fprintf(f, "</text>\n");
        double bw = (double)pw / NB;
        for (int k = 0; k < NB && total; k++) {
            double hgt = (double)(ph - 10) * (double)b[k] / (double)maxb;
            fprintf(f, "<rect x=%.1f y=%.1f width=%.1f height=%.1f fill='#1565c0'><title>%d-%d us: %lld of %lld</title></rect>",
                    x0 + k * bw, y0 + 14 + (ph - 10) - hgt, bw - 2, hgt, 64 << k, 64 << (k + 1), b[k], total);
        }
        fprintf(f, "\n<text x=%d y=%d class=cap>64&micro;s</text><text x=%d y=%d class=cap>65ms</text>\n", x0,
                y0 + ph + 18, x0 + pw - 34, y0 + ph + 18);
    }
    fprintf(f, "</svg>\n");
}

/* A matrix cell that a harness error stopped: "error", the message on hover. */
static void error_cell(FILE *f, const pgr_result *r)
{
    fputs("<td class=error title='harness error: ", f);
    esc(f, r->error);
    fprintf(f, "'>error<small>%lld finished</small></td>", r->trials);
}

/* The second matrix: which variants survive which fault (one client, the race case, a
 * retry after a lost answer or a 5xx), then a diagram of each breakage. */
static void fault_matrix(FILE *f, pgr_result *rs, int n)
{
    bool any = false;
    for (int i = 0; i < n; i++) any |= faulted(&rs[i]);
    if (!any) return;
    fputs("<h2 id=faults>Fault matrix</h2>\n<p class=k>One client sends the scenario's race-case request; in half of the "
          "trials a fault fires at one of its steps, and a client that got no answer or a 5xx sends the request again, "
          "once. <b>timeout-retry</b>: the step runs, its answer never arrives; <b>kill-backend</b>: "
          "pg_terminate_backend before a step; <b>error-at</b>: a server error instead of a step; <b>lost-commit</b>: "
          "the connection drops around a commit, which may or may not have happened (indeterminate). Judged: the "
          "scenario's invariants on the stored state, the retry's answer, and that a failed request left nothing "
          "behind.</p>\n<table id=faultmatrix><tr><th>scenario / variant</th><th>kind</th>", f);
    for (int k = 1; k < PGR_NFAULTS; k++) fprintf(f, "<th>%s</th>", pgr_fault_name((pgr_fault_kind)k));
    fputs("</tr>\n", f);
    const pgr_scenario *scs[n > 0 ? n : 1];
    int nsc = scenarios_of(rs, n, scs);
    for (int si = 0; si < nsc; si++)
        for (int j = 0; j < scs[si]->nvariants; j++) {
            const pgr_variant *v = &scs[si]->variants[j];
            pgr_result *row[PGR_NFAULTS] = { NULL };
            bool have = false;
            for (int i = 0; i < n; i++)
                if (rs[i].v == v && faulted(&rs[i]) && !row[rs[i].fault.kind]) { row[rs[i].fault.kind] = &rs[i]; have = true; }
            if (!have) continue;
            fprintf(f, "<tr><td class=name>%s / %s</td><td>%s</td>", scs[si]->name, v->name, pgr_kind_name(v->kind));
            for (int k = 1; k < PGR_NFAULTS; k++) {
                pgr_result *r = row[k];
                if (!r) { fputs("<td>&ndash;</td>", f); continue; }
                if (errored(r)) { error_cell(f, r); continue; }
                const char *first = r->tally.ncex ? pgr_invariant_name(r->sc, r->tally.cex[0].invariant) : "";
                fprintf(f, "<td class='%s%s' title='expected %s%s", pgr_verdict_name(r->verdict), matched(r) ? "" : " mismatch",
                        r->expected == PGR_RACE ? "broken" : "survives", first[0] ? "; " : "");
                esc(f, first);
                fprintf(f, "'>%s<small>%lld/%lld", r->verdict == PGR_RACE ? "broken" : "survives",
                        r->tally.violated_trials, r->trials);
                if (r->tally.faults_indeterminate) fprintf(f, " &middot; %lld indeterminate", r->tally.faults_indeterminate);
                if (r->budget_short) fputs(" &middot; <b class=short>short</b>", f);
                fputs("</small></td>", f);
            }
            fputs("</tr>\n", f);
        }
    fputs("</table>\n<details><summary>How each fault breaks a variant (first counterexample of each broken cell)</summary>\n", f);
    for (int i = 0; i < n; i++) {
        pgr_result *r = &rs[i];
        if (!faulted(r) || r->tally.ncex == 0) continue;
        const pgr_counterexample *c = &r->tally.cex[0];
        char name[160];
        cell_name(name, sizeof name, r);
        fputs("<h4>", f);
        esc(f, name);
        fprintf(f, " <span class=k>trial %lld</span></h4>\n<p class=why><b>", c->trial_no);
        esc(f, pgr_invariant_name(r->sc, c->invariant));
        fputs(":</b> ", f);
        esc(f, c->why);
        fputs("</p>\n", f);
        swimlane(f, c);
    }
    fputs("</details>\n", f);
}

/* "120 of its 300 trials" or "not the whole space": how short a cell fell. */
static void short_of(char *out, size_t len, const pgr_result *r)
{
    if (r->min_trials) snprintf(out, len, "%lld of its %lld trials", r->trials, r->min_trials);
    else snprintf(out, len, "%lld schedules, not the whole space", r->trials);
}

/* The cells the run's budget cut short of their minimum, listed under the header. */
static void short_cells_html(FILE *f, const pgr_result *rs, int n)
{
    int nshort = 0;
    for (int i = 0; i < n; i++) nshort += rs[i].budget_short;
    if (!nshort) return;
    fprintf(f, "<details id=short><summary><b id=nshort>%d</b> cell%s got fewer trials than %s minimum: the budget (--budget) "
               "ran out; %s verdict rests on fewer</summary><ul>\n", nshort, nshort == 1 ? "" : "s",
            nshort == 1 ? "its" : "their", nshort == 1 ? "its" : "their");
    for (int i = 0; i < n; i++) {
        if (!rs[i].budget_short) continue;
        char name[160], how[96];
        cell_name(name, sizeof name, &rs[i]);
        short_of(how, sizeof how, &rs[i]);
        fputs("<li>", f);
        esc(f, name);
        fprintf(f, " %s %s c=%d: %s</li>\n", pgr_mode_name(rs[i].mode), pgr_isolation_name(rs[i].iso), rs[i].sessions, how);
    }
    fputs("</ul></details>\n", f);
}

/* The C model against the real stack: a spec's `model` variants beside the C scenario's. */
static void model_section_html(FILE *f, pgr_result *rs, int n)
{
    pgr_model_pair *p = calloc((size_t)(n ? n : 1), sizeof *p);
    int np = p ? pgr_model_pairs(rs, n, p, n) : 0;
    if (np > 0) {
        fputs("<h2 id=model>The C model against the real stack</h2>\n<p class=k>A spec that says <code>model "
              "SCENARIO</code> holds the seed's own code (an application in its own stack, a program); each of its "
              "variants is paired with the C scenario's of the same name, cell by cell. <b>differ</b>: the verdicts "
              "are not the same, and the README says why or the C model is wrong.</p>\n<table>\n<tr><th>real stack"
              "</th><th>mode</th><th>isolation</th><th>sessions</th><th>C model</th><th>real stack</th><th></th></tr>\n", f);
        for (int i = 0; i < np; i++) {
            char m[64], r[64], name[160];
            pgr_model_cell_text(p[i].model, m, sizeof m);
            pgr_model_cell_text(p[i].real, r, sizeof r);
            cell_name(name, sizeof name, p[i].real);
            bool agree = pgr_model_agree(&p[i]);
            fputs("<tr><td>", f);
            esc(f, name);
            fprintf(f, "</td><td>%s</td><td>%s</td><td>%d</td><td>", pgr_mode_name(p[i].real->mode),
                    pgr_isolation_name(p[i].real->iso), p[i].real->sessions);
            esc(f, m);
            fputs("</td><td>", f);
            esc(f, r);
            fprintf(f, "</td><td style='background:%s'>%s</td></tr>\n", agree ? "#d4edda" : "#f8d7da", agree ? "agree" : "<b>differ</b>");
        }
        fputs("</table>\n", f);
    }
    free(p);
}

static int write_html(const char *path, const char *server, pgr_result *rs, int n, const char *error)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int mism = 0, errs = 0;
    for (int i = 0; i < n; i++) { mism += mismatched(&rs[i]); errs += errored(&rs[i]); }
    time_t now = time(NULL);
    char when[64];
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    fputs("<!doctype html>\n<html lang=en><head><meta charset=utf-8><title>pgrace report</title>\n<style>\n"
          "body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}\n"
          "h1{margin:0 0 4px}h2{margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}\n"
          ".meta{color:#666}table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ddd;padding:4px 8px;"
          "text-align:center}th{background:#f5f5f5}td.name{text-align:left;white-space:nowrap}\n"
          "td.race{background:#ffebee;color:#b71c1c;font-weight:600}td.safe{background:#e8f5e9;color:#1b5e20}\n"
          "td.error{background:#eceff1;color:#37474f;font-style:italic}.short{color:#6d4c41}"
          "td.mismatch{outline:3px solid #000;outline-offset:-3px}td small{font-weight:400;color:#555;display:block}\n"
          ".held{color:#1b5e20}.broken{color:#b71c1c}.claims li{margin:6px 0}.k{color:#666;font-size:12px}\n"
          "svg{max-width:100%;height:auto}svg text{font:12px system-ui,sans-serif}.cap{fill:#444}.bl{fill:#222;font-weight:600}.bt{fill:#fff}\n"
          ".lh{font-weight:700}.ll{stroke:#bbb;stroke-dasharray:3 3}.st{fill:#e3f2fd;stroke:#64b5f6}"
          ".st.err{fill:#ffcdd2;stroke:#e57373}.sl{fill:#111}.ans{font-weight:700;fill:#333}\n"
          ".why{background:#fff8e1;border-left:4px solid #ffb300;padding:6px 10px}.err{color:#b71c1c}\n"
          ".seedsql pre{background:#f5f5f5;padding:4px 8px;margin:4px 0;white-space:pre-wrap;color:#222}\n"
          "</style></head><body>\n", f);
    fprintf(f, "<h1>pgrace report</h1><p class=meta>");
    esc(f, server);
    fprintf(f, " &middot; %d cells &middot; <b id=mismatches>%d</b> verdict%s not matching expectation &middot; "
               "<b id=errors>%d</b> harness error%s &middot; %s</p>\n", n, mism, mism == 1 ? "" : "s", errs,
            errs == 1 ? "" : "s", when);
    if (error && *error) { fprintf(f, "<p class=err>Run stopped by a harness error: "); esc(f, error); fprintf(f, "</p>\n"); }
    short_cells_html(f, rs, n);
    if (errs) {
        fputs("<p>Cells a harness error stopped (no verdict):</p><ul id=errorcells>\n", f);
        for (int i = 0; i < n; i++) {
            if (!errored(&rs[i])) continue;
            char name[160];
            cell_name(name, sizeof name, &rs[i]);
            fputs("<li class=err>", f);
            esc(f, name);
            fprintf(f, " %s %s c=%d: error: ", pgr_mode_name(rs[i].mode), pgr_isolation_name(rs[i].iso), rs[i].sessions);
            esc(f, rs[i].error);
            fputs("</li>\n", f);
        }
        fputs("</ul>\n", f);
    }

    /* verdict matrix: rows scenario/variant, columns isolation x (each stress session count,
     * each explore session count), as the results have them */
    const pgr_scenario *scs[n > 0 ? n : 1];
    int nsc = scenarios_of(rs, n, scs);
    matrix_col cols[16];
    int ncols = matrix_cols(rs, n, cols, 16);
    int nexplore = 0;
    for (int c = 0; c < ncols; c++) nexplore += cols[c].mode == PGR_MODE_EXPLORE;
    fputs("<h2>Verdict matrix</h2>\n<p class=k>Each cell: the verdict measured (race: some trial or schedule broke an "
          "invariant). A black frame marks a verdict that does not match the expectation.</p>\n"
          "<table id=matrix><tr><th>scenario / variant</th><th>kind</th>", f);
    static const char *const lv[] = { "read committed", "repeatable read", "serializable" };
    for (int iso = 0; iso < PGR_NISO; iso++) fprintf(f, "<th colspan=%d>%s</th>", ncols, lv[iso]);
    fputs("</tr><tr><th></th><th></th>", f);
    for (int iso = 0; iso < PGR_NISO; iso++)
        for (int c = 0; c < ncols; c++) {
            if (cols[c].mode == PGR_MODE_STRESS) fprintf(f, "<th>%d session%s</th>", cols[c].sessions, cols[c].sessions == 1 ? "" : "s");
            else if (nexplore == 1) fputs("<th>explore</th>", f);
            else fprintf(f, "<th>explore, %d sessions</th>", cols[c].sessions);
        }
    fputs("</tr>\n", f);
    for (int si = 0; si < nsc; si++) {
        const pgr_scenario *sc = scs[si];
        for (int j = 0; j < sc->nvariants; j++) {
            const pgr_variant *v = &sc->variants[j];
            bool any = false;
            for (int i = 0; i < n; i++) any |= rs[i].v == v;
            if (!any) continue;
            fprintf(f, "<tr><td class=name><a href='#%s'>%s</a> / %s</td><td>%s</td>", sc->name, sc->name, v->name,
                    pgr_kind_name(v->kind));
            for (int iso = 0; iso < PGR_NISO; iso++)
                for (int col = 0; col < ncols; col++) {
                    pgr_result *r = NULL;
                    for (int i = 0; i < n && !r; i++)
                        if (rs[i].v == v && (int)rs[i].iso == iso && in_col(&rs[i], &cols[col])) r = &rs[i];
                    if (!r) { fputs("<td>&ndash;</td>", f); continue; }
                    if (errored(r)) { error_cell(f, r); continue; }
                    fprintf(f, "<td class='%s%s' title='expected %s%s'>%s<small>%lld/%lld%s</small></td>",
                            pgr_verdict_name(r->verdict), matched(r) ? "" : " mismatch", pgr_verdict_name(r->expected),
                            r->budget_short ? "; short: the budget ran out before its minimum" : "",
                            pgr_verdict_name(r->verdict), r->tally.violated_trials, r->trials,
                            r->budget_short ? " &middot; <b class=short>short</b>" : "");
                }
            fputs("</tr>\n", f);
        }
    }
    fputs("</table>\n", f);
    fault_matrix(f, rs, n);
    model_section_html(f, rs, n);

    for (int si = 0; si < nsc; si++) {
        const pgr_scenario *sc = scs[si];
        fprintf(f, "<h2 id='%s'>%s", sc->name, sc->name);
        seed_tag(f, sc);
        fputs("</h2>\n<p>", f);
        esc(f, sc->title);
        fputs("</p>\n", f);
        if (sc->nclaims) {
            fputs(sc->seed && *sc->seed ? "<h3>The seed's claims, measured</h3><ul class=claims>\n"
                                        : "<h3>Claims, measured</h3><ul class=claims>\n", f);
            for (int c = 0; c < sc->nclaims; c++) {
                const pgr_claim *cl = &sc->claims[c];
                claim_tally t = tally_claim(sc, cl, rs, n);
                bool held = t.violations == 0;
                fprintf(f, "<li class=%s><b>%s</b> &ldquo;", held ? "held" : "broken", held ? "HELD" : "BROKEN");
                esc(f, cl->text);
                fprintf(f, "&rdquo; <span class=k>(%s: ", cl->variant);
                if (held)
                    fprintf(f, "0 violations of &ldquo;%s&rdquo; in %lld trials/schedules over %d cells", sc->invariants[cl->invariant],
                            t.trials, t.cells);
                else
                    fprintf(f, "%lld violations of &ldquo;%s&rdquo; in %lld trials/schedules; broken in %d of %d cells",
                            t.violations, sc->invariants[cl->invariant], t.trials, t.cells_broken, t.cells);
                fputs(")</span></li>\n", f);
            }
            fputs("</ul>\n", f);
        }
        seed_sql_section(f, sc, rs, n);
        fputs("<h3>Invariants broken, per variant</h3><table><tr><th>variant</th>", f);
        for (int k = 0; k < sc->ninvariants; k++) { fputs("<th>", f); esc(f, sc->invariants[k]); fputs("</th>", f); }
        fputs("</tr>\n", f);
        for (int j = 0; j < sc->nvariants; j++) {
            fprintf(f, "<tr><td class=name>%s</td>", sc->variants[j].name);
            for (int k = 0; k < sc->ninvariants; k++) {
                long long v = 0, tr = 0;
                for (int i = 0; i < n; i++)
                    if (rs[i].v == &sc->variants[j] && !faulted(&rs[i])) { v += rs[i].tally.inv[k]; tr += rs[i].trials; }
                fprintf(f, "<td class=%s>%lld<small>of %lld</small></td>", v ? "race" : "safe", v, tr);
            }
            fputs("</tr>\n", f);
        }
        fputs("</table>\n<h3>Status codes</h3>\n", f);
        status_bars(f, sc, rs, n);
        fputs("<h3>Latency and release skew</h3>\n", f);
        latency_histogram(f, sc, rs, n);
        latency_chart(f, sc, rs, n);
        fputs("<table><tr><th>variant</th><th>isolation</th><th>sessions</th><th>trials/s</th>"
              "<th>release skew p50 &micro;s</th><th>p99 &micro;s</th><th>release</th></tr>\n", f);
        for (int i = 0; i < n; i++) {
            pgr_result *r = &rs[i];
            if (r->sc != sc || !is_stress(r) || r->sessions < 8) continue;
            fprintf(f, "<tr><td class=name>%s</td><td>%s</td><td>%d</td><td>%.0f</td><td>%.1f</td><td>%.1f</td><td>%s</td></tr>\n",
                    r->v->name, pgr_isolation_name(r->iso), r->sessions, r->seconds > 0 ? (double)r->trials / r->seconds : 0.0,
                    pgr_dist_pct(&r->skew, 50), pgr_dist_pct(&r->skew, 99), r->release ? r->release : "");
        }
        fputs("</table>\n<h3>Counterexamples</h3>\n", f);
        for (int j = 0; j < sc->nvariants; j++) {
            const pgr_result *r = cex_source(&sc->variants[j], rs, n);
            if (!r) continue;
            const pgr_counterexample *c = &r->tally.cex[0];
            bool ex = r->mode == PGR_MODE_EXPLORE;
            fprintf(f, "<h4>%s/%s <span class=k>%s, %s, %d sessions", sc->name, sc->variants[j].name,
                    ex ? "explore, minimized schedule" : "stress", pgr_isolation_name(r->iso), c->nsessions);
            if (!ex) fprintf(f, ", trial %lld", c->trial_no);
            fputs("</span></h4>\n", f);
            fputs("<p class=why><b>", f);
            esc(f, pgr_invariant_name(sc, c->invariant));
            fputs(":</b> ", f);
            esc(f, c->why);
            fputs("</p>\n", f);
            swimlane(f, c);
        }
    }
    fputs("<p class=k>Generated by pgrace " PGR_VERSION ". Hover a statement for its SQL, parameters and first row.</p>\n"
          "</body></html>\n", f);
    return fclose(f) == 0 ? 0 : -1;
}

static void xml_esc(FILE *f, const char *s) { esc(f, s); }

static int write_junit(const char *path, pgr_result *rs, int n, const char *error)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int fails = 0, errs = 0;
    double secs = 0;
    for (int i = 0; i < n; i++) { fails += mismatched(&rs[i]); errs += errored(&rs[i]); secs += rs[i].seconds; }
    if (!errs && error && *error) errs = 1;              /* stopped before any cell had it */
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"pgrace\" tests=\"%d\" failures=\"%d\" "
               "errors=\"%d\" time=\"%.3f\">\n", n, fails, errs, secs);
    const pgr_scenario *scs[n > 0 ? n : 1];
    int nsc = scenarios_of(rs, n, scs);
    for (int si = 0; si < nsc; si++) {
        const pgr_scenario *sc = scs[si];
        int cnt = 0, sf = 0, se = 0;
        for (int i = 0; i < n; i++) if (rs[i].sc == sc) { cnt++; sf += mismatched(&rs[i]); se += errored(&rs[i]); }
        if (!cnt) continue;
        fprintf(f, "  <testsuite name=\"%s\" tests=\"%d\" failures=\"%d\" errors=\"%d\">\n", sc->name, cnt, sf, se);
        for (int i = 0; i < n; i++) {
            pgr_result *r = &rs[i];
            if (r->sc != sc) continue;
            char name[160];
            cell_name(name, sizeof name, r);
            fprintf(f, "    <testcase classname=\"pgrace.%s\" name=\"%s %s %s c=%d\" time=\"%.3f\">", sc->name, name,
                    pgr_mode_name(r->mode), pgr_isolation_name(r->iso), r->sessions, r->seconds);
            if (errored(r)) {                   /* an error, not a failed expectation */
                fputs("\n      <error message=\"harness error: ", f);
                xml_esc(f, r->error);
                fprintf(f, "\">no verdict: %lld trials finished</error>\n    ", r->trials);
            } else if (!matched(r)) {
                fprintf(f, "\n      <failure message=\"expected %s, measured %s in %lld of %lld\">",
                        pgr_verdict_name(r->expected), pgr_verdict_name(r->verdict), r->tally.violated_trials, r->trials);
                for (int k = 0; k < sc->ninvariants; k++)
                    if (r->tally.inv[k]) { fprintf(f, "%lld violations of ", r->tally.inv[k]); xml_esc(f, sc->invariants[k]); fputc('\n', f); }
                if (r->tally.retry_failed) { fprintf(f, "%lld violations of ", r->tally.retry_failed); xml_esc(f, PGR_INV_RETRY_NAME); fputc('\n', f); }
                if (r->tally.half_committed) { fprintf(f, "%lld violations of ", r->tally.half_committed); xml_esc(f, PGR_INV_ATOMIC_NAME); fputc('\n', f); }
                if (r->tally.ncex) {
                    const pgr_counterexample *c = &r->tally.cex[0];
                    xml_esc(f, c->why);
                    fputc('\n', f);
                    for (int s = 0; s < c->nsessions; s++)
                        for (int k = 0; k < c->nsteps[s] && k < PGR_MAX_STEPS; k++) {
                            const pgr_step *st = PGR_TRACE_AT(c->steps, s, k);
                            fprintf(f, "S%d %s rows=%ld %s\n", s + 1, st->label, st->rows, st->sqlstate);
                        }
                }
                fputs("</failure>\n    ", f);
            }
            fputs("</testcase>\n", f);
        }
        fputs("  </testsuite>\n", f);
    }
    fputs("</testsuites>\n", f);
    return fclose(f) == 0 ? 0 : -1;
}

static int write_summary(const char *path, const char *server, pgr_result *rs, int n, const char *error)
{
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int mism = 0, errs = 0;
    for (int i = 0; i < n; i++) { mism += mismatched(&rs[i]); errs += errored(&rs[i]); }
    fprintf(f, "## pgrace: %d cells, %d not matching expectation, %d harness error%s\n\n%s\n\n", n, mism, errs,
            errs == 1 ? "" : "s", server);
    if (error && *error) fprintf(f, "**Harness error:** %s\n\n", error);
    int nshort = 0;
    for (int i = 0; i < n; i++) nshort += rs[i].budget_short;
    if (nshort)
        fprintf(f, "**%d cell%s got fewer trials than %s minimum** (the budget ran out): marked short below.\n\n", nshort,
                nshort == 1 ? "" : "s", nshort == 1 ? "its" : "their");
    fputs("| target | mode | isolation | sessions | verdict | expected | |\n|---|---|---|---|---|---|---|\n", f);
    for (int i = 0; i < n; i++) {
        pgr_result *r = &rs[i];
        char v[PGR_ERRLEN + 16];
        if (errored(r)) snprintf(v, sizeof v, "error: %s", r->error);
        else if (r->verdict == PGR_RACE) snprintf(v, sizeof v, "race in %lld of %lld", r->tally.violated_trials, r->trials);
        else snprintf(v, sizeof v, "safe (%lld)", r->trials);
        if (!errored(r) && r->budget_short) {
            char how[96];
            short_of(how, sizeof how, r);
            snprintf(v + strlen(v), sizeof v - strlen(v), ", short: %s", how);
        }
        for (char *p = v; *p; p++) if (*p == '|') *p = '/';          /* a table cell */
        char name[160];
        cell_name(name, sizeof name, r);
        fprintf(f, "| %s | %s | %s | %d | %s | %s | %s |\n", name, pgr_mode_name(r->mode),
                pgr_isolation_name(r->iso), r->sessions, v, pgr_verdict_name(r->expected),
                errored(r) ? "**ERROR**" : matched(r) ? "ok" : "**MISMATCH**");
    }
    pgr_model_pair *mp = calloc((size_t)(n ? n : 1), sizeof *mp);
    int nmp = mp ? pgr_model_pairs(rs, n, mp, n) : 0;
    if (nmp) fputs("\n### The C model against the real stack\n\n| real stack | mode | isolation | sessions | C model | real stack | |\n"
                   "|---|---|---|---|---|---|---|\n", f);
    for (int i = 0; i < nmp; i++) {
        char m[64], r[64], name[160];
        pgr_model_cell_text(mp[i].model, m, sizeof m);
        pgr_model_cell_text(mp[i].real, r, sizeof r);
        cell_name(name, sizeof name, mp[i].real);
        fprintf(f, "| %s | %s | %s | %d | %s | %s | %s |\n", name, pgr_mode_name(mp[i].real->mode),
                pgr_isolation_name(mp[i].real->iso), mp[i].real->sessions, m, r, pgr_model_agree(&mp[i]) ? "agree" : "**differ**");
    }
    free(mp);
    const pgr_scenario *scs[n > 0 ? n : 1];
    int nsc = scenarios_of(rs, n, scs), nclaims = 0;
    for (int si = 0; si < nsc; si++) nclaims += scs[si]->nclaims;
    if (nclaims) fputs("\n### Claims, measured\n\n", f);
    for (int si = 0; si < nsc; si++) {
        const pgr_scenario *sc = scs[si];
        for (int c = 0; c < sc->nclaims; c++) {
            claim_tally t = tally_claim(sc, &sc->claims[c], rs, n);
            if (!t.cells) continue;
            char seed[32] = "";
            if (sc->seed && *sc->seed) snprintf(seed, sizeof seed, " (seed %s)", sc->seed);
            fprintf(f, "- **%s** %s%s: \"%s\": %lld violations of \"%s\" in %lld trials\n",
                    t.violations ? "BROKEN" : "held", sc->name, seed, sc->claims[c].text, t.violations,
                    sc->invariants[sc->claims[c].invariant], t.trials);
        }
    }
    bool head = false;
    for (int si = 0; si < nsc; si++)
        for (int j = 0; j < scs[si]->nvariants; j++) {
            const pgr_result *r = NULL;
            for (int i = 0; i < n && !r; i++)
                if (rs[i].v == &scs[si]->variants[j] && rs[i].nseed_sql) r = &rs[i];
            for (int k = 0; r && k < r->nseed_sql; k++) {
                const pgr_seed_sql *q = &r->seed_sql[k];
                if (!head) { fputs("\n### The seed's SQL, run as written\n\n", f); head = true; }
                fprintf(f, "- **%s** %s/%s: the seed's %s%s%s%s\n", q->error[0] ? "FAILS" : "runs", scs[si]->name,
                        scs[si]->variants[j].name, pgr_seed_sql_name(q), q->error[0] ? ": `" : "",
                        q->error, q->error[0] ? "`" : "");
            }
        }
    return fclose(f) == 0 ? 0 : -1;
}

int pgr_write_reports(const char *dir, const char *server, pgr_result *rs, int n, const char *error,
                      char *err, size_t errlen)
{
    char path[4096];
    errno = 0;
    snprintf(path, sizeof path, "%s/index.html", dir);
    if (write_html(path, server, rs, n, error) != 0) goto fail;
    snprintf(path, sizeof path, "%s/junit.xml", dir);
    if (write_junit(path, rs, n, error) != 0) goto fail;
    snprintf(path, sizeof path, "%s/summary.md", dir);
    if (write_summary(path, server, rs, n, error) != 0) goto fail;
    return 0;
fail:
    snprintf(err, errlen, "cannot write %s: %s", path, errno ? strerror(errno) : "write failed");
    return -1;
}
