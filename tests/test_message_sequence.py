"""message_sequence (seed 003, plan 09-06): per-channel message sequence numbers under
concurrent sends. Every cell of the matrix (variant x isolation x 2/8 sessions), the seed's
own load test (10 concurrent sends to one channel), the retry loop's arithmetic (3 attempts:
safe with up to 3 senders, messages lost from 4 on), and the recommended counter over 2000
trials at 8 sessions under each isolation level (5000 in `make soak`)."""
import pytest

from conftest import RECOMMENDED_TRIALS

ISOLATIONS = ["read-committed", "repeatable-read", "serializable"]

UNIQUE = "no two messages in a channel share a sequence number"
GAPLESS = "sequences run 1, 2, 3 ... with no gap"
ALL_SENT = "every send succeeds (retries absorb the constraint violations)"
ANSWERS = "every 201 has its message stored with the answered sequence, a failed send stores nothing"
CASES = {"channel_burst", "dm_burst", "channel_with_history"}


def by_variant(doc):
    assert doc["error"] is None, doc["error"]
    return {r["variant"]: r for r in doc["results"]}


def assert_safe(r, trials, sessions):
    """0 violations, every case ran, and every send answered 201."""
    assert r["trials"] == trials and r["sessions"] == sessions
    assert r["verdict"] == "safe" and r["violations"] == 0 and r["matched"], r["counterexamples"][:1]
    assert all(v == 0 for v in r["invariants"].values())
    assert set(r["cases"]) == CASES and sum(r["cases"].values()) == trials
    assert r["statuses"] == {"201": trials * sessions}


def assert_original_duplicates(r):
    """No unique index: MAX+1 read by two senders at once gives both the same number."""
    assert r["verdict"] == "race" and r["matched"]
    assert r["invariants"][UNIQUE] > 0
    # nothing else breaks: every send is answered 201 with the number it got, no gaps
    assert r["invariants"][GAPLESS] == r["invariants"][ALL_SENT] == r["invariants"][ANSWERS] == 0
    assert r["statuses"] == {"201": r["trials"] * r["sessions"]}
    assert r["counterexamples"][0]["invariant"] == UNIQUE


def assert_proposed_loses_messages(r, sqlstate):
    """The unique indexes keep the numbers unique and gapless, but senders get 500 (the
    uncaught SQLSTATE) and their messages are lost."""
    assert r["verdict"] == "race" and r["matched"]
    assert r["invariants"][UNIQUE] == r["invariants"][GAPLESS] == r["invariants"][ANSWERS] == 0
    assert r["invariants"][ALL_SENT] > 0
    assert r["statuses"].get("500", 0) > 0
    assert r["sqlstates"].get(sqlstate, 0) > 0
    cex = r["counterexamples"][0]
    assert cex["invariant"] == ALL_SENT and f"SQLSTATE {sqlstate}" in cex["explanation"]


@pytest.mark.parametrize("iso", ISOLATIONS)
def test_matrix_2_sessions(pgrace, tmp_path, iso):
    doc, _ = pgrace.stress_json("message_sequence", "-c", "2", "-t", "300", "-i", iso, tmp_path=tmp_path)
    r = by_variant(doc)
    assert list(r) == ["original", "proposed", "recommended"]
    assert_original_duplicates(r["original"])
    p = r["proposed"]
    if iso == "serializable":
        # the concurrent insert fails with 40001, which the loop does not retry: 500
        assert p["expected"] == "race"
        assert_proposed_loses_messages(p, "40001")
    else:
        # two senders: the loser's second attempt always succeeds (23505 retried)
        assert p["expected"] == "safe"
        assert_safe(p, 300, 2)
        assert p["sqlstates"].get("23505", 0) > 0
    assert_safe(r["recommended"], 300, 2)


@pytest.mark.parametrize("iso", ISOLATIONS)
def test_matrix_8_sessions_original_and_proposed(pgrace, tmp_path, iso):
    """(recommended at 8 sessions: test_recommended_holds_at_8_sessions below)"""
    doc, _ = pgrace.stress_json("message_sequence/original", "-c", "8", "-t", "150", "-i", iso,
                                tmp_path=tmp_path)
    assert_original_duplicates(by_variant(doc)["original"])
    doc, _ = pgrace.stress_json("message_sequence/proposed", "-c", "8", "-t", "200", "-i", iso,
                                tmp_path=tmp_path)
    p = by_variant(doc)["proposed"]
    assert p["expected"] == "race"
    assert_proposed_loses_messages(p, "40001" if iso == "serializable" else "23505")


def test_seed_load_test_10_concurrent_sends(pgrace, tmp_path):
    """The seed's verification: "Send 10 messages concurrently to same channel - all unique,
    sequential; no constraint violation errors (retries handle them)". Unique and sequential
    hold; the errors are neither rare nor handled: messages are lost with 500/23505."""
    doc, _ = pgrace.stress_json("message_sequence", "-c", "10", "-t", "150", tmp_path=tmp_path)
    r = by_variant(doc)
    assert_original_duplicates(r["original"])
    p = r["proposed"]
    assert_proposed_loses_messages(p, "23505")
    # far from rare: a conflict needs a retry per loser, and messages are lost in many
    # trials (measured: 55-65% of trials on an idle machine, 20% under CI's load, where the
    # release is less tight; the bound leaves room for that)
    assert p["sqlstates"]["23505"] > p["trials"] * 3
    assert p["violations"] > p["trials"] // 10
    assert_safe(r["recommended"], 150, 10)


def test_retry_loop_is_3_attempts_and_rethrows_the_23505(pgrace, tmp_path):
    """`retries = 3; ... if (23505 && retries > 1) { retries--; continue } throw`: 3 attempts.
    A sender loses an attempt only to another sender's commit, so 3 senders always get
    through; the 4th can lose 3 times. The 3rd 23505 is rethrown as is: the plan's
    "Failed to insert message after retries" is never reached."""
    doc, _ = pgrace.stress_json("message_sequence/proposed", "-c", "3", "-t", "600", tmp_path=tmp_path)
    p = by_variant(doc)["proposed"]
    assert_safe(p, 600, 3)
    assert p["sqlstates"].get("23505", 0) > 0               # losers retried
    doc, _ = pgrace.stress_json("message_sequence/proposed", "-c", "4", "-t", "1000", tmp_path=tmp_path)
    p = by_variant(doc)["proposed"]
    assert_proposed_loses_messages(p, "23505")
    for cex in p["counterexamples"]:
        lost = [a["session"] for a in cex["answers"] if a["status"] == 500]
        assert lost
        for s in lost:
            steps = [st for st in cex["steps"] if st["session"] == s]
            assert [st["attempt"] for st in steps] == [0, 1, 2]
            assert all(st["label"] == "insert message" and st["sqlstate"] == "23505" for st in steps)


@pytest.mark.parametrize("iso", ISOLATIONS)
def test_recommended_holds_at_8_sessions(pgrace, tmp_path, iso):
    doc, _ = pgrace.stress_json("message_sequence/recommended", "-c", "8", "-t", str(RECOMMENDED_TRIALS), "-i", iso,
                                tmp_path=tmp_path)
    r = by_variant(doc)["recommended"]
    assert r["isolation"] == iso
    assert_safe(r, RECOMMENDED_TRIALS, 8)
    if iso != "read-committed":
        # concurrent counter bumps fail with 40001 and are retried (not errors the user sees)
        assert r["sqlstates"].get("40001", 0) > 0
    else:
        assert set(r["sqlstates"]) == {"00000"}
