/*
 * batch.c — the scenario's side of a batch: admin queries for prepare() and check().
 */
#include "runner.h"

#include <string.h>

PGresult *pgr_admin(pgr_batch *b, const char *sql, int nparams, const char *const *params)
{
    return pgr_query(b->admin, sql, nparams, params, b->err, sizeof b->err);
}

int pgr_prepare_by_case(pgr_batch *b, const char *sql, const char *code, int nparams)
{
    char lo[24], hi[24], n[24], codes[PGR_MAX_BATCH + 1];
    for (int i = 0; i < b->ntrials; i++) codes[i] = code[b->trials[i].kase] ? code[b->trials[i].kase] : '-';
    codes[b->ntrials] = '\0';
    pgr_fmt_ll(lo, b->key_lo);
    pgr_fmt_ll(hi, b->key_hi);
    pgr_fmt_ll(n, b->nsessions);
    PGresult *r = pgr_admin(b, sql, nparams, (const char *[]){ lo, hi, codes, n });
    if (!r) return -1;
    PQclear(r);
    return 0;
}
