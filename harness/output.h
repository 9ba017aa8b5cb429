/* output.h — results as text on a terminal and as JSON (output.c). */
#ifndef PGRACE_OUTPUT_H
#define PGRACE_OUTPUT_H

#include "results.h"
#include <stdio.h>

void pgr_print_result(FILE *f, pgr_result *r);
/* Write {"pgrace_version", "server", "results": [...], "error"} to path. 0 or -1+err. */
int pgr_write_json(const char *path, const char *server, pgr_result *rs, int n,
                   const char *error, char *err, size_t errlen);
struct json_t;
/* Write {"pgrace_version", "server", key: items (stolen), "error"} to path. 0 or -1+err. */
int pgr_write_json_document(const char *path, const char *server, const char *key, struct json_t *items,
                            const char *error, char *err, size_t errlen);

#endif
