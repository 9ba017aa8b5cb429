"""form_submission (seed 000, Plan 3.1): one ActionSubmission per form request.

Every cell of the matrix (variant x isolation x 2/8 sessions) gets its measured verdict,
and the recommended variant holds over 5000 trials at 8 sessions under each level.

Trials: case weights are 8 double_click : 1 retry_after_lost_answer : 1 no_form_request
(trial n is case n % 10), so 200 trials = 160 / 20 / 20. Measured race rates for the race
cells (2000 trials, per double-click trial): original under read committed 91-93 %, under
repeatable read 82-94 %, under serializable 89-97 %; proposed under serializable 93-99 %.
With 160 double-click trials a miss has probability below 0.2^160. The retry invariant
under serializable is asserted at 8 sessions only (72 % of 160 form requests; at 2
sessions 27 % of 40 would miss with p ~ 3e-6).
"""
import pytest

ISOLATIONS = ["read-committed", "repeatable-read", "serializable"]
TRIALS = 200

ONE = "at most one submission per form request"
DOUBLE = "a double click gets one 201 and 409 for every other click, never 500"
RETRY = "a retry after a lost answer: the first submit gets 201, the retry 409, never 500"
STORED = "a 201 answer's submission exists"
WHOLE = ("nothing half-committed: form request marked submitted iff its submission exists, "
         "with its form_submission message")
NULLS = "submissions without a form request are never blocked"

EXPECT = {  # variant -> verdict per isolation level (measured)
    "original": {"read-committed": "race", "repeatable-read": "race", "serializable": "race"},
    "proposed": {"read-committed": "safe", "repeatable-read": "safe", "serializable": "race"},
    "proposed_nocheck": {"read-committed": "safe", "repeatable-read": "safe", "serializable": "race"},
    "recommended": {"read-committed": "safe", "repeatable-read": "safe", "serializable": "safe"},
}


def expected_statuses(r):
    """The contract, exactly: a double click answers one 201 and n-1 409; a retry's last
    answer is 409; every submission without a form request answers 201."""
    n, cases = r["sessions"], r["cases"]
    return {
        "201": cases["double_click"] + n * cases["no_form_request"],
        "409": (n - 1) * cases["double_click"] + n * cases["retry_after_lost_answer"],
    }


def assert_safe(r):
    assert r["verdict"] == "safe" and r["violations"] == 0 and r["matched"], r["counterexamples"][:1]
    assert all(v == 0 for v in r["invariants"].values()), r["invariants"]
    assert r["statuses"] == expected_statuses(r)


@pytest.mark.parametrize("sessions", [2, 8])
@pytest.mark.parametrize("iso", ISOLATIONS)
def test_matrix_cell(pgrace, tmp_path, iso, sessions):
    doc, _ = pgrace.stress_json("form_submission", "-c", sessions, "-t", TRIALS, "-i", iso,
                                tmp_path=tmp_path)
    res = {r["variant"]: r for r in doc["results"]}
    assert set(res) == set(EXPECT)
    for name, r in res.items():
        assert r["trials"] == TRIALS and r["sessions"] == sessions and r["isolation"] == iso
        assert r["matched"], (name, r["invariants"])
        if name == "proposed_nocheck" and iso == "serializable" and sessions == 2:
            # its race (neighbouring forms aborting each other) is rare at 2 sessions: a cell
            # may go either way (race_rare_below); test_nocheck_race_is_rare_at_2_sessions
            assert r["expected"] == "either"
        else:
            assert r["verdict"] == r["expected"] == EXPECT[name][iso], (name, r["invariants"])
        assert {k: v for k, v in r["cases"].items() if v} == {"double_click": 160, "retry_after_lost_answer": 20, "no_form_request": 20}
        # the partial index never blocks submissions without a form request, and no
        # variant ever leaves a transaction half-written or answers 201 for a lost row
        assert r["invariants"][NULLS] == 0 and r["invariants"][WHOLE] == 0 and r["invariants"][STORED] == 0

    orig, prop, rec = res["original"], res["proposed"], res["recommended"]
    noch = res["proposed_nocheck"]
    # the plan on a service with no SELECT first: the loser never read the key, so even under
    # serializable its INSERT gets 23505 and the catch answers 409: double clicks hold
    assert noch["invariants"][ONE] == 0 and noch["invariants"][DOUBLE] == 0
    assert noch["sqlstates"].get("23505", 0) >= 0.9 * (sessions - 1) * noch["cases"]["double_click"]
    if iso != "serializable":
        assert_safe(noch)

    if iso == "read-committed":
        # original: both clicks pass the SELECT and both INSERT: duplicate submissions, all 201
        assert orig["invariants"][ONE] > 0 and orig["invariants"][DOUBLE] > 0
        assert orig["statuses"].get("500", 0) == 0 and orig["statuses"]["201"] > expected_statuses(orig)["201"]
    else:
        # original: the second UPDATE of the form request fails with 40001 -> 500; the row
        # conflict (or SSI) still keeps it to one submission
        assert orig["invariants"][ONE] == 0 and orig["invariants"][DOUBLE] > 0
        assert orig["statuses"].get("500", 0) > 0 and orig["sqlstates"].get("40001", 0) > 0

    if iso == "serializable":
        # the plan: the loser fails with 40001, not 23505; the catch never fires; rethrown -> 500
        assert prop["invariants"][ONE] == 0 and prop["invariants"][DOUBLE] > 0
        assert prop["statuses"].get("500", 0) > 0 and prop["sqlstates"].get("40001", 0) > 0
        assert prop["sqlstates"].get("23505", 0) == 0
        if sessions == 8:
            # different visitors' form requests (neighbours in the index) abort each other
            assert orig["invariants"][RETRY] > 0 and prop["invariants"][RETRY] > 0
    else:
        # the plan holds: the loser's INSERT waits for the winner and gets 23505 -> 409
        assert_safe(prop)
        assert prop["sqlstates"].get("23505", 0) > 0 and prop["sqlstates"].get("40001", 0) == 0

    assert_safe(rec)
    if iso == "read-committed":
        # ON CONFLICT DO NOTHING: the loser waits and inserts nothing; no error at all
        assert set(rec["sqlstates"]) == {"00000"}
    else:
        # the loser's conflict is with a row its snapshot cannot see: 40001, retried -> 409
        assert rec["sqlstates"].get("40001", 0) > 0 and rec["sqlstates"].get("23505", 0) == 0


@pytest.mark.parametrize("iso", ISOLATIONS)
def test_recommended_holds_5000_trials_8_sessions(pgrace, tmp_path, iso):
    doc, _ = pgrace.stress_json("form_submission/recommended", "-c", "8", "-t", "5000", "-i", iso,
                                tmp_path=tmp_path)
    r = doc["results"][0]
    assert r["trials"] == 5000 and r["sessions"] == 8 and r["isolation"] == iso
    assert sum(r["cases"].values()) == 5000
    assert_safe(r)
    assert r["statuses"] == {"201": 4000 + 8 * 500, "409": 7 * 4000 + 8 * 500}


def test_counterexample_shows_the_plan_rethrowing_40001(pgrace, tmp_path):
    doc, _ = pgrace.stress_json("form_submission/proposed", "-c", "2", "-t", "100", "-i", "serializable",
                                tmp_path=tmp_path)
    r = doc["results"][0]
    cex = [c for c in r["counterexamples"] if c["invariant"] == DOUBLE]
    assert cex, r["counterexamples"]
    c = cex[0]
    assert "answered 500 (uncaught SQLSTATE 40001)" in c["explanation"]
    loser = next(a["session"] for a in c["answers"] if a["status"] == 500)
    failed = [s for s in c["steps"] if s["session"] == loser and s["sqlstate"] == "40001"]
    assert failed and failed[0]["label"] == "save submission"


def test_spread_forms_show_the_cross_form_aborts_come_from_neighbouring_keys(pgrace, tmp_path):
    """Under serializable, different visitors' first submits abort each other (40001 -> 500)
    because their form ids are neighbours in the indexes; 10^16 apart they mostly do not.
    Measured at 8 sessions, 2000 trials: proposed 6596 of 16000 first submits broken with
    neighbouring ids, 199 spread; proposed_nocheck 1541 and 19."""
    got = {}
    for case in ("retry_after_lost_answer", "spread_forms"):
        doc, _ = pgrace.stress_json("form_submission/proposed", "-c", "8", "-t", "1200", "-i", "serializable",
                                    "--case", case, tmp_path=tmp_path)
        got[case] = doc["results"][0]["invariants"][RETRY]
    # (spread ids share pages until the regions have split them: the first trials still collide)
    assert got["retry_after_lost_answer"] > 2 * got["spread_forms"], got


def test_nocheck_race_is_rare_at_2_sessions_and_certain_at_8(pgrace, tmp_path):
    """proposed_nocheck under serializable: different forms abort each other through
    neighbouring index pages. At 8 sessions every cell finds it; at 2 it is rare (1 to 16
    of a 300-trial cell's 30 retry trials, by the machine's load), so a 2-session stress
    cell is expected "either": race and safe both match. The race is still there and still
    reported: with every trial a retry trial, 2 sessions find it."""
    doc, _ = pgrace.stress_json("form_submission/proposed_nocheck", "-c", "2", "-t", "400", "-i", "serializable",
                                "--case", "retry_after_lost_answer", tmp_path=tmp_path)
    r = doc["results"][0]
    assert r["expected"] == "either" and r["matched"]
    assert r["verdict"] == "race" and r["invariants"][RETRY] > 0          # found, and reported as a race
    assert r["invariants"][ONE] == 0 and r["invariants"][WHOLE] == 0
    assert all("40001" in c["explanation"] for c in r["counterexamples"])

    # a cell that met no retry trial is safe, and that matches too (exit status 0)
    doc, p = pgrace.stress_json("form_submission/proposed_nocheck", "-c", "2", "-t", "8", "-i", "serializable",
                                tmp_path=tmp_path)
    r = doc["results"][0]
    assert r["cases"]["double_click"] == 8 and r["verdict"] == "safe" and r["expected"] == "either" and r["matched"]
    assert "expected race or safe" in p.stdout

    # from 8 sessions on it is expected, and found
    doc, _ = pgrace.stress_json("form_submission/proposed_nocheck", "-c", "8", "-t", "300", "-i", "serializable",
                                tmp_path=tmp_path)
    r = doc["results"][0]
    assert r["expected"] == "race" and r["verdict"] == "race" and r["matched"] and r["invariants"][RETRY] > 0
    # exploration is not a matter of chance: it keeps its own expectation (explore_blind: safe)
    p = pgrace.run("explore", "form_submission/proposed_nocheck", "-c", "2", "-i", "serializable", "-q")
    assert p.returncode == 0 and "(expected safe)" in p.stdout, p.stdout
