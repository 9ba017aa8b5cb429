/*
 * form_submission — seed 000: "Plan 3.1: Enforce Submission Integrity" (live chat, TypeORM).
 *
 * An agent sends a form into a chat as a form_request message; the visitor's widget answers
 * it through ActionsService.submitFormAsVisitor, which inside ONE transaction
 * (manager.transaction) reads the form request, looks for an ActionSubmission that already
 * answers it (409 "This form has already been submitted" if so), saves the submission,
 * saves a form_submission message naming it, and writes submissionId/submittedAt into the
 * form request's metadata (the "Submitted" badge). A double click, or the widget's retry
 * after a lost answer, sends the same form twice.
 *
 *   original     that transaction, no unique index: the "already submitted" check is a
 *                plain SELECT, so two transactions can both find nothing.
 *   The seed never shows submitFormAsVisitor's body: it names it, says it runs in a
 *   transaction, and adds the index and the catch around manager.save(submission). Whether
 *   it first looks for an existing submission is unknown, so the plan is modelled on both
 *   forms: `proposed` with that SELECT (as such services usually do), `proposed_nocheck`
 *   without it. The serializable findings differ between the two (see below).
 *
 *   proposed     the plan exactly: a partial unique index on form_request_message_id
 *                WHERE form_request_message_id IS NOT NULL (the plan's @Index; it runs on
 *                PostgreSQL as written), and manager.save(submission) wrapped in a catch of
 *                23505 -> ConflictException (409); any other error is rethrown (500). The
 *                ConflictException leaves the transaction callback, so TypeORM rolls back:
 *                the catch leaves nothing half-written.
 *   proposed_nocheck  the same plan on a service with no SELECT before the save: the index
 *                is the only check. Under serializable the loser's INSERT then gets 23505
 *                (it never read the key), the catch answers 409: the double click holds.
 *   recommended  the same index, but the INSERT is the check: INSERT ... ON CONFLICT
 *                (form_request_message_id) WHERE ... IS NOT NULL DO NOTHING RETURNING id, no
 *                SELECT before it; no row -> 409 (rollback). The whole transaction is
 *                retried on 40001/40P01; the retried loser's INSERT then sees the winner's
 *                row and answers 409.
 *
 * ORM translation: manager.transaction = BEGIN ... COMMIT at the database default isolation;
 * findOne = SELECT; save(new entity) = INSERT ... RETURNING id; save(loaded entity) =
 * UPDATE of the whole metadata column with what was read plus the new keys; a throw inside
 * the callback = ROLLBACK. Reads that cannot change the outcome (conversation, template,
 * visitor lookups, validation) are left out. The original gets a plain (non-unique) index on
 * form_request_message_id for its lookup. Submissions with no form request
 * (formRequestMessageId NULL) come from the agent's createSubmission: one autocommitted
 * INSERT, the same in every variant.
 *
 * What the plan claims, and what measurement showed (2000 trials per cell, 2 and 8 sessions):
 *   - "the database enforces uniqueness for formRequestMessageId": holds. 0 duplicate
 *     submissions in every proposed cell. (The original duplicates under read committed in
 *     91-93 % of double clicks; under repeatable read and serializable its second UPDATE of
 *     the form request, or SSI, already keeps it to one, with a 500 for the loser in 82-97 %.)
 *   - "specific error (409) for race-condition double submissions": holds under read
 *     committed and repeatable read: the loser's INSERT waits for the winner and fails with
 *     23505 -> 409. Broken under serializable: the loser fails with 40001, never 23505 (it
 *     read the key it then inserts, so PostgreSQL reports a serialization failure); the
 *     catch never fires and the loser gets 500 in 93 % (2 sessions) / 99 % (8 sessions) of
 *     double clicks. Worse, different visitors submitting different form requests at once
 *     (the retry case: each session its own form) abort each other under serializable:
 *     their keys share an index page, the SELECT's predicate lock is page-level, and 27 %
 *     (2 sessions) / 72 % (8 sessions) of such first submits answer 500.
 *     Both serializable findings hang on the SELECT the seed never shows. proposed_nocheck
 *     (no SELECT): 0 of 1600 double clicks broken at 2 and 8 sessions (23505 -> 409), and
 *     different forms abort each other far less. With --case (2000 trials, serializable,
 *     first submits answered 500): neighbouring ids (retry_after_lost_answer) proposed
 *     747/4000 (c2), 6596/16000 (c8), proposed_nocheck 192, 1541; ids 10^16 apart
 *     (spread_forms) proposed 42, 199, proposed_nocheck 27, 19.
 *   - the catch inside the transaction leaves nothing half-written: holds (0 in every cell).
 *   - partial index vs NULL formRequestMessageId: holds; several NULL submissions coexist.
 * Recommended: 0 violations in 5000 trials at 8 sessions under each isolation level; under
 * read committed with no error at all (no 23505 in the log), under repeatable read and
 * serializable about one 40001 retry per double-click loser. The plan plus only a retry
 * also held, but kept the SELECT's page-level predicate locks: ~29 % more 40001 retries at
 * serializable / 8 sessions, from different form requests aborting each other.
 */
#include "pgrace.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Form request message ids are chosen by prepare: trial key * 100 + slot, so that request()
 * knows them. Messages the handlers insert take ids from far above that range. */
#define FORM_ID(key, slot) ((key) * 100 + (slot))
/* The spread_forms case puts each session's form request in its own region of the id space,
 * 10^16 apart (below the handlers' 10^18): no two sessions' keys share an index page. The
 * slot is still id % 100. */
#define FORM_ID_SPREAD(key, slot) (((slot) + 1) * 10000000000000000LL + (key) * 100 + (slot))

static const char FORM_SUBMISSION_DDL[] =
    "CREATE TABLE IF NOT EXISTS message ("
    "  id bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 1000000000000000000) PRIMARY KEY,"
    "  conversation_id bigint NOT NULL,"          /* = pgrace's trial key */
    "  content_type text NOT NULL,"               /* form_request | form_submission */
    "  metadata jsonb NOT NULL DEFAULT '{}',"
    "  from_customer boolean NOT NULL DEFAULT false,"
    "  created_at timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX IF NOT EXISTS message_conversation_idx ON message (conversation_id);"
    "CREATE TABLE IF NOT EXISTS action_submission ("
    "  id bigserial PRIMARY KEY,"
    "  conversation_id bigint NOT NULL,"          /* = pgrace's trial key */
    "  template_id bigint NOT NULL,"
    "  visitor_id bigint,"
    "  creator_id text,"
    "  form_request_message_id bigint REFERENCES message(id),"
    "  data jsonb NOT NULL,"
    "  created_at timestamptz NOT NULL DEFAULT now());"
    "CREATE INDEX IF NOT EXISTS action_submission_conversation_idx ON action_submission (conversation_id);";

/* ---------------------------------------------------------------- the service's statements
 * Every variant runs the same statements; they differ in the schema (the index) and in what
 * they do when the save fails. */

static const char FIND_FORM_REQUEST[] =          /* manager.findOne(Message, { id }) */
    "SELECT id, content_type, metadata FROM message WHERE id = $1";
static const char FIND_EXISTING_SUBMISSION[] =   /* manager.findOne(ActionSubmission, ...) */
    "SELECT id FROM action_submission WHERE form_request_message_id = $1 LIMIT 1";
static const char SAVE_SUBMISSION[] =            /* manager.save(submission) */
    "INSERT INTO action_submission (conversation_id, template_id, visitor_id, form_request_message_id, data) "
    "VALUES ($1, ($2::jsonb->>'templateId')::bigint, $3, $4, $5::jsonb) RETURNING id";
static const char SAVE_SUBMISSION_MESSAGE[] =    /* manager.save(form_submission message) */
    "INSERT INTO message (conversation_id, content_type, metadata, from_customer) "
    "VALUES ($1, 'form_submission', jsonb_build_object('formRequestMessageId', $2::bigint, "
    "'submissionId', $3::bigint, 'data', $4::jsonb), true) RETURNING id";
static const char MARK_FORM_REQUEST_SUBMITTED[] = /* formRequestMessage.metadata = {...}; save */
    "UPDATE message SET metadata = $2::jsonb || jsonb_build_object('submissionId', $3::bigint, "
    "'submittedAt', now()) WHERE id = $1";

/* What the original and the proposed service do when manager.save(submission) fails. */
typedef enum {
    AS_ORIGINAL,        /* nothing caught: every SQL error is a 500 */
    CATCH_23505,        /* the plan: 23505 -> ConflictException (409); anything else rethrown (500) */
    CATCH_23505_NOCHECK,/* the plan, on a service that does not look for an existing submission */
} save_policy;

/* submitFormAsVisitor's transaction, as the original and the proposed service run it. */
static int submit_form(pgr_session *s, const pgr_request *req, pgr_response *resp, save_policy policy)
{
    const char *form_id = req->text[0], *conversation = req->text[1], *visitor = req->text[2], *data = req->text[3];
    resp->id = -1;
    pgr_res *r = pgr_begin(s);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    r = PGR_SQL(s, "find form request", FIND_FORM_REQUEST, form_id);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    if (r->rows == 0 || strcmp(pgr_val(r, 0, 1), "form_request") != 0) {
        pgr_rollback(s);
        return 400;                                        /* Form request not found / invalid */
    }
    char metadata[256];
    snprintf(metadata, sizeof metadata, "%s", pgr_val(r, 0, 2));

    if (policy != CATCH_23505_NOCHECK) {
        r = PGR_SQL(s, "find existing submission", FIND_EXISTING_SUBMISSION, form_id);
        if (!r->ok) return pgr_uncaught(s, r, resp);
        if (r->rows > 0) {
            pgr_rollback(s);
            return 409;                                    /* This form has already been submitted */
        }
    }

    r = PGR_SQL(s, "save submission", SAVE_SUBMISSION, conversation, metadata, visitor, form_id, data);
    if (!r->ok) {
        if (policy != AS_ORIGINAL && pgr_is(r, "23505")) {
            pgr_rollback(s);                               /* ConflictException leaves the callback */
            return 409;
        }
        return pgr_uncaught(s, r, resp);                   /* rethrown */
    }
    char sub_id[24];
    snprintf(sub_id, sizeof sub_id, "%s", pgr_val(r, 0, 0));

    r = PGR_SQL(s, "save submission message", SAVE_SUBMISSION_MESSAGE, conversation, form_id, sub_id, data);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    r = PGR_SQL(s, "mark form request submitted", MARK_FORM_REQUEST_SUBMITTED, form_id, metadata, sub_id);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    r = pgr_commit(s);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    resp->id = atoll(sub_id);
    return 201;
}

/* The agent's createSubmission: a submission that answers no form request (formRequestMessageId
 * NULL), one autocommitted INSERT. The same in every variant; the partial index must not block it. */
static const char CREATE_AGENT_SUBMISSION[] =
    "INSERT INTO action_submission (conversation_id, template_id, creator_id, data) "
    "VALUES ($1, 1, 'agent-' || $2, $3::jsonb) RETURNING id";

static int create_agent_submission(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    pgr_res *r = PGR_SQL(s, "save agent submission", CREATE_AGENT_SUBMISSION, req->text[1], req->text[2], req->text[3]);
    if (!r->ok) return pgr_uncaught(s, r, resp);
    resp->id = pgr_int(r, 0, 0);
    return 201;
}

/* ---------------------------------------------------------------- original */

static const char ORIGINAL_DDL[] =      /* a plain index for the lookup; it enforces nothing */
    "CREATE INDEX IF NOT EXISTS action_submission_form_request_idx ON action_submission (form_request_message_id);";

static int form_submission_original(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    if (!req->text[0][0]) return create_agent_submission(s, req, resp);
    return submit_form(s, req, resp, AS_ORIGINAL);
}

/* ---------------------------------------------------------------- proposed (Plan 3.1) */

static const char PROPOSED_DDL[] =      /* @Index(["formRequestMessageId"], { unique: true, where: ... }) */
    "CREATE UNIQUE INDEX IF NOT EXISTS action_submission_form_request_unique ON action_submission "
    "(form_request_message_id) WHERE form_request_message_id IS NOT NULL;";

static int form_submission_proposed(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    if (!req->text[0][0]) return create_agent_submission(s, req, resp);
    return submit_form(s, req, resp, CATCH_23505);
}

/* The same plan on the other form the unseen service may have: no SELECT for an existing
 * submission before manager.save(submission); the unique index is the only check. */
static int form_submission_proposed_nocheck(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    if (!req->text[0][0]) return create_agent_submission(s, req, resp);
    return submit_form(s, req, resp, CATCH_23505_NOCHECK);
}

/* ---------------------------------------------------------------- recommended */

/* The unique index is the check: no SELECT before the INSERT (under serializable that
 * SELECT's predicate lock on the index page is what makes concurrent submissions of
 * neighbouring form requests abort each other). A conflict -> no row -> 409. */
static const char RECOMMENDED_SAVE_SUBMISSION[] =
    "INSERT INTO action_submission (conversation_id, template_id, visitor_id, form_request_message_id, data) "
    "VALUES ($1, ($2::jsonb->>'templateId')::bigint, $3, $4, $5::jsonb) "
    "ON CONFLICT (form_request_message_id) WHERE form_request_message_id IS NOT NULL DO NOTHING RETURNING id";

#define RETRY_OR_500(r) do { if (pgr_retryable(r)) { pgr_rollback(s); resp->id = -1; return PGR_RETRY; } \
                             return pgr_uncaught(s, r, resp); } while (0)

/* One attempt; PGR_RETRY when the transaction hit a serialization failure or deadlock. */
static int submit_form_recommended_once(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    const char *form_id = req->text[0], *conversation = req->text[1], *visitor = req->text[2], *data = req->text[3];
    resp->id = -1;
    pgr_res *r = pgr_begin(s);
    if (!r->ok) RETRY_OR_500(r);
    r = PGR_SQL(s, "find form request", FIND_FORM_REQUEST, form_id);
    if (!r->ok) RETRY_OR_500(r);
    if (r->rows == 0 || strcmp(pgr_val(r, 0, 1), "form_request") != 0) {
        pgr_rollback(s);
        return 400;
    }
    char metadata[256];
    snprintf(metadata, sizeof metadata, "%s", pgr_val(r, 0, 2));

    r = PGR_SQL(s, "save submission", RECOMMENDED_SAVE_SUBMISSION, conversation, metadata, visitor, form_id, data);
    if (!r->ok) RETRY_OR_500(r);   /* a conflict with a row this snapshot cannot see is 40001 */
    if (r->rows == 0) {
        pgr_rollback(s);
        return 409;                                        /* This form has already been submitted */
    }
    char sub_id[24];
    snprintf(sub_id, sizeof sub_id, "%s", pgr_val(r, 0, 0));

    r = PGR_SQL(s, "save submission message", SAVE_SUBMISSION_MESSAGE, conversation, form_id, sub_id, data);
    if (!r->ok) RETRY_OR_500(r);
    r = PGR_SQL(s, "mark form request submitted", MARK_FORM_REQUEST_SUBMITTED, form_id, metadata, sub_id);
    if (!r->ok) RETRY_OR_500(r);
    r = pgr_commit(s);
    if (!r->ok) RETRY_OR_500(r);
    resp->id = atoll(sub_id);
    return 201;
}

static int form_submission_recommended(pgr_session *s, const pgr_request *req, pgr_response *resp)
{
    if (!req->text[0][0]) return create_agent_submission(s, req, resp);
    return pgr_retry(s, 10, submit_form_recommended_once, req, resp);         /* 503: gave up retrying */
}

/* ---------------------------------------------------------------- requests and checks */

enum { CASE_DOUBLE_CLICK, CASE_RETRY, CASE_NO_FORM_REQUEST, CASE_SPREAD };
static const pgr_case form_submission_cases[] = {
    { "double_click", 8, "every session submits the same form request at once" },
    { "retry_after_lost_answer", 1, "each session submits its own form request, then sends it again after the answer" },
    { "no_form_request", 1, "every session saves a submission that answers no form request (NULL) in one conversation" },
    /* weight 0: only with --case; the retry case with form ids that share no index page */
    { "spread_forms", 0, "as retry_after_lost_answer, but the sessions' form request ids are 10^16 apart "
                         "(no two share an index page)" },
};

enum { INV_AT_MOST_ONE, INV_DOUBLE_CLICK, INV_RETRY, INV_201_STORED, INV_WHOLE, INV_NULL_FREE };
static const char *const form_submission_invariants[] = {
    "at most one submission per form request",
    "a double click gets one 201 and 409 for every other click, never 500",
    "a retry after a lost answer: the first submit gets 201, the retry 409, never 500",
    "a 201 answer's submission exists",
    "nothing half-committed: form request marked submitted iff its submission exists, with its form_submission message",
    "submissions without a form request are never blocked",
};

static void form_submission_request(void *ctx, const pgr_trial *t, int session, pgr_request *req)
{
    (void)ctx;
    switch (t->kase) {
    case CASE_DOUBLE_CLICK:
        snprintf(req->text[0], sizeof req->text[0], "%lld", FORM_ID(t->key, 0));
        break;
    case CASE_RETRY:
        snprintf(req->text[0], sizeof req->text[0], "%lld", FORM_ID(t->key, (long long)session));
        req->sends = 2;
        break;
    case CASE_SPREAD:
        snprintf(req->text[0], sizeof req->text[0], "%lld", FORM_ID_SPREAD(t->key, (long long)session));
        req->sends = 2;
        break;
    case CASE_NO_FORM_REQUEST:
        req->text[0][0] = '\0';
        break;
    }
    snprintf(req->text[1], sizeof req->text[1], "%lld", t->key);          /* conversation */
    snprintf(req->text[2], sizeof req->text[2], "%d", session + 1);       /* visitor */
    snprintf(req->text[3], sizeof req->text[3], "{\"name\": \"Visitor %d\"}", session + 1);
}

/* One INSERT for the batch: one form request per double-click trial, one per session for a
 * retry trial, none for no_form_request. */
static const char PREPARE_FORM_REQUESTS[] =
    "INSERT INTO message (id, conversation_id, content_type, metadata) "
    "SELECT CASE substr($3, (k - $1)::int + 1, 1) WHEN 's' THEN (slot + 1) * 10000000000000000 + k * 100 + slot "
    "  ELSE k * 100 + slot END, k, 'form_request', "
    "  '{\"templateId\": 1, \"templateName\": \"Contact details\"}'::jsonb "
    "FROM generate_series($1::bigint, $2::bigint) k, generate_series(0, $4::int - 1) slot "
    "WHERE CASE substr($3, (k - $1)::int + 1, 1) WHEN 'd' THEN slot = 0 WHEN 'r' THEN true WHEN 's' THEN true ELSE false END";

static int form_submission_prepare(pgr_batch *b)
{
    static const char code[] = { [CASE_DOUBLE_CLICK] = 'd', [CASE_RETRY] = 'r', [CASE_NO_FORM_REQUEST] = 'n',
                                 [CASE_SPREAD] = 's' };
    return pgr_prepare_by_case(b, PREPARE_FORM_REQUESTS, code, 4);
}

/* Per form request: its submissions (ids, ascending), the submission id its metadata is
 * marked with (NULL when unmarked) and whether submittedAt is set, the form_submission
 * messages answering it, and its submissions that have no form_submission message. */
static const char CHECK_FORM_REQUESTS[] =
    "SELECT f.conversation_id, f.id % 100 AS slot, "
    "  (SELECT coalesce(string_agg(s.id::text, ',' ORDER BY s.id), '') FROM action_submission s "
    "     WHERE s.form_request_message_id = f.id) AS subs, "
    "  coalesce((f.metadata->>'submissionId')::bigint, -1) AS marked, "
    "  f.metadata ? 'submittedAt' AS has_time, "
    "  (SELECT count(*) FROM message m WHERE m.conversation_id = f.conversation_id "
    "     AND m.content_type = 'form_submission' AND (m.metadata->>'formRequestMessageId')::bigint = f.id) AS msgs, "
    "  (SELECT count(*) FROM action_submission s WHERE s.form_request_message_id = f.id AND NOT EXISTS ("
    "     SELECT 1 FROM message m WHERE m.conversation_id = f.conversation_id "
    "       AND m.content_type = 'form_submission' AND (m.metadata->>'submissionId')::bigint = s.id)) AS bare "
    "FROM message f WHERE f.content_type = 'form_request' AND f.conversation_id BETWEEN $1 AND $2";
/* Submissions without a form request, per conversation. */
static const char CHECK_NULL_SUBMISSIONS[] =
    "SELECT conversation_id, string_agg(id::text, ',' ORDER BY id) FROM action_submission "
    "WHERE form_request_message_id IS NULL AND conversation_id BETWEEN $1 AND $2 GROUP BY conversation_id";

/* Parse "3,7,12" into ids[]; returns the count (at most max). */
static int parse_ids(const char *s, long long *ids, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        long long v = strtoll(s, &end, 10);
        if (end == s) break;
        ids[n++] = v;
        s = *end == ',' ? end + 1 : end;
    }
    return n;
}

static bool has_id(const long long *ids, int n, long long id)
{
    for (int i = 0; i < n; i++)
        if (ids[i] == id) return true;
    return false;
}

#define MAX_IDS 16

typedef struct form_state {
    bool have;                  /* the form request row exists */
    int nsubs;                  /* submissions answering it (may exceed MAX_IDS) */
    long long subs[MAX_IDS];
    long long marked;           /* submission id in its metadata, -1 if none */
    bool has_time;
    long long msgs, bare;
} form_state;

/* What the database holds for form request `slot` of trial t, against what sessions
 * from..to answered (several for a double click, one session's two sends for a retry). */
static void check_form(pgr_batch *b, const pgr_trial *t, const form_state *f, int slot, int from, int to)
{
    long long form_id = t->kase == CASE_SPREAD ? FORM_ID_SPREAD(t->key, (long long)slot) : FORM_ID(t->key, (long long)slot);
    int nsubs = f->nsubs < MAX_IDS ? f->nsubs : MAX_IDS;
    int n201 = 0, winner = -1;
    for (int j = from; j <= to; j++)
        if (t->first[j].status == 201) { n201++; if (winner < 0) winner = j; }

    if (f->nsubs > 1)
        pgr_violation(b, t, INV_AT_MOST_ONE, "%d submissions answer form request %lld (%d sessions answered 201)",
                      f->nsubs, form_id, n201);

    if (t->kase == CASE_DOUBLE_CLICK) {
        int other = -1;
        for (int j = from; j <= to && other < 0; j++)
            if (t->first[j].status != 201 && t->first[j].status != 409) other = j;
        if (n201 > 1)
            pgr_violation(b, t, INV_DOUBLE_CLICK, "S%d and %d other sessions answered 201 for the same form request",
                          winner + 1, n201 - 1);
        else if (other >= 0 && t->first[other].status == 500 && winner >= 0)
            pgr_violation(b, t, INV_DOUBLE_CLICK, "S%d answered 500 (uncaught SQLSTATE %s) while S%d created Submission %lld",
                          other + 1, t->first[other].sqlstate, winner + 1, t->first[winner].id);
        else if (other >= 0 && t->first[other].status == 500)
            pgr_violation(b, t, INV_DOUBLE_CLICK, "no session answered 201; S%d answered 500 (uncaught SQLSTATE %s)",
                          other + 1, t->first[other].sqlstate);
        else if (other >= 0)
            pgr_violation(b, t, INV_DOUBLE_CLICK, "S%d answered %d to a double click", other + 1, t->first[other].status);
        else if (n201 == 0)
            pgr_violation(b, t, INV_DOUBLE_CLICK, "every session answered 409: nobody's submission was saved");
    } else {                                             /* one session, sent twice */
        const pgr_response *a1 = &t->first[from], *a2 = &t->resp[from];
        if (a1->status == 500)
            pgr_violation(b, t, INV_RETRY, "S%d's first submit of its own form request %lld (no other session submits it) "
                          "answered 500 (uncaught SQLSTATE %s); its retry answered %d",
                          from + 1, form_id, a1->sqlstate, a2->status);
        else if (a1->status != 201)
            pgr_violation(b, t, INV_RETRY, "S%d's first submit of its own form request %lld answered %d; its retry answered %d",
                          from + 1, form_id, a1->status, a2->status);
        else if (a2->status == 500)
            pgr_violation(b, t, INV_RETRY, "S%d's retry answered 500 (uncaught SQLSTATE %s) after its first submit created Submission %lld",
                          from + 1, a2->sqlstate, a1->id);
        else if (a2->status != 409)
            pgr_violation(b, t, INV_RETRY, "S%d's retry answered %d after its first submit created Submission %lld",
                          from + 1, a2->status, a1->id);
    }

    for (int j = from; j <= to; j++) {
        const pgr_response *a = &t->first[j];
        if (a->status == 201 && !has_id(f->subs, nsubs, a->id)) {
            pgr_violation(b, t, INV_201_STORED, "S%d answered 201 with Submission %lld, which is not stored", j + 1, a->id);
            break;
        }
    }

    if (!f->have)
        pgr_violation(b, t, INV_WHOLE, "form request %lld is gone", form_id);
    else if (f->nsubs == 0 && (f->marked >= 0 || f->has_time || f->msgs > 0))
        pgr_violation(b, t, INV_WHOLE, "form request %lld is marked submitted (Submission %lld, %lld form_submission messages) "
                      "but no submission is stored", form_id, f->marked, f->msgs);
    else if (f->nsubs > 0 && (f->marked < 0 || !f->has_time || !has_id(f->subs, nsubs, f->marked)))
        pgr_violation(b, t, INV_WHOLE, "Submission %lld is stored but its form request is marked with %lld (submittedAt %s)",
                      f->subs[0], f->marked, f->has_time ? "set" : "missing");
    else if (f->bare > 0 || f->msgs != f->nsubs)
        pgr_violation(b, t, INV_WHOLE, "%d submissions but %lld form_submission messages (%lld submissions without one)",
                      f->nsubs, f->msgs, f->bare);
}

static int form_submission_check(pgr_batch *b)
{
    char lo[24], hi[24];
    pgr_fmt_ll(lo, b->key_lo);
    pgr_fmt_ll(hi, b->key_hi);
    int ns = b->nsessions;
    form_state *forms = calloc((size_t)b->ntrials * ns, sizeof *forms);   /* [trial][slot] */
    long long (*nulls)[PGR_MAX_SESSIONS + 1] = calloc((size_t)b->ntrials, sizeof *nulls);
    int *nnull = calloc((size_t)b->ntrials, sizeof *nnull);
    if (!forms || !nulls || !nnull) {
        free(forms); free(nulls); free(nnull);
        snprintf(b->err, sizeof b->err, "out of memory");
        return -1;
    }

    PGresult *r = pgr_admin(b, CHECK_FORM_REQUESTS, 2, (const char *[]){ lo, hi });
    if (!r) { free(forms); free(nulls); free(nnull); return -1; }
    for (int i = 0; i < PQntuples(r); i++) {
        long long k = atoll(PQgetvalue(r, i, 0)) - b->key_lo;
        int slot = atoi(PQgetvalue(r, i, 1));
        if (k < 0 || k >= b->ntrials || slot < 0 || slot >= ns) continue;
        form_state *f = &forms[k * ns + slot];
        f->have = true;
        const char *ids = PQgetvalue(r, i, 2);
        f->nsubs = 0;
        if (*ids) {
            f->nsubs = 1;
            for (const char *p = ids; *p; p++) f->nsubs += *p == ',';
            parse_ids(ids, f->subs, MAX_IDS);
        }
        f->marked = atoll(PQgetvalue(r, i, 3));
        f->has_time = PQgetvalue(r, i, 4)[0] == 't';
        f->msgs = atoll(PQgetvalue(r, i, 5));
        f->bare = atoll(PQgetvalue(r, i, 6));
    }
    PQclear(r);

    r = pgr_admin(b, CHECK_NULL_SUBMISSIONS, 2, (const char *[]){ lo, hi });
    if (!r) { free(forms); free(nulls); free(nnull); return -1; }
    for (int i = 0; i < PQntuples(r); i++) {
        long long k = atoll(PQgetvalue(r, i, 0)) - b->key_lo;
        if (k < 0 || k >= b->ntrials) continue;
        const char *ids = PQgetvalue(r, i, 1);
        nnull[k] = 1;
        for (const char *p = ids; *p; p++) nnull[k] += *p == ',';
        parse_ids(ids, nulls[k], PGR_MAX_SESSIONS + 1);
    }
    PQclear(r);

    for (int i = 0; i < b->ntrials; i++) {
        const pgr_trial *t = &b->trials[i];
        switch (t->kase) {
        case CASE_DOUBLE_CLICK:
            check_form(b, t, &forms[(size_t)i * ns], 0, 0, t->nsessions - 1);
            break;
        case CASE_RETRY:
        case CASE_SPREAD:
            for (int j = 0; j < t->nsessions; j++) check_form(b, t, &forms[(size_t)i * ns + j], j, j, j);
            break;
        case CASE_NO_FORM_REQUEST: {
            int stored = nnull[i] < PGR_MAX_SESSIONS + 1 ? nnull[i] : PGR_MAX_SESSIONS + 1;
            for (int j = 0; j < t->nsessions; j++) {
                const pgr_response *a = &t->resp[j];
                if (a->status != 201) {
                    if (a->status == 500)
                        pgr_violation(b, t, INV_NULL_FREE, "S%d's submission without a form request answered 500 (SQLSTATE %s)",
                                      j + 1, a->sqlstate);
                    else
                        pgr_violation(b, t, INV_NULL_FREE, "S%d's submission without a form request answered %d", j + 1, a->status);
                    break;
                }
                if (!has_id(nulls[i], stored, a->id)) {
                    pgr_violation(b, t, INV_NULL_FREE, "S%d answered 201 with Submission %lld, which is not stored", j + 1, a->id);
                    break;
                }
            }
            if (nnull[i] != t->nsessions)
                pgr_violation(b, t, INV_NULL_FREE, "%d submissions without a form request stored for %d sessions",
                              nnull[i], t->nsessions);
            break;
        }
        }
    }
    free(forms);
    free(nulls);
    free(nnull);
    return 0;
}

static const pgr_claim form_submission_claims[] = {
    { "Add a unique index to formRequestMessageId ... This prevents multiple submissions for a single "
      "form request", "proposed", INV_AT_MOST_ONE },
    { "ActionsService provides specific error for race-condition double submissions (23505 -> "
      "ConflictException, 409)", "proposed", INV_DOUBLE_CLICK },
    { "Existing functionality remains stable (submissions without a form request)", "proposed", INV_NULL_FREE },
};
static const pgr_variant form_submission_variants[] = {
    { .name = "original", .kind = PGR_ORIGINAL, .ddl = ORIGINAL_DDL, .handler = form_submission_original,
      .expect = { PGR_RACE, PGR_RACE, PGR_RACE },
      .summary = "one transaction: find form request, check for a submission, save it, its message, mark the request" },
    { .name = "proposed", .kind = PGR_PROPOSED, .ddl = PROPOSED_DDL, .handler = form_submission_proposed,
      .expect = { PGR_SAFE, PGR_SAFE, PGR_RACE },
      .summary = "Plan 3.1 on a service that first SELECTs an existing submission: unique index, 23505 on save -> 409" },
    { .name = "proposed_nocheck", .kind = PGR_PROPOSED, .ddl = PROPOSED_DDL, .handler = form_submission_proposed_nocheck,
      .expect = { PGR_SAFE, PGR_SAFE, PGR_RACE },
      /* its serializable race is between DIFFERENT form requests (the retry case); the
       * explorer runs the first case, double_click, where this form holds (29 of 29) */
      .explore_blind = { false, false, true },
      /* ...and it is rare at 2 sessions, by the machine's timing and the index's size: 18-25
       * of the 200 retry trials in 2000, 0 to 17 of the 30 in a 300-trial cell; 1 of 730
       * such cells missed it (under CPU contention: 1 of 210). At 8 sessions every cell
       * found it (39-159 violations in 300-410). So a 2-session stress cell may go either
       * way and the 8-session one must race; test_form_submission finds it at 2 sessions
       * with --case retry_after_lost_answer. */
      .race_rare_below = { 0, 0, 8 },
      .summary = "Plan 3.1 on a service with no SELECT first: the index is the check, 23505 on save -> 409" },
    { .name = "recommended", .kind = PGR_RECOMMENDED, .ddl = PROPOSED_DDL, .handler = form_submission_recommended,
      .expect = { PGR_SAFE, PGR_SAFE, PGR_SAFE },
      .summary = "Plan 3.1 plus a retry of the whole transaction on 40001/40P01" },
};

/* submitFormAsVisitor's body (and the agent's createSubmission when formId is empty). */
static const pgr_field form_submission_fields[] = {
    { "formId", PGR_FIELD_ID, 19, true, NULL },             /* message.id bigint; empty: no form request */
    { "conversationId", PGR_FIELD_ID, 19, false, NULL },    /* action_submission.conversation_id bigint */
    { "visitorId", PGR_FIELD_ID, 19, false, NULL },         /* action_submission.visitor_id bigint */
    { "data", PGR_FIELD_JSON, 79, false, NULL },            /* action_submission.data jsonb */
};

const pgr_scenario pgr_scenario_form_submission = {
    .name = "form_submission",
    .seed = "000",
    .title = "Enforce submission integrity (Plan 3.1): one ActionSubmission per form request",
    .ddl = FORM_SUBMISSION_DDL,
    .variants = form_submission_variants,
    .nvariants = 4,
    .cases = form_submission_cases,
    .ncases = 4,
    .invariants = form_submission_invariants,
    .ninvariants = 6,
    .claims = form_submission_claims,
    .nclaims = (int)(sizeof form_submission_claims / sizeof form_submission_claims[0]),
    .answer_invariants = 1u << INV_DOUBLE_CLICK | 1u << INV_RETRY,
    .prepare = form_submission_prepare,
    .request = form_submission_request,
    .check = form_submission_check,
    .fields = form_submission_fields,
    .nfields = 4,
};
