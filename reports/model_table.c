/*
 * model_table.c — the C model against the real stack (model_table.h).
 */
#include "model_table.h"
#include "spec_scenario.h"

#include <string.h>

/* Same cell: mode, level, sessions, fault kind. */
static bool same_cell(const pgr_result *a, const pgr_result *b)
{
    return a->mode == b->mode && a->iso == b->iso && a->sessions == b->sessions && a->fault.kind == b->fault.kind;
}

int pgr_model_pairs(const pgr_result *rs, int n, pgr_model_pair *out, int cap)
{
    int k = 0;
    for (int i = 0; i < n; i++) {
        const pgr_spec *sp = pgr_spec_of(rs[i].sc);
        if (!sp || !sp->model || rs[i].error[0]) continue;
        for (int j = 0; j < n && k < cap; j++) {
            const pgr_result *m = &rs[j];
            if (m->error[0] || strcmp(m->sc->name, sp->model) != 0 || strcmp(m->v->name, rs[i].v->name) != 0) continue;
            if (!same_cell(m, &rs[i])) continue;
            out[k++] = (pgr_model_pair){ m, &rs[i] };
            break;
        }
    }
    return k;
}

void pgr_model_cell_text(const pgr_result *r, char *out, size_t cap)
{
    const char *unit = r->mode == PGR_MODE_EXPLORE ? " schedules" : "";
    if (r->verdict != PGR_RACE)
        snprintf(out, cap, "safe (%lld%s)", r->trials, unit);
    else if (r->mode == PGR_MODE_EXPLORE)
        snprintf(out, cap, "race %lld/%lld%s", r->tally.violated_trials, r->trials, unit);
    else
        snprintf(out, cap, "race %.0f%% (%lld/%lld)", r->trials ? 100.0 * (double)r->tally.violated_trials / (double)r->trials : 0.0,
                 r->tally.violated_trials, r->trials);
}

bool pgr_model_agree(const pgr_model_pair *p)
{
    return (p->model->verdict == PGR_RACE) == (p->real->verdict == PGR_RACE);
}

void pgr_model_table_print(FILE *f, const pgr_model_pair *p, int n)
{
    if (n == 0) return;
    fprintf(f, "\nthe C model against the real stack (a spec's `model`, variant by variant):\n");
    fprintf(f, "%-40s %-8s %-16s %3s  %-24s %-24s %s\n", "REAL STACK", "MODE", "ISOLATION", "C", "C MODEL", "REAL STACK",
            "");
    for (int i = 0; i < n; i++) {
        char target[96], fault[64] = "", m[64], r[64];
        if (p[i].real->fault.kind != PGR_FAULT_NONE) pgr_fault_format(&p[i].real->fault, fault, sizeof fault);
        snprintf(target, sizeof target, "%s/%s%s%s", p[i].real->sc->name, p[i].real->v->name, fault[0] ? " " : "", fault);
        pgr_model_cell_text(p[i].model, m, sizeof m);
        pgr_model_cell_text(p[i].real, r, sizeof r);
        fprintf(f, "%-40s %-8s %-16s %3d  %-24s %-24s %s\n", target, pgr_mode_name(p[i].real->mode),
                pgr_isolation_name(p[i].real->iso), p[i].real->sessions, m, r,
                pgr_model_agree(&p[i]) ? "agree" : "DIFFER");
    }
}
