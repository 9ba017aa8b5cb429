"""Every race ever found, as a minimal schedule under fuzz/regressions/: each must reproduce on
its race variant, and must not on the variant we recommend."""
import pathlib

import pytest

from conftest import ROOT

SCHEDULES = sorted((ROOT / "fuzz" / "regressions").glob("*.schedule"))


def test_there_are_regressions_for_every_scenario_with_a_race():
    scenarios = {f.name.split("-")[0] for f in SCHEDULES}
    assert {"form_submission", "invite_claim", "conversation_dedup", "message_sequence", "identity_verify",
            "nullifier_submission", "idempotent_submission"} <= scenarios


def test_every_regression_reproduces(pgrace):
    p = pgrace.run("replay", *SCHEDULES, "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count(": reproduced") == len(SCHEDULES)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=[f.name for f in SCHEDULES])
def test_regression_does_not_reproduce_on_recommended(pgrace, tmp_path, schedule):
    text = schedule.read_text()
    variant = [l for l in text.splitlines() if l.startswith("variant ")][0]
    f = tmp_path / schedule.name
    f.write_text(text.replace(variant, "variant recommended"))
    p = pgrace.run("replay", f, "-q")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "NOT reproduced" in p.stdout
