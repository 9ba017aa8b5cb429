/*
 * cmd_accept.c — `pgrace accept FILE.spec...`: measure a spec's variants on the run's matrix
 * (every level, stress at 2 and 8 sessions, explore at 2) and write the verdicts into the
 * file as `expect` lines, so that nobody copies numbers by hand. What the file said before
 * is replaced; everything else in it stays byte for byte.
 */
#include "app.h"
#include "spec_scenario.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ACCEPT_MARK "# expectations measured by `pgrace accept`"

/* What the results say of variant v at one level: 0 safe, else the session count from
 * which it raced (2: at 2 sessions or in explore). *explored: exploration found it too. */
static int measured(const pgr_result *rs, int n, const pgr_variant *v, int iso, bool *explored)
{
    int from = 0;
    *explored = false;
    for (int i = 0; i < n; i++) {
        const pgr_result *r = &rs[i];
        if (r->v != v || (int)r->iso != iso || r->verdict != PGR_RACE || r->fault.kind != PGR_FAULT_NONE) continue;
        int s = r->mode == PGR_MODE_EXPLORE ? 2 : r->sessions;
        if (r->mode == PGR_MODE_EXPLORE) *explored = true;
        if (!from || s < from) from = s;
    }
    return from;
}

/* The fault matrix's verdict on v under fault k; PGR_SAFE when that cell did not run. */
static pgr_verdict fault_measured(const pgr_result *rs, int n, const pgr_variant *v, pgr_fault_kind k)
{
    for (int i = 0; i < n; i++)
        if (rs[i].v == v && rs[i].fault.kind == k) return rs[i].verdict;
    return PGR_SAFE;
}

/* Rewrite the spec at path: its old expect lines (and the mark above them) out, the new
 * block at the end. 0, or -1 with err. */
static int rewrite(const pgr_spec *sp, const char *block, char *err, size_t errlen)
{
    FILE *f = fopen(sp->path, "r");
    if (!f) { snprintf(err, errlen, "cannot read %s: %s", sp->path, strerror(errno)); return -1; }
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s.accept-tmp", sp->path);
    FILE *o = fopen(tmp, "w");
    if (!o) { fclose(f); snprintf(err, errlen, "cannot write %s: %s", tmp, strerror(errno)); return -1; }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lineno = 0;
    bool last_nl = true;
    while ((len = getline(&line, &cap, f)) > 0) {
        lineno++;
        bool drop = strncmp(line, ACCEPT_MARK, strlen(ACCEPT_MARK)) == 0;
        for (int e = 0; e < sp->nexpects && !drop; e++) drop = sp->expects[e].pos.line == lineno;
        if (drop) continue;
        fwrite(line, 1, (size_t)len, o);
        last_nl = line[len - 1] == '\n';
    }
    free(line);
    fclose(f);
    if (!last_nl) fputc('\n', o);
    fputs(block, o);
    if (fclose(o) != 0 || rename(tmp, sp->path) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", sp->path, strerror(errno));
        remove(tmp);
        return -1;
    }
    return 0;
}

static const char *const level_word[PGR_NISO] = { "read-committed", "repeatable-read", "serializable" };

int pgr_cmd_accept(char **pos, int npos)
{
    const pgr_scenario *scs[64];
    int nsc = 0;
    for (int i = 0; i < npos && nsc < 64; i++) {
        char err[PGR_ERRLEN];
        if (!strstr(pos[i], ".spec")) {
            fprintf(stderr, "pgrace: accept takes spec files (FILE.spec), got '%s'\n", pos[i]);
            return 2;
        }
        if (pgr_spec_target(pos[i], &scs[nsc++], err, sizeof err) != 0) {
            fprintf(stderr, "pgrace: %s\n", err);
            return 2;
        }
    }
    pgr_cell *cells;
    int n;
    if (pgr_matrix_cells(pos, npos, !pgr_cfg.no_faults, &cells, &n) != 0) return 2;
    pgr_result *rs;
    int nrs;
    int rc = pgr_run_cells(cells, n, pgr_cfg.budget, 0, PGR_MIN_STRESS_TRIALS, pgr_cfg.json_path, NULL, true, &rs, &nrs);
    free(cells);
    if (rc == 2) {
        for (int i = 0; i < nrs; i++) pgr_result_free(&rs[i]);
        free(rs);
        return 2;
    }
    time_t now = time(NULL);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%d", gmtime(&now));
    for (int k = 0; k < nsc; k++) {
        const pgr_spec *sp = pgr_spec_of(scs[k]);
        char block[8192];
        size_t off = (size_t)snprintf(block, sizeof block, "%s on %s (stress at 2 and 8 sessions, explore at 2%s)\n",
                                      ACCEPT_MARK, when, pgr_cfg.no_faults ? "" : ", the fault matrix");
        for (int j = 0; j < scs[k]->nvariants; j++) {
            const pgr_variant *v = &scs[k]->variants[j];
            int from[PGR_NISO];
            bool explored[PGR_NISO], blind = false;
            for (int iso = 0; iso < PGR_NISO; iso++) from[iso] = measured(rs, nrs, v, iso, &explored[iso]);
            bool any = false;
            for (int iso = 0; iso < PGR_NISO; iso++) any |= from[iso] != 0;
            for (int f = 1; f < PGR_NFAULTS && !pgr_cfg.no_faults; f++)
                if (fault_measured(rs, nrs, v, (pgr_fault_kind)f) == PGR_RACE) {
                    char fname[32];
                    snprintf(fname, sizeof fname, "%s", pgr_fault_name((pgr_fault_kind)f));
                    for (char *c = fname; *c; c++) if (*c == '-') *c = '_';
                    off += (size_t)snprintf(block + off, sizeof block - off, "expect %s fault %s race\n", v->name, fname);
                }
            if (!any) {
                off += (size_t)snprintf(block + off, sizeof block - off, "expect %s safe\n", v->name);
                continue;
            }
            /* stress races where exploration, one statement at a time, does not: the race
             * is inside one statement (two executions of it at once) */
            for (int iso = 0; iso < PGR_NISO; iso++) blind |= from[iso] != 0 && !explored[iso];
            if (blind) {
                off += (size_t)snprintf(block + off, sizeof block - off, "expect %s explore safe", v->name);
                bool every = true;
                for (int iso = 0; iso < PGR_NISO; iso++) every &= from[iso] && !explored[iso];
                for (int iso = 0; iso < PGR_NISO && !every; iso++)
                    if (from[iso] && !explored[iso]) off += (size_t)snprintf(block + off, sizeof block - off, " at %s", level_word[iso]);
                off += (size_t)snprintf(block + off, sizeof block - off, "\n");
            }
            /* one line per distinct "from": the levels that race from that many sessions */
            for (int iso = 0; iso < PGR_NISO; iso++) {
                if (!from[iso]) continue;
                bool first = true;
                for (int e = 0; e < iso; e++) first &= from[e] != from[iso];
                if (!first) continue;
                off += (size_t)snprintf(block + off, sizeof block - off, "expect %s race", v->name);
                bool all = true;
                for (int e = 0; e < PGR_NISO; e++) all &= from[e] == from[iso];
                for (int e = 0; e < PGR_NISO && !all; e++)
                    if (from[e] == from[iso]) off += (size_t)snprintf(block + off, sizeof block - off, " at %s", level_word[e]);
                if (from[iso] > 2) off += (size_t)snprintf(block + off, sizeof block - off, " sessions %d", from[iso]);
                off += (size_t)snprintf(block + off, sizeof block - off, "\n");
            }
        }
        char err[PGR_ERRLEN];
        if (rewrite(sp, block, err, sizeof err) != 0) {
            fprintf(stderr, "pgrace: %s\n", err);
            rc = 2;
            break;
        }
        printf("accept: wrote %s's expectations into %s:\n%s", scs[k]->name, sp->path, block);
    }
    for (int i = 0; i < nrs; i++) pgr_result_free(&rs[i]);
    free(rs);
    return rc == 2 ? 2 : 0;
}
