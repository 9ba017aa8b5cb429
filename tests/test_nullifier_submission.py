"""nullifier_submission (seed 004, WP-004 issue 2): one Submission per nullifier.

The seed's test 2: the same nullifier under two idempotency keys at once, "one succeeds,
one throws 409; only one Submission record; database constraint prevents duplicates".
Measured: the unique index keeps one row (holds); the loser gets 500 (uncaught 23505, or
40001 under serializable), not 409 (broken). The original stores duplicates.
"""
import pytest

from conftest import RECOMMENDED_TRIALS

ISOLATIONS = ["read-committed", "repeatable-read", "serializable"]
TRIALS = 300    # every race below shows in >= 40 % of the contested trials

ONE_ROW = "exactly one Submission per nullifier"
LOSER = "one request succeeds; every other gets 409, never 500"
NO_LOST = "every 200 answer's Submission exists"


def run_cell(pgrace, tmp_path, iso, sessions, trials, target="nullifier_submission"):
    return pgrace.cell(target, iso, sessions, trials, tmp_path)


def expected_statuses(cases, c):
    fresh = cases["same_nullifier_two_keys"] + cases["same_nullifier_no_key"]
    return {"200": fresh, "409": (c - 1) * fresh + c * cases["nullifier_spent"]}


@pytest.mark.parametrize("sessions", [2, 8])
@pytest.mark.parametrize("iso", ISOLATIONS)
def test_matrix_cell(pgrace, tmp_path, iso, sessions):
    res = run_cell(pgrace, tmp_path, iso, sessions, TRIALS)
    orig, prop, reco = res["original"], res["proposed"], res["recommended"]

    # original: findFirst then create, no unique constraint: the nullifier is spent twice
    assert orig["verdict"] == "race"
    assert orig["invariants"][ONE_ROW] > 0
    assert orig["invariants"][LOSER] > 0
    assert orig["invariants"][NO_LOST] == 0
    assert "500" not in orig["statuses"]          # nothing stops the duplicates: all 200/409

    # proposed: one row per nullifier holds (the unique index), the loser's answer does not
    assert prop["verdict"] == "race"
    assert prop["invariants"][ONE_ROW] == 0
    assert prop["invariants"][NO_LOST] == 0
    assert prop["invariants"][LOSER] > 0 and prop["statuses"]["500"] > 0
    uncaught = "40001" if iso == "serializable" else "23505"
    assert prop["sqlstates"][uncaught] == prop["statuses"]["500"]   # every 500 is that SQLSTATE

    # recommended: INSERT ... ON CONFLICT DO NOTHING, then read by key / nullifier
    assert reco["verdict"] == "safe" and reco["violations"] == 0
    assert all(v == 0 for v in reco["invariants"].values())
    assert reco["statuses"] == expected_statuses(reco["cases"], sessions)
    assert "23505" not in reco["sqlstates"]


@pytest.mark.parametrize("iso", ISOLATIONS)
def test_recommended_holds_at_8_sessions(pgrace, tmp_path, iso):
    res = run_cell(pgrace, tmp_path, iso, 8, RECOMMENDED_TRIALS, target="nullifier_submission/recommended")
    r = res["recommended"]
    assert r["verdict"] == "safe" and r["violations"] == 0
    assert all(v == 0 for v in r["invariants"].values())
    assert sum(r["cases"].values()) == RECOMMENDED_TRIALS
    assert r["statuses"] == expected_statuses(r["cases"], 8)
    assert set(r["sqlstates"]) <= {"00000", "40001"}   # 40001 only under rr/ser, and retried


@pytest.mark.parametrize("scenario", ["nullifier_submission", "idempotent_submission"])
def test_the_seeds_rollback_plan_does_not_run(pgrace, tmp_path, scenario):
    """The seed's Rollback Plan starts with ALTER TABLE "submission" DROP CONSTRAINT
    "submission_nullifier_key", but its migration made a unique INDEX of that name, not a
    constraint: 42704, and (one script) nothing after it runs. pgrace runs it as written
    after the proposed variant's migration, in a savepoint, and reports the error."""
    doc, _ = pgrace.stress_json(scenario, "-c", 2, "-t", 20, tmp_path=tmp_path)
    res = {r["variant"]: r for r in doc["results"]}
    prop = res["proposed"]
    assert [q["which"] for q in prop["seed_sql"]] == ["rollback"]
    q = prop["seed_sql"][0]
    assert q["sqlstate"] == "42704"
    assert q["error"] == '42704 constraint "submission_nullifier_key" of relation "submission" does not exist'
    assert q["sql"].startswith('ALTER TABLE "submission" DROP CONSTRAINT "submission_nullifier_key";')
    assert prop["seed_sql_error"] == q["error"]
    # rolled back: the unique index is still there and still keeps one row per nullifier/key
    assert prop["invariants"][ONE_ROW if scenario == "nullifier_submission" else "one Submission per idempotency key"] == 0
    for name in ("original", "recommended"):          # no migration of the seed's to undo
        assert res[name]["seed_sql"] == [] and res[name]["seed_sql_error"] is None
