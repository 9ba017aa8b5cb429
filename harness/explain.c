/*
 * explain.c — a schedule told to a person: which step each grant ran, the read that saw the
 * state from before another session's write committed, context switches, and the
 * session-by-session table.
 */
#include "scheduler.h"

#include <stdio.h>
#include <string.h>

const pgr_step *pgr_sched_step_of(const pgr_trial *t, const sched_run *sr, int g, int *session)
{
    int s = sr->grants[g], k = 0;
    for (int i = 0; i < g; i++) k += sr->grants[i] == s;
    *session = s;
    if (k >= PGR_MAX_STEPS || k >= t->nsteps[s]) return NULL;
    return PGR_TRACE_AT(t->trace, s, k);
}

/* "S2 ran 'find invite' (rows=1) before S1's 'mark used' committed" when the schedule
 * shows a read that saw the state from before another session's write committed. */
void pgr_sched_explain_order(const pgr_trial *t, const sched_run *sr, char *out, size_t len)
{
    out[0] = '\0';
    for (int w = 0; w < sr->n; w++) {
        int a;
        const pgr_step *ws = pgr_sched_step_of(t, sr, w, &a);
        if (!ws || pgr_sql_kind(ws->sql) != K_WRITE || strcasecmp(ws->sql, "COMMIT") == 0 ||
            strcasecmp(ws->sql, "ROLLBACK") == 0 || ws->rows <= 0)
            continue;
        int commit = w;                      /* autocommit, unless a COMMIT of a follows */
        bool in_tx = false;
        for (int g = 0; g < w; g++) {
            int s2;
            const pgr_step *st = pgr_sched_step_of(t, sr, g, &s2);
            if (s2 == a && st) {
                if (strcasecmp(st->sql, "BEGIN") == 0) in_tx = true;
                if (strcasecmp(st->sql, "COMMIT") == 0 || strcasecmp(st->sql, "ROLLBACK") == 0) in_tx = false;
            }
        }
        if (in_tx)
            for (int g = w + 1; g < sr->n; g++) {
                int s2;
                const pgr_step *st = pgr_sched_step_of(t, sr, g, &s2);
                if (s2 == a && st && strcasecmp(st->sql, "COMMIT") == 0) { commit = g; break; }
            }
        /* the last read by another session that still saw the state before that commit */
        for (int r = commit - 1; r >= 0; r--) {
            int b;
            const pgr_step *rs = pgr_sched_step_of(t, sr, r, &b);
            if (!rs || b == a || pgr_sql_kind(rs->sql) != K_READ) continue;
            char seen[96];
            if (rs->values[0]) snprintf(seen, sizeof seen, "read %s", rs->values);
            else snprintf(seen, sizeof seen, "found %ld rows", rs->rows);
            snprintf(out, len, "S%d's '%s' %s before S%d's '%s' committed", b + 1, rs->label, seen, a + 1, ws->label);
            return;
        }
    }
}

int pgr_sched_count_switches(const sched_run *sr)
{
    int n = 0;
    for (int g = 1; g < sr->n; g++)
        if (sr->grants[g] != sr->grants[g - 1] && (sr->ready[g] >> sr->grants[g - 1] & 1)) n++;
    return n;
}

/* The interleaving as a session-by-session table, then the explanation. */
void pgr_sched_describe(const pgr_trial *t, const sched_run *sr, char *out, size_t len)
{
    size_t off = 0;
#define PUT(...) do { int w_ = snprintf(out + off, off < len ? len - off : 0, __VA_ARGS__); if (w_ > 0) off += (size_t)w_; } while (0)
    PUT("    %3s ", "#");
    for (int s = 0; s < t->nsessions; s++) PUT(" %-34s", (char[8]){ 'S', (char)('1' + s), 0 });
    PUT("\n");
    for (int g = 0; g < sr->n; g++) {
        int s;
        const pgr_step *st = pgr_sched_step_of(t, sr, g, &s);
        char cell[64];
        int nth = 0;
        for (int i = 0; i < g; i++) nth += sr->grants[i] == sr->grants[g];
        bool fault = st && t->fault_step[s] == nth;
        if (st)
            snprintf(cell, sizeof cell, "%.20s rows=%ld%s%s%s", st->label, st->rows,
                     strcmp(st->sqlstate, "00000") ? " " : "", strcmp(st->sqlstate, "00000") ? st->sqlstate : "",
                     fault ? " FAULT" : "");
        else
            snprintf(cell, sizeof cell, "...");
        PUT("    %3d ", g + 1);
        for (int k = 0; k < s; k++) PUT(" %-34s", "");
        PUT(" %s%s\n", cell, sr->waited[g] ? " (waited for a lock)" : "");
        if (fault) {
            for (int j = 0; j <= s; j++) PUT(" %-34s", "");
            PUT("     ^ %s\n", st->message);
        }
    }
    PUT("    answers:");
    for (int s = 0; s < t->nsessions; s++) {
        PUT(" S%d=%d", s + 1, t->resp[s].status);
        if (t->resp[s].id >= 0) PUT("(id %lld)", t->resp[s].id);
        if (t->fault_retried[s]) PUT("[retry after the fault]");
    }
    char order[400];
    pgr_sched_explain_order(t, sr, order, sizeof order);
    PUT("\n    why: %s%s%s\n", order, order[0] ? "; then " : "", t->why);
#undef PUT
}
