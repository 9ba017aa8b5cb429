"""The example specs (specs/*.spec): every verdict as its file expects at every level, and the
racy forms really race (the invariant a person would name breaks), the fixed ones never do.
One stress run per spec and level, 4 sessions, 300 trials: about 40 s in all on 2 cores."""
import json

import pytest

from conftest import ROOT

SPECS = sorted((ROOT / "specs").glob("*.spec"))
LEVELS = ("read-committed", "repeatable-read", "serializable")

# What each racy form breaks (measured; the README's table under "Spec files"). A level
# missing from a dict breaks the same invariant as read committed.
NUMBERING = "each order's lines are numbered 1..N, no gap, no number twice"
BREAKS = {
    ("claim_job", "original"): "no job is run twice",
    ("claim_job", "proposed"): "no job is run twice",        # SKIP LOCKED, but no transaction
    ("coupon_limit", "original"): "never more redemptions than max_uses",
    ("dedup_insert", "original"): "one contact per account and email",
    ("dedup_insert", "proposed"): {                            # BEGIN ... COMMIT around the check
        "read-committed": "one contact per account and email",
        "repeatable-read": "one contact per account and email",
        # serializable turns the duplicate into a 40001 the handler does not retry: a 500
        "serializable": "every answer is 201 (created), 200 (exists) or 404 (no such account)"},
    ("idempotency_key", "original"): "one payment per idempotency key",
    ("invite_claim_spec", "original"): "exactly one Submission per valid invite",
    ("invite_claim_spec", "proposed"): "every answer is 201, 200 (the winner's id), 400 or 410",
    ("next_sequence", "original"): NUMBERING,
    ("next_sequence", "proposed"): {                           # one INSERT ... SELECT MAX + 1
        "read-committed": NUMBERING, "repeatable-read": NUMBERING,
        "serializable": "every answer is 201 (the line's number) or 404 (no such order)"},
}


def broken_invariant(spec, variant, level):
    b = BREAKS[(spec, variant)]
    return b if isinstance(b, str) else b.get(level, b["read-committed"])


def test_the_examples_are_there():
    names = {p.stem for p in SPECS}
    assert {"claim_job", "dedup_insert", "next_sequence", "idempotency_key"} <= names, names
    assert {s for s, _ in BREAKS} <= names


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_every_verdict_as_the_file_expects_and_the_racy_forms_race(pgrace, tmp_path, spec, level):
    out = tmp_path / "r.json"
    p = pgrace.run("stress", spec, "-c", 4, "-t", 300, "-i", level, "-q", "-P", 0, "--json", out)
    assert p.returncode == 0, p.stdout + p.stderr             # every verdict as its file expects
    doc = json.loads(out.read_text())
    assert doc["error"] is None and doc["results"]
    for r in doc["results"]:
        what = (spec.stem, r["variant"], level)
        assert r["error"] is None, (what, r["error"])
        assert r["trials"] == 300 and r["sessions"] == 4 and r["isolation"] == level, what
        assert r["matched"], (what, r["verdict"], r["invariants"])
        if r["kind"] == "recommended":
            assert r["verdict"] == "safe" and r["violations"] == 0, (what, r["invariants"])
            assert not any(r["invariants"].values()), (what, r["invariants"])
            continue
        # original and proposed: they race, and by the invariant that says what goes wrong
        assert r["verdict"] == "race" and r["violations"] > 0, (what, r["invariants"])
        assert (spec.stem, r["variant"]) in BREAKS, f"{what}: say in BREAKS what it breaks"
        name = broken_invariant(spec.stem, r["variant"], level)
        assert r["invariants"][name] > 0, (what, name, r["invariants"])
        assert r["counterexamples"], what
