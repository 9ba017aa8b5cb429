/*
 * model_table.h — the C model against the real stack. A spec that says `model SCENARIO`
 * holds the seed's own code (an application, a program); its variants pair with the C
 * scenario's of the same name, cell by cell (mode, level, sessions, fault), and each pair
 * either agrees on the verdict or differs. Printed after run's table, and a section of
 * index.html and summary.md.
 */
#ifndef PGRACE_MODEL_TABLE_H
#define PGRACE_MODEL_TABLE_H

#include "runner.h"

#include <stdio.h>

typedef struct pgr_model_pair {
    const pgr_result *model;         /* the C scenario's cell */
    const pgr_result *real;          /* the spec's (the real stack's) */
} pgr_model_pair;

/* The pairs among rs[0, n) (results with an error are left out); at most cap. */
int pgr_model_pairs(const pgr_result *rs, int n, pgr_model_pair *out, int cap);
/* "race 40% (80/200)", "safe (200)", "race 2/8 schedules": one cell's verdict and numbers. */
void pgr_model_cell_text(const pgr_result *r, char *out, size_t cap);
bool pgr_model_agree(const pgr_model_pair *p);
/* The text table (nothing when there is no pair). */
void pgr_model_table_print(FILE *f, const pgr_model_pair *p, int n);

#endif
