"""Seed 001 written as a spec (specs/invite_claim_spec.spec) is held to the verdicts of its C
scenario (scenarios/invite_claim.c): original, PR #15 and recommended, at 2 and 8 sessions,
stress and explore, every isolation level."""
import json

import pytest

from conftest import ROOT

SPEC = ROOT / "specs" / "invite_claim_spec.spec"


def verdicts(pgrace, tmp_path, *args):
    out = tmp_path / "v.json"
    p = pgrace.run(*args, "-q", "--json", out)
    assert p.returncode == 0, p.stdout + p.stderr             # every verdict as expected
    return {r["variant"]: r["verdict"] for r in json.loads(out.read_text())["results"]}


@pytest.mark.parametrize("level", ["read-committed", "repeatable-read", "serializable"])
def test_spec_and_c_scenario_agree(pgrace, tmp_path, level):
    for sessions in (2, 8):
        c = verdicts(pgrace, tmp_path, "stress", "invite_claim", "-c", sessions, "-t", 300, "-i", level)
        s = verdicts(pgrace, tmp_path, "stress", SPEC, "-c", sessions, "-t", 300, "-i", level)
        assert s == c == {"original": "race", "proposed": "race", "recommended": "safe"}, (sessions, s, c)
    c = verdicts(pgrace, tmp_path, "explore", "invite_claim", "-c", 2, "-i", level)
    s = verdicts(pgrace, tmp_path, "explore", SPEC, "-c", 2, "-i", level)
    assert s == c, (s, c)


def test_spec_explore_finds_pr15s_409_in_a_few_schedules(pgrace, tmp_path):
    out = tmp_path / "e.json"
    p = pgrace.run("explore", f"{SPEC}/proposed", "-c", 2, "-q", "--json", out)
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(out.read_text())["results"][0]
    assert r["verdict"] == "race" and r["explore"]["first_violation"] <= 10
    assert "409" in r["explore"]["minimal"] and r["explore"]["complete"]
