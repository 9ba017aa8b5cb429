/*
 * nullifier_submission — seed 004 (WP-004 "Database Transaction Safety"), critical issue 2:
 * "Nullifier Collision Race Condition", src/routes/api/submissions/create/+server.ts.
 *
 * A submission carries a ZK-proof nullifier that may be spent once (double-spend
 * prevention) and, after the fix, an optional client idempotency key.
 *
 *   original     the "Before" code: findFirst({ nullifier }); 409 'Duplicate' when found;
 *                create. Two autocommitted statements; nullifier has a plain
 *                @@index([nullifier]), no unique constraint, and there is no
 *                idempotency_key (the column exists here only so that every variant
 *                shares one table; the original never writes it).
 *   proposed     the seed's fix as written: prisma.$transaction at the database default
 *                isolation: findUnique({ idempotency_key }) -> return the existing
 *                submission; findUnique({ nullifier }) -> throw error(409, 'Duplicate
 *                nullifier') (rolls back); create; plus the seed's migration: unique
 *                indexes submission_nullifier_key and submission_idempotency_key_key.
 *   recommended  one statement: INSERT ... ON CONFLICT DO NOTHING RETURNING id; when it
 *                returns no row, read by idempotency key (a retry: 200 with that id), then
 *                by nullifier (409); the same unique indexes; retry on 40001/40P01 (an
 *                ON CONFLICT under repeatable read or serializable that meets a row
 *                committed after its snapshot).
 *
 * Status codes: the route returns whatever `$transaction` returned, the existing or the
 * new submission, and cannot tell them apart; the seed says a retry gets "HTTP 200, same
 * data", so a created submission is also answered 200 (SvelteKit's json() default).
 * The handlers here are the route's code for both seed-004 scenarios: idempotent_submission.c
 * sends them its retries, overlapping and after the answer (submit_verified.h).
 *
 * The seed's migration runs on PostgreSQL as written; here it is given IF NOT EXISTS so
 * the DDL is idempotent. Its "Rollback Plan" does not: it starts with ALTER TABLE
 * "submission" DROP CONSTRAINT "submission_nullifier_key", but the migration made a unique
 * index, not a constraint, so PostgreSQL answers 42704 (constraint ... does not exist) and,
 * the plan being one script (`prisma db execute --stdin`), nothing after it runs: no index
 * is dropped. The proposed variants carry it as rollback_as_written; pgrace runs it after
 * the migration, in a savepoint, and reports the error (seed_sql in the JSON).
 *
 * What the seed claims, and what measurement showed (2000 trials per cell, 1600 of them
 * contested: 1200 under two keys, 400 without a key; 400 spent nullifiers):
 *   "only one Submission record; database constraint prevents duplicates": holds for the
 *     fix (0 violations in every cell); the original stores the nullifier twice or more in
 *     1381/1600 contested trials at 2 sessions and 1546 at 8 (read committed).
 *   "one succeeds, one throws 409": broken. The loser passes both checks, its INSERT hits
 *     submission_nullifier_key and the 23505 is not caught: 500 in 1237/1600 contested
 *     trials at 2 sessions, 1245 at 8 (read committed); under serializable the same
 *     conflict is 40001 (1316, 1575), also a 500.
 *   recommended: 0 violations in every cell, and in 5000 trials at 8 sessions per level.
 */
#include "submit_verified.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char pgr_submit_verified_ddl[] =
    "CREATE TABLE IF NOT EXISTS submission ("
    "  id bigserial PRIMARY KEY,"
    "  trial_key bigint NOT NULL,"                 /* pgrace's key for the trial, not the app's */
    "  template_id text NOT NULL,"
    "  nullifier text NOT NULL,"
    "  idempotency_key text,"
    "  created_at timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX IF NOT EXISTS submission_trial_idx ON submission (trial_key);";

/* ---------------------------------------------------------------- original ("Before") */

const char pgr_submit_verified_original_ddl[] =                         /* @@index([nullifier]) */
    "CREATE INDEX IF NOT EXISTS submission_nullifier_idx ON submission (nullifier);";
static const char ORIGINAL_FIND[] =                        /* prisma.submission.findFirst */
    "SELECT id FROM submission WHERE nullifier = $1 LIMIT 1";
static const char ORIGINAL_CREATE[] =                      /* prisma.submission.create */
    "INSERT INTO submission (trial_key, template_id, nullifier) VALUES ($1, $2, $3) RETURNING id";

int pgr_submit_verified_original(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    char trial[24];
    pgr_fmt_ll(trial, req->num[0]);
    pgr_res *r = PGR_SQL(s, "find by nullifier", ORIGINAL_FIND, req->text[0]);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    if (r->rows > 0) return 409;                           /* Duplicate */
    r = PGR_SQL(s, "create submission", ORIGINAL_CREATE, trial, req->text[2], req->text[0]);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    resp->id = pgr_int(r, 0, 0);
    return 200;
}

/* ---------------------------------------------------------------- proposed (the seed's fix) */

const char pgr_submit_verified_fix_ddl[] =                         /* the seed's migration */
    "CREATE UNIQUE INDEX IF NOT EXISTS submission_nullifier_key ON submission (nullifier);"
    "CREATE UNIQUE INDEX IF NOT EXISTS submission_idempotency_key_key ON submission (idempotency_key);";
/* The seed's "Rollback Plan", step 1, exactly as written (sent as one script). */
const char pgr_submit_verified_rollback_as_written[] =
    "ALTER TABLE \"submission\" DROP CONSTRAINT \"submission_nullifier_key\";\n"
    "ALTER TABLE \"submission\" DROP CONSTRAINT \"submission_idempotency_key_key\";\n"
    "DROP INDEX IF EXISTS \"submission_nullifier_key\";\n"
    "DROP INDEX IF EXISTS \"submission_idempotency_key_key\";\n";
static const char PROPOSED_FIND_KEY[] =                    /* tx.submission.findUnique({ idempotency_key }) */
    "SELECT id FROM submission WHERE idempotency_key = $1";
static const char PROPOSED_FIND_NULLIFIER[] =              /* tx.submission.findUnique({ nullifier }) */
    "SELECT id FROM submission WHERE nullifier = $1";
static const char PROPOSED_CREATE[] =                      /* tx.submission.create */
    "INSERT INTO submission (trial_key, template_id, nullifier, idempotency_key) "
    "VALUES ($1, $2, $3, NULLIF($4, '')) RETURNING id";

int pgr_submit_verified_proposed(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    const char *nullifier = req->text[0], *key = req->text[1];
    char trial[24];
    pgr_fmt_ll(trial, req->num[0]);
    pgr_res *r = pgr_begin(s);                             /* prisma.$transaction */
    if (!r->ok) return pgr_uncaught(s, r, resp);
    if (key[0]) {
        r = PGR_SQL(s, "find by idempotency key", PROPOSED_FIND_KEY, key);
        if (!r->ok) return pgr_uncaught(s, r, resp);
        if (r->rows == 1) {                                /* return existing: the transaction commits */
            long long id = pgr_int(r, 0, 0);
            r = pgr_commit(s);
            if (!r->ok) return pgr_uncaught(s, r, resp);
            resp->id = id;
            return 200;
        }
    }
    r = PGR_SQL(s, "find by nullifier", PROPOSED_FIND_NULLIFIER, nullifier);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    if (r->rows == 1) { pgr_rollback(s); return 409; }     /* throw error(409, 'Duplicate nullifier') */
    r = PGR_SQL(s, "create submission", PROPOSED_CREATE, trial, req->text[2], nullifier, key);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    long long id = pgr_int(r, 0, 0);
    r = pgr_commit(s);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    resp->id = id;
    return 200;
}

/* ---------------------------------------------------------------- recommended */

/* the same unique indexes as the fix (pgr_submit_verified_fix_ddl) */
static const char RECOMMENDED_CREATE[] =
    "INSERT INTO submission (trial_key, template_id, nullifier, idempotency_key) "
    "VALUES ($1, $2, $3, NULLIF($4, '')) ON CONFLICT DO NOTHING RETURNING id";
static const char RECOMMENDED_FIND_KEY[] =
    "SELECT id FROM submission WHERE idempotency_key = $1";
static const char RECOMMENDED_FIND_NULLIFIER[] =
    "SELECT id FROM submission WHERE nullifier = $1";

int pgr_submit_verified_recommended(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    const char *nullifier = req->text[0], *key = req->text[1];
    char trial[24];
    pgr_fmt_ll(trial, req->num[0]);
    for (s->attempt = 0; s->attempt < 10; s->attempt++) {
        pgr_res *r = PGR_SQL(s, "create submission", RECOMMENDED_CREATE, trial, req->text[2], nullifier, key);
        if (pgr_retryable(r)) continue;
        if (!r->ok) return pgr_uncaught(s, r, resp);
        if (r->rows == 1) { resp->id = pgr_int(r, 0, 0); return 200; }
        if (key[0]) {                                      /* the key is taken: a retry */
            r = PGR_SQL(s, "find by idempotency key", RECOMMENDED_FIND_KEY, key);
            if (pgr_retryable(r)) continue;
            if (!r->ok) return pgr_uncaught(s, r, resp);
            if (r->rows == 1) { resp->id = pgr_int(r, 0, 0); return 200; }
        }
        r = PGR_SQL(s, "find by nullifier", RECOMMENDED_FIND_NULLIFIER, nullifier);
        if (pgr_retryable(r)) continue;
        if (!r->ok) return pgr_uncaught(s, r, resp);
        if (r->rows == 1) return 409;                      /* Duplicate nullifier */
        /* neither: the conflicting row is gone (rolled back); try again */
    }
    return 503;
}

/* ---------------------------------------------------------------- requests and checks */

enum { CASE_TWO_KEYS, CASE_NO_KEY, CASE_SPENT };
static const pgr_case nullifier_submission_cases[] = {
    { "same_nullifier_two_keys", 6, "every session submits the same nullifier under its own idempotency key at once (seed test 2)" },
    { "same_nullifier_no_key", 2, "every session submits the same nullifier without an idempotency key (it is optional)" },
    { "nullifier_spent", 2, "every session submits, under a new key, a nullifier an earlier submission spent" },
};

enum { INV_ONE_ROW, INV_LOSER_409, INV_NO_LOST };
static const char *const nullifier_submission_invariants[] = {
    "exactly one Submission per nullifier",
    "one request succeeds; every other gets 409, never 500",
    "every 200 answer's Submission exists",
};

/* Nullifiers and keys start with a multiplicative hash (Knuth's) of the trial key and
 * session, so that, like the real hex nullifiers and crypto.randomUUID() keys, they land
 * all over the unique indexes instead of all on the rightmost leaf page (which would
 * exaggerate SSI's page-level predicate-lock conflicts under serializable). PREPARE_SPENT
 * computes the same nullifier in SQL. */
static unsigned long long mix32(long long k, int slot, unsigned long long mult)
{
    return ((unsigned long long)k * 64 + (unsigned)slot) * mult % 4294967296ULL;
}

static void nullifier_submission_request(void *ctx, const pgr_trial *t, int session, pgr_request *req)
{
    (void)ctx;
    snprintf(req->text[0], sizeof req->text[0], "0x%08llx-%lld", mix32(t->key, 0, 2654435761ULL), t->key);
    if (t->kase != CASE_NO_KEY)
        snprintf(req->text[1], sizeof req->text[1], "%08llx-%lld-%d", mix32(t->key, session, 2246822519ULL),
                 t->key, session);
    snprintf(req->text[2], sizeof req->text[2], "tpl-%d", session);
    req->num[0] = t->key;
}

/* One INSERT for the batch: the earlier submission that spent the nullifier. */
static const char PREPARE_SPENT[] =
    "INSERT INTO submission (trial_key, template_id, nullifier, idempotency_key) "
    "SELECT k, 'tpl-earlier', "
    "       '0x' || lpad(to_hex(((k::numeric * 64 * 2654435761) % 4294967296)::bigint), 8, '0') || '-' || k, "
    "       'earlier-' || k "
    "FROM generate_series($1::bigint, $2::bigint) k "
    "WHERE substr($3, (k - $1)::int + 1, 1) = 's'";

static int nullifier_submission_prepare(pgr_batch *b)
{
    static const char code[CASE_SPENT + 1] = { [CASE_SPENT] = 's' };   /* the rest: '-' */
    return pgr_prepare_by_case(b, PREPARE_SPENT, code, 3);
}

static const char CHECK_SUBMISSIONS[] =
    "SELECT trial_key, id, split_part(nullifier, '-', 2) = trial_key::text, "
    "       coalesce(idempotency_key LIKE 'earlier-%', false) "
    "FROM submission WHERE trial_key BETWEEN $1 AND $2 ORDER BY trial_key, id";

#define MAX_ROWS 16   /* rows remembered per trial (more are counted) */

typedef struct trial_rows {
    int n;
    bool earlier;                /* the prepared earlier submission is there */
    bool foreign;                /* a row with another trial's nullifier */
    long long id[MAX_ROWS];
} trial_rows;

static bool row_exists(const trial_rows *tr, long long id)
{
    for (int i = 0; i < tr->n && i < MAX_ROWS; i++)
        if (tr->id[i] == id) return true;
    return false;
}

static void check_trial(pgr_batch *b, const pgr_trial *t, const trial_rows *tr)
{
    int want_rows = 1, want200 = t->kase == CASE_SPENT ? 0 : 1;
    int n200 = 0, w200 = -1, w200b = -1, bad = -1;
    for (int j = 0; j < t->nsessions; j++) {
        int st = t->resp[j].status;
        if (st == 200) { n200++; if (w200 < 0) w200 = j; else if (w200b < 0) w200b = j; }
        else if (st != 409 && bad < 0) bad = j;
    }
    if (tr->n != want_rows || tr->foreign)
        pgr_violation(b, t, INV_ONE_ROW, "trial %lld's nullifier is stored in %d Submissions (%d sessions answered 200)",
                      t->key, tr->n, n200);
    if (bad >= 0) {
        const pgr_response *o = &t->resp[bad];
        if (o->status == 500 && w200 >= 0)
            pgr_violation(b, t, INV_LOSER_409, "S%d answered 500 (uncaught SQLSTATE %s) instead of 409 while S%d "
                          "created Submission %lld", bad + 1, o->sqlstate, w200 + 1, t->resp[w200].id);
        else if (o->status == 500)
            pgr_violation(b, t, INV_LOSER_409, "S%d answered 500 (uncaught SQLSTATE %s) instead of 409",
                          bad + 1, o->sqlstate);
        else
            pgr_violation(b, t, INV_LOSER_409, "S%d answered %d", bad + 1, o->status);
    } else if (n200 != want200) {
        if (w200b >= 0)
            pgr_violation(b, t, INV_LOSER_409, "%d sessions answered 200 for one nullifier: S%d (Submission %lld) "
                          "and S%d (Submission %lld)", n200, w200 + 1, t->resp[w200].id, w200b + 1, t->resp[w200b].id);
        else
            pgr_violation(b, t, INV_LOSER_409, "%d sessions answered 200 (expected %d)", n200, want200);
    }
    for (int j = 0; j < t->nsessions; j++)
        if (t->resp[j].status == 200 && (!row_exists(tr, t->resp[j].id) || t->resp[j].id < 0)) {
            pgr_violation(b, t, INV_NO_LOST, "S%d answered 200 with Submission %lld, which does not exist",
                          j + 1, t->resp[j].id);
            break;
        }
}

static int nullifier_submission_check(pgr_batch *b)
{
    char lo[24], hi[24];
    pgr_fmt_ll(lo, b->key_lo);
    pgr_fmt_ll(hi, b->key_hi);
    PGresult *r = pgr_admin(b, CHECK_SUBMISSIONS, 2, (const char *[]){ lo, hi });
    if (!r) return -1;
    trial_rows *rows = calloc((size_t)b->ntrials, sizeof *rows);
    if (!rows) { PQclear(r); snprintf(b->err, sizeof b->err, "out of memory"); return -1; }
    for (int i = 0; i < PQntuples(r); i++) {
        long long k = atoll(PQgetvalue(r, i, 0)) - b->key_lo;
        if (k < 0 || k >= b->ntrials) continue;
        trial_rows *tr = &rows[k];
        if (tr->n < MAX_ROWS) tr->id[tr->n] = atoll(PQgetvalue(r, i, 1));
        tr->n++;
        if (PQgetvalue(r, i, 2)[0] != 't') tr->foreign = true;
        if (PQgetvalue(r, i, 3)[0] == 't') tr->earlier = true;
    }
    PQclear(r);
    for (int i = 0; i < b->ntrials; i++) {
        const pgr_trial *t = &b->trials[i];
        if (t->kase == CASE_SPENT && !rows[i].earlier) {
            free(rows);
            snprintf(b->err, sizeof b->err, "trial %lld lost its prepared submission", t->key);
            return -1;
        }
        check_trial(b, t, &rows[i]);
    }
    free(rows);
    return 0;
}

static const pgr_claim nullifier_submission_claims[] = {
    { "Expected: Only one Submission record created; database constraint prevents duplicates",
      "proposed", INV_ONE_ROW },
    { "Expected: One succeeds, one throws 409 Conflict", "proposed", INV_LOSER_409 },
};

static const pgr_variant nullifier_submission_variants[] = {
    { .name = "original", .kind = PGR_ORIGINAL, .ddl = pgr_submit_verified_original_ddl, .handler = pgr_submit_verified_original,
      .expect = { PGR_RACE, PGR_RACE, PGR_RACE },
      .summary = "findFirst(nullifier) then create, autocommitted; no unique constraint" },
    { .name = "proposed", .kind = PGR_PROPOSED, .ddl = pgr_submit_verified_fix_ddl, .handler = pgr_submit_verified_proposed,
      .rollback_as_written = pgr_submit_verified_rollback_as_written,
      .expect = { PGR_RACE, PGR_RACE, PGR_RACE },
      .summary = "WP-004: $transaction (key check, nullifier check 409, create) + unique nullifier and key" },
    { .name = "recommended", .kind = PGR_RECOMMENDED, .ddl = pgr_submit_verified_fix_ddl, .handler = pgr_submit_verified_recommended,
      .expect = { PGR_SAFE, PGR_SAFE, PGR_SAFE },
      .summary = "INSERT ... ON CONFLICT DO NOTHING RETURNING; else key -> 200, nullifier -> 409; retry on 40001" },
};

/* The submissions/create body; the idempotency key is optional (empty: none sent). */
static const pgr_field nullifier_submission_fields[] = {
    { "nullifier", PGR_FIELD_TEXT, 64, false, NULL },       /* submission.nullifier text */
    { "idempotencyKey", PGR_FIELD_TEXT, 64, true, NULL },   /* submission.idempotency_key text */
    { "templateId", PGR_FIELD_TEXT, 64, false, NULL },      /* submission.template_id text */
};

const pgr_scenario pgr_scenario_nullifier_submission = {
    .name = "nullifier_submission",
    .seed = "004",
    .title = "WP-004 nullifier uniqueness: one Submission per nullifier, the loser gets 409",
    .ddl = pgr_submit_verified_ddl,
    .variants = nullifier_submission_variants,
    .nvariants = 3,
    .cases = nullifier_submission_cases,
    .ncases = 3,
    .invariants = nullifier_submission_invariants,
    .ninvariants = 3,
    .claims = nullifier_submission_claims,
    .nclaims = (int)(sizeof nullifier_submission_claims / sizeof nullifier_submission_claims[0]),
    .answer_invariants = 1u << INV_LOSER_409,
    .prepare = nullifier_submission_prepare,
    .request = nullifier_submission_request,
    .check = nullifier_submission_check,
    .fields = nullifier_submission_fields,
    .nfields = 3,
};
