/* report.h — index.html, junit.xml and summary.md from a run's results. */
#ifndef PGRACE_REPORT_H
#define PGRACE_REPORT_H

#include "runner.h"

/* Write DIR/index.html, DIR/junit.xml, DIR/summary.md. 0, or -1 with err. */
int pgr_write_reports(const char *dir, const char *server, pgr_result *rs, int n, const char *error,
                      char *err, size_t errlen);

#endif
