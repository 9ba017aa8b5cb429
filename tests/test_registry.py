"""Scenarios are values registered at run time: a team's own scenario (tests/fixtures/,
registered by its own main, not in scenarios/registry.c) is listed, stressed, explored and
reported like a built-in one; the seam takes any statement text."""
import json
import pathlib
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT, Pgrace

FIXTURES = ROOT / "bin" / "pgrace-fixtures"


@pytest.fixture(scope="module")
def own(pgrace):
    assert FIXTURES.exists(), "make bin/pgrace-fixtures"
    return Pgrace(FIXTURES, pgrace.dsn, pgrace.tmpdir)


def test_registered_scenario_is_listed_as_a_teams_own(own, pgrace):
    p = own.run("list", dsn=False)
    assert p.returncode == 0, p.stderr
    rows = {line.split()[0]: line for line in p.stdout.splitlines()[1:]}
    assert "coupon_limit/original" in rows and "coupon_limit/recommended" in rows
    assert " own " in rows["coupon_limit/original"]          # no seed: the user's own
    builtins = pgrace.run("list", dsn=False).stdout.splitlines()
    assert all(line in p.stdout for line in builtins[1:])     # the seven are all still there
    assert "coupon_limit" not in pgrace.run("list", dsn=False).stdout


def test_registered_scenario_stress_finds_the_race_and_not_in_the_fix(own, tmp_path):
    doc, _ = own.stress_json("coupon_limit", "-c", 4, "-t", 300, tmp_path=tmp_path)
    res = {r["variant"]: r for r in doc["results"]}
    assert res["original"]["verdict"] == "race" and res["original"]["invariants"]["never more redemptions than max_uses"] > 0
    assert res["recommended"]["verdict"] == "safe" and res["recommended"]["violations"] == 0
    assert res["recommended"]["statuses"].get("201") == 300 and res["recommended"]["statuses"].get("410") == 900
    assert res["original"]["seed"] is None


def test_registered_scenario_explore_finds_the_minimal_schedule(own, tmp_path):
    out = tmp_path / "e.json"
    p = own.run("explore", "coupon_limit", "-c", 2, "-q", "--json", out, "--save", tmp_path / "s")
    assert p.returncode == 0, p.stdout + p.stderr
    res = {r["variant"]: r for r in json.loads(out.read_text())["results"]}
    assert res["original"]["verdict"] == "race" and res["original"]["explore"]["complete"]
    assert res["recommended"]["verdict"] == "safe" and res["recommended"]["explore"]["complete"]
    saved = list((tmp_path / "s").glob("coupon_limit-original-*.schedule"))
    assert saved
    r = own.run("replay", saved[0])
    assert r.returncode == 0 and "reproduced" in r.stdout, r.stdout + r.stderr


def test_registered_scenario_in_every_report(own, tmp_path):
    out = tmp_path / "out"
    p = own.run("run", "coupon_limit", "invite_claim/recommended", "--budget", "0", "--no-faults", "--out", out, "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    html = (out / "index.html").read_text()
    assert "<h2 id='coupon_limit'>coupon_limit</h2>" in html      # no empty seed heading
    assert "coupon_limit</a> / original" in html and "seed 001" in html
    assert "never more redemptions than max_uses" in html
    cases = ET.parse(out / "junit.xml").getroot().findall(".//testcase")
    assert any(c.get("classname") == "pgrace.coupon_limit" for c in cases)
    summary = (out / "summary.md").read_text()
    assert "coupon_limit/original" in summary and "coupon_limit/recommended" in summary
    assert "(seed )" not in summary and "seed (null)" not in html


def test_one_session_takes_100_distinct_statement_texts(own, tmp_path):
    doc, _ = own.stress_json("many_statements", "-c", 1, "-t", 3, tmp_path=tmp_path)
    r = doc["results"][0]
    assert doc["error"] is None and r["verdict"] == "safe"
    assert r["statements"] == 300 and r["statuses"] == {"200": 3}
