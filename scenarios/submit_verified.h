/*
 * submit_verified.h — seed 004's submissions/create route (src/routes/api/submissions/
 * create/+server.ts), in its three variants. Two scenarios measure it: nullifier_submission
 * (the double-spend, issue 2) and idempotent_submission (retries, overlapping the first
 * request or after its answer, issue 3). They send different requests to the same code,
 * which lives in nullifier_submission.c.
 *
 * Request: text[0] nullifier, text[1] idempotency key ("" = none sent), text[2] template
 * id; num[0] the trial key (bookkeeping column).
 */
#ifndef PGRACE_SUBMIT_VERIFIED_H
#define PGRACE_SUBMIT_VERIFIED_H

#include "pgrace.h"

extern const char pgr_submit_verified_ddl[];           /* the submission table */
extern const char pgr_submit_verified_original_ddl[];  /* @@index([nullifier]) */
extern const char pgr_submit_verified_fix_ddl[];       /* the seed's migration: unique nullifier, key */
extern const char pgr_submit_verified_rollback_as_written[]; /* the seed's "Rollback Plan" SQL */

int pgr_submit_verified_original(pgr_session *s, const pgr_request *req, pgr_response *resp);
int pgr_submit_verified_proposed(pgr_session *s, const pgr_request *req, pgr_response *resp);
int pgr_submit_verified_recommended(pgr_session *s, const pgr_request *req, pgr_response *resp);

#endif
