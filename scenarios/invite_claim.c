/*
 * invite_claim — seed 001: "Atomic invite claim — prevents duplicate Submissions" (PR #15).
 *
 * A wizard POSTs a filled form with its invite token. Double-click, mobile retry or
 * back+resubmit send the same token twice at once.
 *
 *   original     findUnique(token) -> if (!usedAt) { update(usedAt); create Submission }:
 *                three autocommit statements; both requests can see usedAt = NULL.
 *   proposed     the PR as merged: updateMany({token, usedAt: null, expiresAt > now})
 *                as the claim, then create Submission, each its own autocommit statement;
 *                on count = 0 look the invite up: 400 missing, 410 expired, 200 with the
 *                prior Submission's id, 409 "already used" when no Submission is found.
 *                Why two autocommitted statements, not one transaction: the PR's own table
 *                of count = 0 answers reads "Already-used + no submission -> 409 (rare:
 *                prior Submission insert failed after the claim landed)". A claim that
 *                stays landed after the Submission insert failed is only possible when the
 *                claim committed on its own; in one transaction the failure would roll the
 *                claim back, and that state could not exist.
 *   recommended  the same claim and Submission insert in ONE transaction (the claim's row
 *                lock is held until the Submission is committed), a unique index on
 *                submission(invite_id) as a backstop, and a retry of the whole transaction
 *                on 40001/40P01 (repeatable read and serializable).
 *
 * What the PR claims: "exactly one concurrent caller's UPDATE matches ... everyone else
 * gets count = 0 and [gets] 200 with the original Submission's id". The first half holds;
 * the second does not: between the winner's claim commit and its Submission insert a
 * duplicate finds the invite used and no Submission, and gets 409 for work that
 * succeeded. Under repeatable read / serializable the blocked duplicate's UPDATE fails
 * with 40001 instead, which the PR does not catch: 500.
 */
#include "pgrace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char INVITE_CLAIM_DDL[] =
    "CREATE TABLE IF NOT EXISTS invite ("
    "  id bigserial PRIMARY KEY,"
    "  trial_key bigint NOT NULL UNIQUE,"          /* pgrace's key for the trial */
    "  token text NOT NULL UNIQUE,"
    "  expires_at timestamptz NOT NULL,"
    "  used_at timestamptz);"
    "CREATE TABLE IF NOT EXISTS submission ("
    "  id bigserial PRIMARY KEY,"
    "  invite_id bigint NOT NULL REFERENCES invite(id),"
    "  created_at timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX IF NOT EXISTS submission_invite_idx ON submission (invite_id);";

/* ---------------------------------------------------------------- original */

static const char ORIGINAL_FIND[] =
    "SELECT id, used_at IS NOT NULL AS used, expires_at <= now() AS expired "
    "FROM invite WHERE token = $1";
static const char ORIGINAL_MARK_USED[] =
    "UPDATE invite SET used_at = now() WHERE id = $1";
static const char ORIGINAL_CREATE_SUBMISSION[] =
    "INSERT INTO submission (invite_id) VALUES ($1) RETURNING id";

static int invite_claim_original(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    const char *token = req->text[0];
    pgr_res *r = PGR_SQL(s, "find invite", ORIGINAL_FIND, token);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    if (r->rows == 0) return 400;                          /* Invalid invite token */
    char invite_id[24];
    snprintf(invite_id, sizeof invite_id, "%s", pgr_val(r, 0, 0));
    if (strcmp(pgr_val(r, 0, 2), "t") == 0) return 410;   /* Invite has expired */
    if (strcmp(pgr_val(r, 0, 1), "t") == 0) return 409;   /* Invite already used */

    r = PGR_SQL(s, "mark used", ORIGINAL_MARK_USED, invite_id);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    r = PGR_SQL(s, "create submission", ORIGINAL_CREATE_SUBMISSION, invite_id);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    resp->id = pgr_int(r, 0, 0);
    return 201;
}

/* ---------------------------------------------------------------- proposed (PR #15) */

static const char PROPOSED_CLAIM[] =                       /* prisma.invite.updateMany */
    "UPDATE invite SET used_at = now() "
    "WHERE token = $1 AND used_at IS NULL AND expires_at > now()";
static const char PROPOSED_CREATE_SUBMISSION[] =           /* submission.create, invite connect */
    "INSERT INTO submission (invite_id) SELECT id FROM invite WHERE token = $1 RETURNING id";
static const char PROPOSED_LOOKUP_INVITE[] =
    "SELECT id, used_at IS NOT NULL AS used, expires_at <= now() AS expired "
    "FROM invite WHERE token = $1";
static const char PROPOSED_LOOKUP_SUBMISSION[] =
    "SELECT id FROM submission WHERE invite_id = $1 ORDER BY id LIMIT 1";

static int invite_claim_proposed(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    const char *token = req->text[0];
    pgr_res *r = PGR_SQL(s, "claim", PROPOSED_CLAIM, token);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    if (r->rows == 1) {
        r = PGR_SQL(s, "create submission", PROPOSED_CREATE_SUBMISSION, token);
        if (!r->ok) return pgr_uncaught(s, r, resp);
        resp->id = pgr_int(r, 0, 0);
        return 201;
    }
    /* count === 0: already used / expired / missing */
    r = PGR_SQL(s, "lookup invite", PROPOSED_LOOKUP_INVITE, token);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    if (r->rows == 0) return 400;                          /* Invalid invite token */
    if (strcmp(pgr_val(r, 0, 2), "t") == 0) return 410;   /* Invite has expired */
    char invite_id[24];
    snprintf(invite_id, sizeof invite_id, "%s", pgr_val(r, 0, 0));
    r = PGR_SQL(s, "lookup submission", PROPOSED_LOOKUP_SUBMISSION, invite_id);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    if (r->rows == 1) {                                    /* idempotent: the original id */
        resp->id = pgr_int(r, 0, 0);
        return 200;
    }
    return 409;                                            /* Invite already used */
}

/* ---------------------------------------------------------------- recommended */

static const char RECOMMENDED_DDL[] =
    "CREATE UNIQUE INDEX IF NOT EXISTS submission_one_per_invite ON submission (invite_id);";
static const char RECOMMENDED_CLAIM[] =
    "UPDATE invite SET used_at = now() "
    "WHERE token = $1 AND used_at IS NULL AND expires_at > now() RETURNING id";
static const char RECOMMENDED_CREATE_SUBMISSION[] =
    "INSERT INTO submission (invite_id) VALUES ($1) RETURNING id";
static const char RECOMMENDED_LOOKUP[] =
    "SELECT i.used_at IS NOT NULL AS used, i.expires_at <= now() AS expired, s.id "
    "FROM invite i LEFT JOIN submission s ON s.invite_id = i.id WHERE i.token = $1";

/* One attempt; PGR_RETRY when the transaction hit a serialization failure or deadlock. */
static int invite_claim_recommended_once(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    const char *token = req->text[0];
    pgr_res *r = pgr_begin(s);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    r = PGR_SQL(s, "claim", RECOMMENDED_CLAIM, token);
    if (pgr_retryable(r)) { pgr_rollback(s); return PGR_RETRY; }
    if (!r->ok) return pgr_uncaught(s, r, resp);
    int status;
    if (r->rows == 1) {
        char invite_id[24];
        snprintf(invite_id, sizeof invite_id, "%s", pgr_val(r, 0, 0));
        r = PGR_SQL(s, "create submission", RECOMMENDED_CREATE_SUBMISSION, invite_id);
        if (pgr_retryable(r)) { pgr_rollback(s); return PGR_RETRY; }
        if (!r->ok) return pgr_uncaught(s, r, resp);
        resp->id = pgr_int(r, 0, 0);
        status = 201;
    } else {
        r = PGR_SQL(s, "lookup", RECOMMENDED_LOOKUP, token);
        if (pgr_retryable(r)) { pgr_rollback(s); return PGR_RETRY; }
        if (!r->ok) return pgr_uncaught(s, r, resp);
        if (r->rows == 0) status = 400;
        else if (strcmp(pgr_val(r, 0, 1), "t") == 0) status = 410;
        else if (!pgr_isnull(r, 0, 2)) { resp->id = pgr_int(r, 0, 2); status = 200; }
        else status = 409;
    }
    r = pgr_commit(s);
    if (pgr_retryable(r)) { resp->id = -1; return PGR_RETRY; }
    if (!r->ok) return pgr_uncaught(s, r, resp);
    return status;
}

static int invite_claim_recommended(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    return pgr_retry(s, 10, invite_claim_recommended_once, req, resp);       /* 503: gave up retrying */
}

/* ---------------------------------------------------------------- requests and checks */

enum { CASE_DOUBLE_SUBMIT, CASE_MISSING, CASE_EXPIRED };
static const pgr_case invite_claim_cases[] = {
    { "double_submit", 8, "every session POSTs the same valid invite token at once" },
    { "missing_invite", 1, "every session POSTs a token no invite has" },
    { "expired_invite", 1, "every session POSTs the token of an expired invite" },
};

enum { INV_ONE_SUBMISSION, INV_ONE_CREATED, INV_MISSING, INV_EXPIRED };
static const char *const invite_claim_invariants[] = {
    "exactly one Submission per invite",
    "exactly one 201; every duplicate gets 200 with the winner's id",
    "a missing invite gets 400 and writes nothing",
    "an expired invite gets 410 and writes nothing",
};

static void invite_claim_request(void *ctx, const pgr_trial *t, int session, pgr_request *req)
{
    (void)ctx;
    (void)session;   /* every session sends the same token: that is the double-click */
    snprintf(req->text[0], sizeof req->text[0], "inv-%lld", t->key);
}

/* One INSERT for the batch: a valid or expired invite per trial, none for "missing". */
static const char PREPARE_INVITES[] =
    "INSERT INTO invite (trial_key, token, expires_at) "
    "SELECT k, 'inv-' || k, CASE substr($3, (k - $1)::int + 1, 1) "
    "  WHEN 'e' THEN now() - interval '1 hour' ELSE now() + interval '1 day' END "
    "FROM generate_series($1::bigint, $2::bigint) k "
    "WHERE substr($3, (k - $1)::int + 1, 1) <> 'm'";

static int invite_claim_prepare(pgr_batch *b)
{
    static const char code[] = { [CASE_DOUBLE_SUBMIT] = 'v', [CASE_MISSING] = 'm', [CASE_EXPIRED] = 'e' };
    return pgr_prepare_by_case(b, PREPARE_INVITES, code, 3);
}

static const char CHECK_INVITES[] =
    "SELECT i.trial_key, i.used_at IS NOT NULL, count(s.id), coalesce(min(s.id), -1) "
    "FROM invite i LEFT JOIN submission s ON s.invite_id = i.id "
    "WHERE i.trial_key BETWEEN $1 AND $2 GROUP BY i.trial_key, i.used_at";

static int invite_claim_check(pgr_batch *b)
{
    char lo[24], hi[24];
    pgr_fmt_ll(lo, b->key_lo);
    pgr_fmt_ll(hi, b->key_hi);
    PGresult *r = pgr_admin(b, CHECK_INVITES, 2, (const char *[]){ lo, hi });
    if (!r) return -1;
    /* per trial: used?, submissions, the submission id; -1 = no invite row */
    long long subs[PGR_MAX_BATCH], sub_id[PGR_MAX_BATCH];
    bool used[PGR_MAX_BATCH], have[PGR_MAX_BATCH];
    memset(have, 0, sizeof have);
    for (int i = 0; i < PQntuples(r); i++) {
        long long k = atoll(PQgetvalue(r, i, 0)) - b->key_lo;
        if (k < 0 || k >= b->ntrials) continue;
        have[k] = true;
        used[k] = PQgetvalue(r, i, 1)[0] == 't';
        subs[k] = atoll(PQgetvalue(r, i, 2));
        sub_id[k] = atoll(PQgetvalue(r, i, 3));
    }
    PQclear(r);

    for (int i = 0; i < b->ntrials; i++) {
        const pgr_trial *t = &b->trials[i];
        int n201 = 0, n200_same = 0, other = 0, winner = -1;
        for (int j = 0; j < t->nsessions; j++)
            if (t->resp[j].status == 201) { n201++; winner = j; }
        for (int j = 0; j < t->nsessions; j++) {
            if (t->resp[j].status == 201) continue;
            if (t->resp[j].status == 200 && winner >= 0 && t->resp[j].id == t->resp[winner].id) n200_same++;
            else if (other == 0) other = j + 1;
        }
        if (t->kase == CASE_DOUBLE_SUBMIT) {
            if (!have[i] || subs[i] != 1)
                pgr_violation(b, t, INV_ONE_SUBMISSION, "%lld Submission rows for one invite (%d sessions answered 201)",
                              have[i] ? subs[i] : 0, n201);
            bool lost = false;                 /* a fault lost an answer; the client sent again */
            for (int j = 0; j < t->nsessions; j++) lost |= t->fault_retried[j];
            if (lost) {
                /* the 201 may be the lost answer: at most one 201, and every answer, the
                 * retry's too, is 2xx with the Submission that is stored */
                for (int j = 0; j < t->nsessions; j++) {
                    const pgr_response *a = &t->resp[j];
                    bool ok = (a->status == 200 || a->status == 201) && have[i] && subs[i] >= 1 && a->id == sub_id[i];
                    if (n201 > 1 || !ok) {
                        pgr_violation(b, t, INV_ONE_CREATED, "S%d%s answered %d (id %lld); the stored Submission is %lld",
                                      j + 1, t->fault_retried[j] ? "'s retry after the fault" : "", a->status, a->id,
                                      have[i] && subs[i] >= 1 ? sub_id[i] : -1LL);
                        break;
                    }
                }
            } else if (n201 != 1) {
                pgr_violation(b, t, INV_ONE_CREATED, "%d sessions answered 201 for the same invite", n201);
            } else if (have[i] && subs[i] >= 1 && t->resp[winner].id != sub_id[i]) {
                pgr_violation(b, t, INV_ONE_CREATED, "S%d answered 201 with Submission %lld, which is not the one stored (%lld)",
                              winner + 1, t->resp[winner].id, sub_id[i]);
            } else if (other) {
                const pgr_response *o = &t->resp[other - 1];
                if (o->status == 500)
                    pgr_violation(b, t, INV_ONE_CREATED, "S%d answered 500 (uncaught SQLSTATE %s) while S%d's submission succeeded",
                                  other, o->sqlstate, winner + 1);
                else
                    pgr_violation(b, t, INV_ONE_CREATED, "S%d answered %d (id %lld) while S%d created Submission %lld",
                                  other, o->status, o->id, winner + 1, t->resp[winner].id);
            }
        } else {
            int want = t->kase == CASE_MISSING ? 400 : 410;
            int inv = t->kase == CASE_MISSING ? INV_MISSING : INV_EXPIRED;
            for (int j = 0; j < t->nsessions; j++)
                if (t->resp[j].status != want) {
                    pgr_violation(b, t, inv, "S%d answered %d instead of %d", j + 1, t->resp[j].status, want);
                    break;
                }
            if (have[i] && (used[i] || subs[i] != 0))
                pgr_violation(b, t, inv, "the invite was written: used_at %s, %lld Submission rows",
                              used[i] ? "set" : "NULL", subs[i]);
        }
    }
    return 0;
}

static const pgr_claim invite_claim_claims[] = {
    { "Postgres serializes writes against the same row, so exactly one concurrent caller's UPDATE "
      "matches ... no new Submission row gets inserted", "proposed", INV_ONE_SUBMISSION },
    { "Already used, prior submission found: 200 { id, success: true, idempotent: true } (the second "
      "double-POST returns 200 with the same submission id)", "proposed", INV_ONE_CREATED },
};

static const pgr_variant invite_claim_variants[] = {
    { .name = "original", .kind = PGR_ORIGINAL, .handler = invite_claim_original,
      .fault_expect = { [PGR_FAULT_TIMEOUT] = PGR_RACE, [PGR_FAULT_KILL] = PGR_RACE, [PGR_FAULT_ERROR] = PGR_RACE,
                        [PGR_FAULT_LOST_COMMIT] = PGR_RACE },
      .expect = { PGR_RACE, PGR_RACE, PGR_RACE },
      .summary = "findUnique, then update usedAt and create Submission, each autocommitted" },
    { .name = "proposed", .kind = PGR_PROPOSED, .handler = invite_claim_proposed,
      .fault_expect = { [PGR_FAULT_TIMEOUT] = PGR_RACE, [PGR_FAULT_KILL] = PGR_RACE, [PGR_FAULT_ERROR] = PGR_RACE,
                        [PGR_FAULT_LOST_COMMIT] = PGR_RACE },
      .expect = { PGR_RACE, PGR_RACE, PGR_RACE },
      .summary = "PR #15: updateMany claim, then create Submission; 400/410/200/409 on count 0" },
    { .name = "recommended", .kind = PGR_RECOMMENDED, .ddl = RECOMMENDED_DDL, .handler = invite_claim_recommended,
      .expect = { PGR_SAFE, PGR_SAFE, PGR_SAFE },
      .summary = "claim and Submission in one transaction, unique invite_id, retry on 40001/40P01" },
};

/* The request body: POST /invites/claim { token }. */
static const pgr_field invite_claim_fields[] = {
    { "token", PGR_FIELD_TEXT, 64, false, NULL },           /* invite.token text */
};

const pgr_scenario pgr_scenario_invite_claim = {
    .name = "invite_claim",
    .seed = "001",
    .title = "Atomic invite claim (PR #15): duplicate Submissions from a double POST",
    .ddl = INVITE_CLAIM_DDL,
    .variants = invite_claim_variants,
    .nvariants = 3,
    .cases = invite_claim_cases,
    .ncases = 3,
    .invariants = invite_claim_invariants,
    .ninvariants = 4,
    .claims = invite_claim_claims,
    .nclaims = 2,
    .answer_invariants = 0,      /* the check knows a lost 201 (see invite_claim_check) */
    .prepare = invite_claim_prepare,
    .request = invite_claim_request,
    .check = invite_claim_check,
    .fields = invite_claim_fields,
    .nfields = 1,
};
