"""The seeds' TypeORM, Supabase and drizzle stacks over HTTP (issue #14, item 2):
examples/form_submission (seed 000, TypeORM 1.1), examples/conversation_dedup (seed 002,
Supabase calls as PostgREST sends them) and examples/message_sequence (seed 003, drizzle 0.45),
each application started once per session by pgrace and raced through the session's proxy.

Each variant must reach the C scenario's verdict at 8 sessions under read committed, for the
C model's reason, or the documented difference (drizzle 0.45 wraps the pg error, so plan
09-06's `error.code === '23505'` never matches and its retry never runs); exploration at 2
sessions must find the original and proposed forms' races. Few trials: every cell starts 8
Node processes.
"""
import pytest

from examples_support import require_examples, run, stress8

FORM = "examples/form_submission/form_submission_typeorm.spec"
CONVERSATION = "examples/conversation_dedup/conversation_dedup_supabase.spec"
SEQUENCE = "examples/message_sequence/message_sequence_drizzle.spec"


@pytest.fixture(scope="module", autouse=True)
def installed():
    require_examples("typeorm")


def test_form_submission_typeorm_plan31_holds_under_read_committed(pgrace, tmp_path):
    res = stress8(pgrace, FORM, 12, tmp_path)
    orig = res["original"]
    # the "already submitted" SELECT in one transaction: every click finds nothing, all 201
    assert orig["verdict"] == "race" and orig["invariants"]["at most one submission per form request"] > 0
    for name in ("proposed", "proposed_nocheck", "recommended"):
        r = res[name]
        assert r["violations"] == 0 and set(r["statuses"]) == {"201", "409"}, (name, r["statuses"])
    # the plan's catch turns the loser's 23505 into 409; the recommended form never errs
    assert res["proposed_nocheck"]["sqlstates"].get("23505", 0) > 0
    assert "23505" not in res["recommended"]["sqlstates"]


def test_form_submission_typeorm_proposed_500_under_serializable(pgrace, tmp_path):
    # the C model's finding in the real stack: the loser read the key, so 40001, not 23505
    res = run(pgrace, "stress", FORM + "/proposed", "-c", 8, "-t", 6, "-i", "serializable", tmp_path=tmp_path)
    r = res["proposed"]
    assert r["verdict"] == "race" and r["matched"] and r["statuses"].get("500", 0) > 0, r["statuses"]
    assert "23505" not in r["sqlstates"] and r["sqlstates"].get("40001", 0) > 0, r["sqlstates"]


def test_conversation_dedup_supabase_at_8_sessions(pgrace, tmp_path):
    res = stress8(pgrace, CONVERSATION, 18, tmp_path)
    orig, prop, rec = res["original"], res["proposed"], res["recommended"]
    assert orig["verdict"] == "race"
    assert orig["invariants"]["exactly one conversation per agency-user pair (none when its initial message failed)"] > 0
    # the index holds; the failed initial message leaves a conversation without it
    assert prop["invariants"]["exactly one conversation per agency-user pair (none when its initial message failed)"] == 0
    if prop["cases"].get("message_fails", 0):
        assert prop["verdict"] == "race"
        assert prop["invariants"]["every conversation has its initial message, and only it"] > 0
    assert rec["verdict"] == "safe" and rec["violations"] == 0, rec["invariants"]


def test_message_sequence_drizzle_at_8_sessions(pgrace, tmp_path):
    res = stress8(pgrace, SEQUENCE, 10, tmp_path)
    orig, prop, rec = res["original"], res["proposed"], res["recommended"]
    assert orig["invariants"]["no two messages in a channel share a sequence number"] > 0
    # the unique indexes hold; messages are lost with 500 and SQLSTATE 23505
    assert prop["invariants"]["no two messages in a channel share a sequence number"] == 0
    assert prop["statuses"].get("500", 0) > 0 and prop["sqlstates"].get("23505", 0) > 0
    assert rec["verdict"] == "safe" and rec["violations"] == 0, rec["invariants"]


def test_message_sequence_drizzle_loses_a_message_at_2_sessions(pgrace, tmp_path):
    # The documented difference: the C model (whose retry catches 23505) loses nothing with
    # up to 3 senders; drizzle 0.45's DrizzleQueryError has no .code, the plan's catch never
    # retries, and 2 senders already lose one.
    res = run(pgrace, "stress", SEQUENCE + "/proposed", "-c", 2, "-t", 60, tmp_path=tmp_path)
    r = res["proposed"]
    assert r["verdict"] == "race" and r["statuses"].get("500", 0) > 0, r["statuses"]


@pytest.mark.parametrize("target, variant", [(FORM, "original"), (CONVERSATION, "original"), (SEQUENCE, "original")])
def test_explore_finds_the_original_race(pgrace, tmp_path, target, variant):
    res = run(pgrace, "explore", f"{target}/{variant}", "-c", 2, "--max-schedules", 10, tmp_path=tmp_path)
    r = res[variant]
    assert r["verdict"] == "race" and r["matched"], r


def test_explore_finds_the_proposed_races(pgrace, tmp_path):
    # Plan 3.1 under serializable: the loser's 40001 is not the caught 23505 (500)
    res = run(pgrace, "explore", FORM + "/proposed", "-c", 2, "-i", "serializable", "--max-schedules", 10,
              tmp_path=tmp_path)
    r = res["proposed"]
    assert r["verdict"] == "race" and r["matched"] and r["statuses"].get("500", 0) > 0, r
    # issue 007: the failed initial message leaves its conversation, and the retry gets 200
    # (exit 1: the spec holds explore to safe, for its first case, double_click)
    res = run(pgrace, "explore", CONVERSATION + "/proposed", "-c", 2, "--case", "message_fails",
              "--max-schedules", 3, tmp_path=tmp_path, expect_rc=1)
    r = res["proposed"]
    assert r["verdict"] == "race" and r["invariants"]["every conversation has its initial message, and only it"] > 0, r
