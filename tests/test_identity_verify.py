"""identity_verify (seed 004, WP-004 issue 1): identity verification in prisma.$transaction.

Every cell of the matrix (variant x isolation x 2/8 sessions) gets its measured verdict, and
each race cell the invariant that breaks. What holds in every variant: identity_hash is on
one user only (the @unique index that findUnique needs does that, before and after the fix).
What the fix does: seed test 4 (an audit insert failure leaves nothing behind). What it does
not: a losing user gets 500 (uncaught 23505 / 40001), not 409; the same user verifying twice
gets two 200s and two success audits (or a 500), never the 409 of seed test 1; and the
"log failure" audit is rolled back with the throw.
"""
import pytest

from conftest import RECOMMENDED_TRIALS

ISOLATIONS = ["read-committed", "repeatable-read", "serializable"]
TRIALS = 150    # cases 4:3:2:1; every race below shows in >= 40 % of its case's trials

HOLDER = "identity_hash is set on exactly one user"
WINNER = "users racing for one identity: one 200 and one success audit, for the user who holds it"
LOSER = "every other user gets 409, never 500"
SAME_USER = "the same user verifying twice: one 200, one success audit, 409 for the rest (seed test 1)"
LOGGED = "every 409 leaves its failure audit row (the seed's 'log failure')"
WHOLE = ("nothing half-committed: a verified user has its success audit; "
         "an audit failure leaves the user unverified")


def run_cell(pgrace, tmp_path, iso, sessions, trials, target="identity_verify"):
    return pgrace.cell(target, iso, sessions, trials, tmp_path)


def expected_statuses(cases, c):
    """The recommended contract: one 200 per contested identity, 409 for everyone else
    (with its failure audit), 500 when the audit insert fails (nothing kept)."""
    contested = cases["two_users_same_identity"] + cases["same_user_twice"]
    return {
        "200": contested,
        "409": (c - 1) * contested + c * cases["identity_taken"],
        "500": c * cases["audit_insert_fails"],
    }


@pytest.mark.parametrize("sessions", [2, 8])
@pytest.mark.parametrize("iso", ISOLATIONS)
def test_matrix_cell(pgrace, tmp_path, iso, sessions):
    res = run_cell(pgrace, tmp_path, iso, sessions, TRIALS)
    orig, prop, reco = res["original"], res["proposed"], res["recommended"]
    cases = orig["cases"]

    # original: autocommitted statements
    assert orig["verdict"] == "race"
    assert orig["invariants"][HOLDER] == 0 and orig["invariants"][WINNER] == 0   # the unique index
    # seed test 4 fails without the transaction: every failed audit insert leaves a verified user
    assert orig["invariants"][WHOLE] == cases["audit_insert_fails"]
    assert orig["sqlstates"]["23514"] > 0
    # the losing user's UPDATE hits the unique index: 500, not 409
    assert orig["invariants"][LOSER] > 0
    assert orig["statuses"]["500"] > 0 and orig["sqlstates"]["23505"] > 0
    assert orig["invariants"][SAME_USER] == cases["same_user_twice"]
    assert orig["invariants"][LOGGED] >= cases["identity_taken"]   # the original logs no failure

    # proposed: the seed's $transaction
    assert prop["verdict"] == "race"
    assert prop["invariants"][HOLDER] == 0 and prop["invariants"][WINNER] == 0
    assert prop["invariants"][WHOLE] == 0                          # seed test 4 holds
    assert prop["invariants"][LOSER] > 0 and prop["statuses"]["500"] > 0
    if iso == "serializable":
        assert prop["sqlstates"]["40001"] > 0
    else:
        assert prop["sqlstates"]["23505"] > 0
    # seed test 1 (same user twice) fails in every trial: two 200s / two audits, or a 500
    assert prop["invariants"][SAME_USER] == cases["same_user_twice"]
    if iso == "read-committed":
        # ... and under the default isolation by success: EVERY session of the same user
        # answers 200 (each with its own success audit), exactly one per two-user race
        assert prop["statuses"]["200"] == (cases["two_users_same_identity"]
                                           + sessions * cases["same_user_twice"])
    # the failure audit is written and then rolled back by the throw: never kept
    assert prop["invariants"][LOGGED] >= cases["identity_taken"]

    # recommended
    assert reco["verdict"] == "safe" and reco["violations"] == 0
    assert all(v == 0 for v in reco["invariants"].values())
    assert reco["statuses"] == expected_statuses(reco["cases"], sessions)


@pytest.mark.parametrize("iso", ISOLATIONS)
def test_recommended_holds_at_8_sessions(pgrace, tmp_path, iso):
    res = run_cell(pgrace, tmp_path, iso, 8, RECOMMENDED_TRIALS, target="identity_verify/recommended")
    r = res["recommended"]
    assert r["verdict"] == "safe" and r["violations"] == 0
    assert all(v == 0 for v in r["invariants"].values())
    cases = r["cases"]
    assert sum(cases.values()) == RECOMMENDED_TRIALS
    assert r["statuses"] == expected_statuses(cases, 8)
    # every session of an audit_insert_fails trial hit the audit CHECK once, and every
    # losing user's claim hit the unique index once (its 409)
    assert r["sqlstates"]["23514"] == 8 * cases["audit_insert_fails"]
    assert r["sqlstates"]["23505"] == 7 * cases["two_users_same_identity"] + 8 * cases["identity_taken"]


def test_same_user_twice_is_logic_not_a_race(pgrace, tmp_path):
    """Seed test 1's 'only one VerificationAudit' fails with no concurrency at all: read as the
    seed shows the route (no 'already verified' guard outside its lines), `existingUser.id !==
    userId` lets the same user through, so one session verifying twice gets 200 twice."""
    doc, _ = pgrace.stress_json("identity_verify", "-c", "1", "-t", "60", "--case", "same_user_again",
                                tmp_path=tmp_path)
    v = {r["variant"]: r for r in doc["results"]}
    for name in ("original", "proposed"):
        r = v[name]
        assert r["verdict"] == "race" and r["cases"]["same_user_again"] == 60
        assert r["invariants"][SAME_USER] == 60 and r["violations"] == 60
        assert r["statuses"] == {"200": 60}
    assert v["recommended"]["violations"] == 0 and v["recommended"]["statuses"] == {"409": 60}
