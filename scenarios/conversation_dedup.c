/*
 * conversation_dedup — seed 002: "Implement database-level deduplication for conversation
 * creation" (issue 007).
 *
 * POST /api/messages/conversations creates the conversation of an (agency, user) pair and
 * its initial message. A timed-out client check, a double click, a client retry or two
 * tabs send it again. The route talks to the database through Supabase (PostgREST): every
 * call below is ONE autocommitted statement, so no two of them share a transaction.
 *
 *   original     the POST as the seed describes it today: no server-side check at all (the
 *                seed lists "API checks for existing conversation before insert
 *                (maybeSingle)" among its acceptance criteria, i.e. as new work, and says the
 *                POST "creates duplicate" after the client's check timed out): insert the
 *                conversation, insert the initial message, 201. No constraint. Every POST
 *                creates a conversation, an existing one or not.
 *   proposed     the seed's API implementation exactly: STEP 1 check (.maybeSingle(), its
 *                error ignored: `const { data: existing }`) -> 200; STEP 2 insert; on 23505
 *                STEP 3 re-select with .single() -> 200, or 500 "Failed to retrieve
 *                conversation after concurrent creation" when it errs or finds no row; other
 *                errors -> 500; STEP 4 insert the initial message (an error is thrown into
 *                the catch -> 500), then 201. The seed's constraint
 *                    ALTER TABLE conversations ADD CONSTRAINT unique_agency_user_conversation
 *                    UNIQUE (context_type, context_id, created_by) WHERE context_type = ...;
 *                does NOT run on PostgreSQL (a table constraint has no WHERE clause:
 *                42601 syntax error at or near "WHERE"). It is kept in .ddl_as_written; the
 *                variant runs the closest faithful form, a partial unique index with the
 *                same name, columns and WHERE.
 *   recommended  one transaction (in Supabase: one rpc() to a plpgsql function):
 *                INSERT ... ON CONFLICT (context_type, context_id, created_by)
 *                WHERE context_type = 'agency_inquiry' DO NOTHING RETURNING id; a row ->
 *                insert the initial message in the same transaction, COMMIT, 201; no row ->
 *                select the existing conversation, 200. The same partial unique index.
 *                The whole transaction is retried on 40001/40P01 (under repeatable read and
 *                serializable ON CONFLICT raises 40001 when the conflicting row was committed
 *                after the transaction's snapshot).
 *
 * What the seed claims: the unique constraint "ensures exactly one conversation per
 * agency-user pair, with race conditions handled by catching ... 23505"; duplicates get
 * "200 with existing conversation"; "safe to retry on any error". The first two hold once the
 * constraint is written as an index. What the seed does not see is the initial message:
 *   - STEP 4 runs after the conversation has committed on its own. A concurrent request
 *     that finds the conversation in that window (STEP 1 or the STEP 3 re-select) answers
 *     200, and the client opens a conversation whose initial message does not exist yet.
 *   - When STEP 4 fails (here: a CHECK rejects the message, standing in for any failure of
 *     that insert: timeout, lost connection), the conversation stays without its message,
 *     the request answers 500, and its retry ("safe to retry on any error") answers 200 with
 *     the messageless conversation: the message is lost for good, and the client is told it
 *     worked. No concurrency is needed for this one (-c 1 shows it).
 * The window of the first point is short: the check counts only a read that had COMPLETED
 * before the winner even sent its message INSERT (a lower bound on the real window, which
 * lasts until that INSERT commits).
 * Under repeatable read / serializable the STEP 3 re-select is its own autocommitted
 * statement with a fresh snapshot, taken after the 23505 (which PostgreSQL reports only
 * after the winner committed), so it always sees the winner's row: the 500 branch of STEP 3
 * is never taken. (Were STEPs 1-3 one transaction, the 23505 would abort it and the
 * re-select could not run at all; Supabase cannot express that anyway.)
 * Every 200 in the seed (and here, by the seed's contract) drops the initial message the
 * user typed: "create nothing" for an existing conversation.
 *
 * Measured (2000 trials per cell, 2 and 8 sessions, all three isolation levels):
 *   original     a duplicate in every trial with more than one POST for a pair (1668 of 2000:
 *                double click, retry, two tabs, and the existing conversation answered 201
 *                next to a new one), at every isolation level and session count, and at -c 1
 *                (666: retries and existing conversations): no concurrency needed.
 *   proposed     0 duplicates, 0 500s for a duplicate, 23505 caught every time; 166 of 166
 *                failing-message trials leave a conversation without its message and answer
 *                200 to the retry; 0-7 trials at 2 sessions and 25-27 at 8 answer 200 before
 *                the winner sent its message INSERT.
 *   recommended  0 violations (40001 retried under repeatable read and serializable).
 */
#include "pgrace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char CONVERSATION_DEDUP_DDL[] =
    "CREATE TABLE IF NOT EXISTS conversations ("
    "  id bigserial PRIMARY KEY,"
    "  context_type text NOT NULL,"
    "  context_id bigint NOT NULL,"                  /* the agency; pgrace's trial key */
    "  created_by text NOT NULL,"                    /* the user */
    "  created_at timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX IF NOT EXISTS conversations_context_idx ON conversations (context_id, created_by);"
    "CREATE TABLE IF NOT EXISTS messages ("
    "  id bigserial PRIMARY KEY,"
    "  conversation_id bigint NOT NULL REFERENCES conversations(id),"
    "  sender_id text NOT NULL,"
    "  content text NOT NULL CHECK (btrim(content) <> ''),"   /* STEP 4 can fail */
    "  created_at timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX IF NOT EXISTS messages_conversation_idx ON messages (conversation_id);";

/* The seed's constraint as written, and the closest form PostgreSQL accepts. */
static const char SEED_CONSTRAINT_AS_WRITTEN[] =
    "ALTER TABLE conversations ADD CONSTRAINT unique_agency_user_conversation "
    "UNIQUE (context_type, context_id, created_by) WHERE context_type = 'agency_inquiry';";
static const char PARTIAL_UNIQUE_INDEX[] =
    "CREATE UNIQUE INDEX IF NOT EXISTS unique_agency_user_conversation "
    "ON conversations (context_type, context_id, created_by) WHERE context_type = 'agency_inquiry';";

/* Request fields: text[0] agency id, text[1] user id, text[2] initial message. */

/* ---------------------------------------------------------------- original */

static const char ORIGINAL_INSERT[] =                      /* .insert({...}).select().single() */
    "INSERT INTO conversations (context_type, context_id, created_by) "
    "VALUES ('agency_inquiry', $1, $2) RETURNING id";
static const char ORIGINAL_MESSAGE[] =
    "INSERT INTO messages (conversation_id, sender_id, content) VALUES ($1, $2, $3) RETURNING id";

/* The POST as the seed describes it today: no check on the server ("API checks for existing
 * conversation before insert (maybeSingle)" is an acceptance criterion, i.e. new work); the
 * only check is the client's GET, which the existing_conversation case has timed out. */
static int conversation_dedup_original(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    const char *agency = req->text[0], *user = req->text[1], *content = req->text[2];
    pgr_res *r = PGR_SQL(s, "insert conversation", ORIGINAL_INSERT, agency, user);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    char conv_id[24];
    snprintf(conv_id, sizeof conv_id, "%s", pgr_val(r, 0, 0));
    r = PGR_SQL(s, "create message", ORIGINAL_MESSAGE, conv_id, user, content);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    resp->id = atoll(conv_id);
    return 201;
}

/* ---------------------------------------------------------------- proposed (the seed) */

static const char PROPOSED_CHECK[] =                       /* STEP 1: .maybeSingle() */
    "SELECT id FROM conversations "
    "WHERE context_type = 'agency_inquiry' AND context_id = $1 AND created_by = $2";
static const char PROPOSED_INSERT[] =                      /* STEP 2: .insert().select().single() */
    "INSERT INTO conversations (context_type, context_id, created_by) "
    "VALUES ('agency_inquiry', $1, $2) RETURNING id";
static const char PROPOSED_RESELECT[] =                    /* STEP 3: .single() */
    "SELECT id FROM conversations "
    "WHERE context_type = 'agency_inquiry' AND context_id = $1 AND created_by = $2";
static const char PROPOSED_MESSAGE[] =                     /* STEP 4 */
    "INSERT INTO messages (conversation_id, sender_id, content) VALUES ($1, $2, $3) RETURNING id";

static int conversation_dedup_proposed(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    const char *agency = req->text[0], *user = req->text[1], *content = req->text[2];
    /* STEP 1: `const { data: existing }` — an error (or PGRST116) leaves data null: go on */
    pgr_res *r = PGR_SQL(s, "check existing", PROPOSED_CHECK, agency, user);
    if (r->ok && r->rows == 1) { resp->id = pgr_int(r, 0, 0); return 200; }
    /* STEP 2 */
    r = PGR_SQL(s, "insert conversation", PROPOSED_INSERT, agency, user);
    if (!r->ok) {
        if (!pgr_is(r, "23505")) return pgr_uncaught(s, r, resp);    /* throw error -> 500 */
        /* STEP 3: another request created it — fetch and return */
        r = PGR_SQL(s, "re-select", PROPOSED_RESELECT, agency, user);
        if (!r->ok) return pgr_uncaught(s, r, resp);
        if (r->rows != 1) return 500;   /* Failed to retrieve conversation after concurrent creation */
        resp->id = pgr_int(r, 0, 0);
        return 200;
    }
    char conv_id[24];
    snprintf(conv_id, sizeof conv_id, "%s", pgr_val(r, 0, 0));
    /* STEP 4: create the initial message; its error is thrown into the catch */
    r = PGR_SQL(s, "create message", PROPOSED_MESSAGE, conv_id, user, content);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    resp->id = atoll(conv_id);
    return 201;
}

/* ---------------------------------------------------------------- recommended */

static const char RECOMMENDED_INSERT[] =
    "INSERT INTO conversations (context_type, context_id, created_by) "
    "VALUES ('agency_inquiry', $1, $2) "
    "ON CONFLICT (context_type, context_id, created_by) WHERE context_type = 'agency_inquiry' "
    "DO NOTHING RETURNING id";
static const char RECOMMENDED_MESSAGE[] =
    "INSERT INTO messages (conversation_id, sender_id, content) VALUES ($1, $2, $3) RETURNING id";
static const char RECOMMENDED_EXISTING[] =
    "SELECT id FROM conversations "
    "WHERE context_type = 'agency_inquiry' AND context_id = $1 AND created_by = $2";

/* One attempt; PGR_RETRY when the transaction hit a serialization failure or deadlock. */
static int conversation_dedup_recommended_once(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    const char *agency = req->text[0], *user = req->text[1], *content = req->text[2];
    pgr_res *r = pgr_begin(s);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    r = PGR_SQL(s, "insert conversation", RECOMMENDED_INSERT, agency, user);
    if (pgr_retryable(r)) { pgr_rollback(s); return PGR_RETRY; }
    if (!r->ok) return pgr_uncaught(s, r, resp);
    int status;
    if (r->rows == 1) {
        char conv_id[24];
        snprintf(conv_id, sizeof conv_id, "%s", pgr_val(r, 0, 0));
        r = PGR_SQL(s, "create message", RECOMMENDED_MESSAGE, conv_id, user, content);
        if (pgr_retryable(r)) { pgr_rollback(s); return PGR_RETRY; }
        if (!r->ok) return pgr_uncaught(s, r, resp);      /* the conversation rolls back too */
        resp->id = atoll(conv_id);
        status = 201;
    } else {
        /* DO NOTHING: a committed conversation exists (ON CONFLICT waited for its inserter) */
        r = PGR_SQL(s, "select existing", RECOMMENDED_EXISTING, agency, user);
        if (pgr_retryable(r)) { pgr_rollback(s); return PGR_RETRY; }
        if (!r->ok) return pgr_uncaught(s, r, resp);
        if (r->rows != 1) { pgr_rollback(s); return 500; }
        resp->id = pgr_int(r, 0, 0);
        status = 200;
    }
    r = pgr_commit(s);
    if (pgr_retryable(r)) { resp->id = -1; return PGR_RETRY; }
    if (!r->ok) return pgr_uncaught(s, r, resp);
    return status;
}

static int conversation_dedup_recommended(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    return pgr_retry(s, 10, conversation_dedup_recommended_once, req, resp);   /* 503: gave up retrying */
}

/* ---------------------------------------------------------------- requests and cases */

enum { CASE_DOUBLE_CLICK, CASE_RETRY, CASE_TABS, CASE_EXISTING, CASE_TWO_USERS, CASE_MESSAGE_FAILS };
static const pgr_case conversation_dedup_cases[] = {
    { "double_click", 4, "every session POSTs the same agency, user and message at once" },
    { "retry_after_error", 2, "every session POSTs at once, then sends the same request again after its answer" },
    { "concurrent_same_user", 2, "the same user POSTs from every session (tab) at once, each with its own message" },
    { "existing_conversation", 2, "the conversation already exists (the client's check timed out): every session POSTs" },
    { "different_users", 1, "each session is a different user of the same agency" },
    { "message_fails", 1, "every session POSTs at once, the initial message INSERT fails (a CHECK rejects it), "
                          "and each sends again after its answer" },
};

enum { INV_ONE_CONV, INV_SAME_ID, INV_ONE_CREATED, INV_NO_500, INV_HAS_MESSAGE, INV_MESSAGE_FIRST,
       INV_EXISTING, INV_OWN_CONV };
static const char *const conversation_dedup_invariants[] = {
    "exactly one conversation per agency-user pair",
    "every answer carries the same conversation id, the stored one",
    "exactly one 201; every other answer 200",
    "no 500 for a duplicate request",
    "every conversation has its initial message (no answered conversation without it)",
    "nobody is sent to a conversation before its initial message is stored",
    "an existing conversation gets 200 with its id and nothing is created",
    "different users of one agency each get their own conversation",
};

static void conversation_dedup_request(void *ctx, const pgr_trial *t, int session, pgr_request *req)
{
    (void)ctx;
    snprintf(req->text[0], sizeof req->text[0], "%lld", t->key);
    if (t->kase == CASE_TWO_USERS)
        snprintf(req->text[1], sizeof req->text[1], "user-%lld-%d", t->key, session + 1);
    else
        snprintf(req->text[1], sizeof req->text[1], "user-%lld", t->key);
    if (t->kase == CASE_MESSAGE_FAILS)
        req->text[2][0] = '\0';                             /* rejected by messages' CHECK */
    else if (t->kase == CASE_TABS || t->kase == CASE_TWO_USERS)
        snprintf(req->text[2], sizeof req->text[2], "hello from tab %d", session + 1);
    else
        snprintf(req->text[2], sizeof req->text[2], "hello, agency %lld", t->key);
    if (t->kase == CASE_RETRY || t->kase == CASE_MESSAGE_FAILS) req->sends = 2;
}

/* One statement for the batch: the existing conversation and its message ('x' trials). */
static const char PREPARE_EXISTING[] =
    "WITH c AS ("
    "  INSERT INTO conversations (context_type, context_id, created_by) "
    "  SELECT 'agency_inquiry', k, 'user-' || k FROM generate_series($1::bigint, $2::bigint) k "
    "  WHERE substr($3, (k - $1)::int + 1, 1) = 'x' RETURNING id, created_by) "
    "INSERT INTO messages (conversation_id, sender_id, content) "
    "SELECT id, created_by, 'the first message' FROM c";

static int conversation_dedup_prepare(pgr_batch *b)
{
    static const char code[CASE_MESSAGE_FAILS + 1] = { [CASE_EXISTING] = 'x' };   /* the rest: '-' */
    return pgr_prepare_by_case(b, PREPARE_EXISTING, code, 3);
}

/* ---------------------------------------------------------------- checks */

/* Every conversation of the batch with its message count and first message. */
static const char CHECK_CONVERSATIONS[] =
    "SELECT c.context_id, c.id, c.created_by, count(m.id), "
    "  (array_agg(m.content ORDER BY m.id))[1] "
    "FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id "
    "WHERE c.context_id BETWEEN $1 AND $2 "
    "GROUP BY c.context_id, c.id, c.created_by ORDER BY c.context_id, c.id";

typedef struct conv_row {
    long long id;
    const char *user;
    long long nmsg;
    const char *content;         /* first message, NULL when none */
} conv_row;

/* A session's answers in order: its first and, when it sent twice, its last. */
static int answers_of(const pgr_trial *t, int j, const pgr_response **out)
{
    out[0] = &t->first[j];
    if (t->sends[j] > 1) { out[1] = &t->resp[j]; return 2; }
    return 1;
}

static bool is_read(const pgr_step *st)
{
    return strcmp(st->label, "check existing") == 0 || strcmp(st->label, "re-select") == 0 ||
           strcmp(st->label, "select existing") == 0;
}

/* When the committed initial message became visible at the latest: the send of the
 * statement that committed it (the INSERT itself when autocommitted, else its COMMIT).
 * 0 when the trace does not show one. *who gets the session. */
static int64_t message_commit_send(const pgr_trial *t, int *who)
{
    for (int j = 0; j < t->nsessions; j++) {
        const pgr_step *tr = PGR_TRACE_AT(t->trace, j, 0);
        int n = t->nsteps[j] < PGR_MAX_STEPS ? t->nsteps[j] : PGR_MAX_STEPS;
        for (int k = 0; k < n; k++) {
            if (strcmp(tr[k].label, "create message") != 0 || strcmp(tr[k].sqlstate, "00000") != 0)
                continue;
            bool in_tx = false;                 /* was there a BEGIN of this attempt before it? */
            for (int q = k - 1; q >= 0 && !in_tx; q--)
                if (strcmp(tr[q].label, "begin") == 0) in_tx = true;
            if (!in_tx) { *who = j; return tr[k].t_send_ns; }
            if (k + 1 < n && strcmp(tr[k + 1].label, "commit") == 0 &&
                strcmp(tr[k + 1].sqlstate, "00000") == 0) { *who = j; return tr[k + 1].t_send_ns; }
        }
    }
    return 0;
}

static void check_dedup_trial(pgr_batch *b, const pgr_trial *t, const conv_row *c, int nc)
{
    /* answers */
    int n201 = 0, winner = -1, n500 = 0, first500 = -1, odd = -1, mismatch = -1;
    const pgr_response *mis = NULL;
    long long id201 = -1;
    for (int j = 0; j < t->nsessions; j++) {
        const pgr_response *a[2];
        int na = answers_of(t, j, a);
        for (int k = 0; k < na; k++) {
            if (a[k]->status == 201) { n201++; if (winner < 0) { winner = j; id201 = a[k]->id; } }
            else if (a[k]->status == 500) { n500++; if (first500 < 0) first500 = j; }
            else if (a[k]->status != 200 && odd < 0) odd = j;
        }
    }
    long long stored = nc >= 1 ? c[0].id : -1;
    for (int j = 0; j < t->nsessions && mismatch < 0; j++) {
        const pgr_response *a[2];
        int na = answers_of(t, j, a);
        for (int k = 0; k < na; k++)
            if ((a[k]->status == 200 || a[k]->status == 201) && (nc != 1 || a[k]->id != stored)) {
                mismatch = j;
                mis = a[k];
                break;
            }
    }

    if (nc != 1)
        pgr_violation(b, t, INV_ONE_CONV, "%d conversations for one agency-user pair (%d answers of 201)", nc, n201);
    if (mismatch >= 0) {
        const pgr_response *a = mis;
        if (nc == 1)
            pgr_violation(b, t, INV_SAME_ID, "S%d answered %d with conversation %lld; the stored one is %lld",
                          mismatch + 1, a->status, a->id, stored);
        else
            pgr_violation(b, t, INV_SAME_ID, "S%d answered %d with conversation %lld, one of %d stored for the pair",
                          mismatch + 1, a->status, a->id, nc);
    }
    if (n201 != 1)
        pgr_violation(b, t, INV_ONE_CREATED, "%d answers of 201 for one agency-user pair", n201);
    else if (odd >= 0)
        pgr_violation(b, t, INV_ONE_CREATED, "S%d answered %d while S%d created conversation %lld",
                      odd + 1, t->resp[odd].status, winner + 1, id201);
    if (n500 > 0) {
        const pgr_response *a = &t->resp[first500];
        if (a->status != 500) a = &t->first[first500];
        if (winner >= 0)
            pgr_violation(b, t, INV_NO_500, "S%d answered 500%s%s while S%d created conversation %lld",
                          first500 + 1, a->sqlstate[0] ? " with SQLSTATE " : " (PGRST116: several rows)",
                          a->sqlstate, winner + 1, id201);
        else
            pgr_violation(b, t, INV_NO_500, "S%d answered 500%s%s for a duplicate request", first500 + 1,
                          a->sqlstate[0] ? " with SQLSTATE " : " (PGRST116: several rows)", a->sqlstate);
    }

    /* the initial message */
    for (int i = 0; i < nc; i++)
        if (c[i].nmsg == 0) {
            pgr_violation(b, t, INV_HAS_MESSAGE, "conversation %lld has no initial message (%d answers of 201)",
                          c[i].id, n201);
            break;
        }
    if (t->kase == CASE_TABS && nc == 1 && c[0].nmsg >= 1 && winner >= 0) {
        pgr_request wreq;
        memset(&wreq, 0, sizeof wreq);
        conversation_dedup_request(b->ctx, t, winner, &wreq);
        if (strcmp(c[0].content, wreq.text[2]) != 0)
            pgr_violation(b, t, INV_HAS_MESSAGE, "S%d created conversation %lld but its first message is '%s'",
                          winner + 1, c[0].id, c[0].content);
    }

    /* nobody found the conversation before its message was committed */
    if (nc == 1 && c[0].nmsg >= 1) {
        int who = -1;
        int64_t visible = message_commit_send(t, &who);
        for (int j = 0; j < t->nsessions && visible; j++) {
            const pgr_step *tr = PGR_TRACE_AT(t->trace, j, 0);
            int n = t->nsteps[j] < PGR_MAX_STEPS ? t->nsteps[j] : PGR_MAX_STEPS;
            for (int k = 0; k < n; k++)
                if (is_read(&tr[k]) && strcmp(tr[k].sqlstate, "00000") == 0 && tr[k].rows == 1 &&
                    tr[k].t_done_ns < visible) {
                    pgr_violation(b, t, INV_MESSAGE_FIRST,
                                  "S%d's %s found conversation %lld (answer 200) %lld us before S%d even sent "
                                  "the statement committing its initial message",
                                  j + 1, tr[k].label, c[0].id, (long long)((visible - tr[k].t_done_ns) / 1000), who + 1);
                    j = t->nsessions;
                    break;
                }
        }
    }
}

static void check_existing_trial(pgr_batch *b, const pgr_trial *t, const conv_row *c, int nc)
{
    long long prepared = nc >= 1 ? c[0].id : -1;    /* prepared before the trial: lowest id */
    if (nc != 1)
        pgr_violation(b, t, INV_ONE_CONV, "%d conversations for one agency-user pair", nc);
    for (int j = 0; j < t->nsessions; j++) {
        const pgr_response *a = &t->resp[j];
        if (a->status == 500)
            pgr_violation(b, t, INV_NO_500, "S%d answered 500%s%s for an existing conversation", j + 1,
                          a->sqlstate[0] ? " with SQLSTATE " : "", a->sqlstate);
        if (a->status != 200 || a->id != prepared) {
            pgr_violation(b, t, INV_EXISTING, "S%d answered %d with conversation %lld; conversation %lld existed",
                          j + 1, a->status, a->id, prepared);
            break;
        }
    }
    if (nc >= 1 && c[0].nmsg != 1)
        pgr_violation(b, t, INV_EXISTING, "the existing conversation %lld now has %lld messages", prepared, c[0].nmsg);
    if (nc > 1)
        pgr_violation(b, t, INV_EXISTING, "%d new conversations created next to the existing %lld", nc - 1, prepared);
}

static void check_users_trial(pgr_batch *b, const pgr_trial *t, const conv_row *c, int nc)
{
    if (nc != t->nsessions)
        pgr_violation(b, t, INV_OWN_CONV, "%d conversations for %d users", nc, t->nsessions);
    for (int j = 0; j < t->nsessions; j++) {
        pgr_request req;
        memset(&req, 0, sizeof req);
        conversation_dedup_request(b->ctx, t, j, &req);
        const pgr_response *a = &t->resp[j];
        int found = -1;
        for (int i = 0; i < nc; i++)
            if (c[i].id == a->id) found = i;
        if (a->status != 201 || found < 0 || strcmp(c[found].user, req.text[1]) != 0) {
            pgr_violation(b, t, INV_OWN_CONV, "S%d (%s) answered %d with conversation %lld%s", j + 1, req.text[1],
                          a->status, a->id, found < 0 ? ", which is not stored" : ", not its own");
            break;
        }
    }
    for (int i = 0; i < nc; i++)
        if (c[i].nmsg != 1) {
            pgr_violation(b, t, INV_HAS_MESSAGE, "conversation %lld of %s has %lld messages", c[i].id, c[i].user, c[i].nmsg);
            break;
        }
}

static void check_message_fails_trial(pgr_batch *b, const pgr_trial *t, const conv_row *c, int nc)
{
    for (int j = 0; j < t->nsessions; j++) {
        const pgr_response *a[2];
        int na = answers_of(t, j, a);
        for (int k = 0; k < na; k++)
            if (a[k]->status == 200 || a[k]->status == 201) {
                pgr_violation(b, t, INV_HAS_MESSAGE, "S%d answered %d%s with conversation %lld, whose initial message failed",
                              j + 1, a[k]->status, k ? " to its retry" : "", a[k]->id);
                return;
            }
    }
    if (nc > 0)
        pgr_violation(b, t, INV_HAS_MESSAGE, "%d conversation(s) stored without their initial message, which failed (%lld first)",
                      nc, c[0].id);
}

static int conversation_dedup_check(pgr_batch *b)
{
    char lo[24], hi[24];
    pgr_fmt_ll(lo, b->key_lo);
    pgr_fmt_ll(hi, b->key_hi);
    PGresult *r = pgr_admin(b, CHECK_CONVERSATIONS, 2, (const char *[]){ lo, hi });
    if (!r) return -1;
    int nrows = PQntuples(r);
    conv_row *rows = calloc((size_t)nrows + 1, sizeof *rows);
    if (!rows) { PQclear(r); snprintf(b->err, sizeof b->err, "out of memory"); return -1; }
    int start[PGR_MAX_BATCH + 1];
    for (int i = 0; i <= b->ntrials; i++) start[i] = nrows;
    for (int i = nrows - 1; i >= 0; i--) {            /* rows are ordered by trial key */
        long long k = atoll(PQgetvalue(r, i, 0)) - b->key_lo;
        rows[i].id = atoll(PQgetvalue(r, i, 1));
        rows[i].user = PQgetvalue(r, i, 2);
        rows[i].nmsg = atoll(PQgetvalue(r, i, 3));
        rows[i].content = PQgetisnull(r, i, 4) ? NULL : PQgetvalue(r, i, 4);
        if (k >= 0 && k < b->ntrials) start[k] = i;
    }
    for (int i = b->ntrials - 1; i >= 0; i--)          /* trials without rows start where the next does */
        if (start[i] > start[i + 1]) start[i] = start[i + 1];

    for (int i = 0; i < b->ntrials; i++) {
        const pgr_trial *t = &b->trials[i];
        const conv_row *c = rows + start[i];
        int nc = start[i + 1] - start[i];
        switch (t->kase) {
        case CASE_EXISTING: check_existing_trial(b, t, c, nc); break;
        case CASE_TWO_USERS: check_users_trial(b, t, c, nc); break;
        case CASE_MESSAGE_FAILS: check_message_fails_trial(b, t, c, nc); break;
        default: check_dedup_trial(b, t, c, nc); break;
        }
    }
    free(rows);
    PQclear(r);
    return 0;
}

static const pgr_claim conversation_dedup_claims[] = {
    { "The unique constraint on (context_type, context_id, created_by) ensures exactly one conversation "
      "per agency-user pair", "proposed", INV_ONE_CONV },
    { "Race conditions handled by catching PostgreSQL error code 23505 ... return 200 with the existing "
      "conversation", "proposed", INV_NO_500 },
    { "Safe to retry on any error", "proposed", INV_HAS_MESSAGE },
};
static const pgr_variant conversation_dedup_variants[] = {
    { .name = "original", .kind = PGR_ORIGINAL, .handler = conversation_dedup_original,
      .fault_expect = { [PGR_FAULT_TIMEOUT] = PGR_RACE, [PGR_FAULT_KILL] = PGR_RACE, [PGR_FAULT_ERROR] = PGR_RACE,
                        [PGR_FAULT_LOST_COMMIT] = PGR_RACE },
      .expect = { PGR_RACE, PGR_RACE, PGR_RACE },
      .summary = "no server-side check: insert conversation, then message, each autocommitted; no constraint" },
    { .name = "proposed", .kind = PGR_PROPOSED, .handler = conversation_dedup_proposed,
      .fault_expect = { [PGR_FAULT_TIMEOUT] = PGR_RACE, [PGR_FAULT_KILL] = PGR_RACE, [PGR_FAULT_ERROR] = PGR_RACE,
                        [PGR_FAULT_LOST_COMMIT] = PGR_RACE },
      .ddl = PARTIAL_UNIQUE_INDEX, .ddl_as_written = SEED_CONSTRAINT_AS_WRITTEN,
      .expect = { PGR_RACE, PGR_RACE, PGR_RACE },
      .summary = "issue 007: check, insert, on 23505 re-select (200), then the message; partial unique index" },
    { .name = "recommended", .kind = PGR_RECOMMENDED, .handler = conversation_dedup_recommended,
      .ddl = PARTIAL_UNIQUE_INDEX,
      .expect = { PGR_SAFE, PGR_SAFE, PGR_SAFE },
      .summary = "one transaction: INSERT ON CONFLICT DO NOTHING, message or select existing; retry 40001/40P01" },
};

/* The route's body. The initial message may be empty: the message_fails case sends it empty
 * for the messages CHECK to reject (the seed's "message insert fails"). */
static const pgr_field conversation_dedup_fields[] = {
    { "contextId", PGR_FIELD_ID, 19, false, NULL },         /* the agency: conversations.context_id bigint */
    { "userId", PGR_FIELD_TEXT, 64, false, NULL },          /* conversations.created_by text */
    { "initialMessage", PGR_FIELD_TEXT, 79, true, NULL },   /* messages.content text */
};

const pgr_scenario pgr_scenario_conversation_dedup = {
    .name = "conversation_dedup",
    .seed = "002",
    .title = "Database-level deduplication of conversation creation (issue 007)",
    .ddl = CONVERSATION_DEDUP_DDL,
    .variants = conversation_dedup_variants,
    .nvariants = 3,
    .cases = conversation_dedup_cases,
    .ncases = 6,
    .invariants = conversation_dedup_invariants,
    .ninvariants = 8,
    .claims = conversation_dedup_claims,
    .nclaims = (int)(sizeof conversation_dedup_claims / sizeof conversation_dedup_claims[0]),
    .answer_invariants = 1u << INV_ONE_CREATED,
    .failing_cases = 1u << CASE_MESSAGE_FAILS,
    .prepare = conversation_dedup_prepare,
    .request = conversation_dedup_request,
    .check = conversation_dedup_check,
    .fields = conversation_dedup_fields,
    .nfields = 3,
};
