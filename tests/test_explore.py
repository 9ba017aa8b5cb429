"""The interleaving explorer: exhaustive search, replayable minimal schedules, bad files."""
import json
import subprocess

import pytest

from conftest import BIN, _clean_env

ISOLATIONS = ["read-committed", "repeatable-read", "serializable"]


def explore(pgrace, target, *args, tmp_path, expect_rc=0):
    out = tmp_path / "e.json"
    p = pgrace.run("explore", target, "-q", "--json", out, *args)
    assert p.returncode == expect_rc, f"rc={p.returncode}\n{p.stdout}\n{p.stderr}"
    return json.loads(out.read_text()), p


@pytest.mark.parametrize("iso", ISOLATIONS)
def test_exhaustive_finds_every_race_and_clears_recommended(pgrace, tmp_path, iso):
    doc, p = explore(pgrace, "invite_claim", "-c", "2", "-i", iso, tmp_path=tmp_path)
    by = {r["variant"]: r for r in doc["results"]}
    for v in ("original", "proposed"):
        r = by[v]
        assert r["mode"] == "explore" and r["explore"]["strategy"] == "exhaustive"
        assert r["explore"]["complete"], "the 2-session space must be explored to the end"
        assert r["verdict"] == "race" and r["matched"]
        assert 1 <= r["explore"]["first_violation"] <= r["schedules"]
        assert r["explore"]["minimal"], "a minimal counterexample is described"
    rec = by["recommended"]
    assert rec["explore"]["complete"] and rec["verdict"] == "safe" and rec["violations"] == 0
    assert rec["schedules"] >= 4
    # every schedule answered: one 201 and one 200 per schedule, nothing else
    assert rec["statuses"] == {"201": rec["schedules"], "200": rec["schedules"]}


def test_original_counterexample_is_the_lost_update_interleaving(pgrace, tmp_path):
    doc, p = explore(pgrace, "invite_claim/original", "-c", "2", tmp_path=tmp_path)
    r = doc["results"][0]
    assert r["invariants"]["exactly one Submission per invite"] > 0
    minimal = r["explore"]["minimal"]
    # both sessions read the invite as unused before either marked it used
    assert "read id=" in minimal and "used=f" in minimal
    assert "2 Submission rows for one invite" in minimal
    assert "find invite" in minimal and "create submission" in minimal


def test_proposed_counterexample_names_the_409_window(pgrace, tmp_path):
    doc, _ = explore(pgrace, "invite_claim/proposed", "-c", "2", tmp_path=tmp_path)
    minimal = doc["results"][0]["explore"]["minimal"]
    assert "'lookup submission' found 0 rows before S1's 'create submission' committed" in minimal \
        or "'lookup submission' found 0 rows before S2's 'create submission' committed" in minimal
    assert "answered 409" in minimal


def test_saved_schedule_replays_identically_100_times(pgrace, tmp_path):
    save = tmp_path / "schedules"
    doc, _ = explore(pgrace, "invite_claim/proposed", "-c", "2", "--save", save, tmp_path=tmp_path)
    files = sorted(save.glob("*.schedule"))
    assert files and [str(f) for f in files] == doc["results"][0]["explore"]["saved"]
    text = files[0].read_text()
    assert "violation exactly one 201; every duplicate gets 200 with the winner's id" in text
    p = pgrace.run("replay", files[0], "--repeat", "100", "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "reproduced" in p.stdout and "100 of 100 replays identical" in p.stdout


def test_replay_prints_the_trace(pgrace, tmp_path):
    save = tmp_path / "s"
    explore(pgrace, "invite_claim/original", "-c", "2", "--save", save, tmp_path=tmp_path)
    p = pgrace.run("replay", *sorted(save.glob("*.schedule")))
    assert p.returncode == 0, p.stderr
    assert "reproduced" in p.stdout and "S1" in p.stdout and "S2" in p.stdout and "why:" in p.stdout


def test_replay_says_when_it_diverges(pgrace, tmp_path):
    save = tmp_path / "s"
    explore(pgrace, "invite_claim/proposed", "-c", "2", "--save", save, tmp_path=tmp_path)
    f = sorted(save.glob("*.schedule"))[0]
    # the same schedule against the recommended variant does not reproduce
    tampered = tmp_path / "t.schedule"
    tampered.write_text(f.read_text().replace("variant proposed", "variant recommended"))
    p = pgrace.run("replay", tampered, "-q")
    assert p.returncode == 1
    assert "NOT reproduced" in p.stdout and ("diverged at step" in p.stdout or "different outcome" in p.stdout)


CORRUPT = [
    ("", "not a pgrace schedule"),
    ("scenario invite_claim\nvariant proposed\nisolation read-committed\nsessions 2\ncase double_submit\n"
     "grants 1 2 x\nviolation none\n", "grants must be session numbers"),
    ("scenario invite_claim\nvariant proposed\nisolation sideways\n", "bad isolation"),
    ("scenario nope\nvariant proposed\nisolation read-committed\nsessions 2\ncase double_submit\n"
     "grants 1 2\nviolation none\n", "unknown scenario"),
    ("scenario invite_claim\nvariant proposed\nisolation read-committed\nsessions 2\ncase double_submit\n"
     "grants 1 3\nviolation none\n", "names session 3 of 2"),
    ("hello world\n", "unknown key"),
]


@pytest.mark.parametrize("content,message", CORRUPT)
def test_corrupted_schedule_exits_2_with_one_line(pgrace, tmp_path, content, message):
    f = tmp_path / "bad.schedule"
    f.write_text(content)
    p = pgrace.run("replay", f)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgrace: ") and message in lines[0], p.stderr


def test_unreadable_schedule_exits_2(private_tmp):
    p = subprocess.run([str(BIN), "replay", "/nonexistent/x.schedule"], capture_output=True, text=True,
                       env=_clean_env(private_tmp), timeout=60)
    assert p.returncode == 2 and p.stderr.startswith("pgrace: cannot read schedule")
    assert list(private_tmp.glob("pgrace.*")) == []


def test_random_and_pct_find_the_proposed_race(pgrace, tmp_path):
    doc, _ = explore(pgrace, "invite_claim/proposed", "-c", "2", "--strategy", "random",
                     "--max-schedules", "200", "--seed", "7", tmp_path=tmp_path)
    assert doc["results"][0]["verdict"] == "race"
    doc, p = explore(pgrace, "invite_claim/proposed", "-c", "3", "--strategy", "pct", "--depth", "2",
                     "--max-schedules", "200", "--seed", "7", tmp_path=tmp_path)
    r = doc["results"][0]
    assert r["verdict"] == "race"
    assert 0 < r["explore"]["pct_bound"] <= 1 / 3
    assert "probability >= 1/(n*k^(d-1))" in p.stdout


@pytest.mark.parametrize("argv,message", [
    (["explore", "invite_claim", "--strategy", "bfs"], "--strategy must be"),
    (["explore", "invite_claim", "--depth", "0"], "--depth must be an integer in 1..8"),
    (["explore", "invite_claim", "-c", "9"], "explore supports 1..8 sessions"),
    (["explore", "invite_claim", "--case", "nope"], "has no case 'nope'"),
    (["replay"], "at least one schedule FILE"),
])
def test_explore_bad_input(argv, message, private_tmp):
    p = subprocess.run([str(BIN), *argv], capture_output=True, text=True, env=_clean_env(private_tmp), timeout=60)
    assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_minimization_drops_sessions_and_preemptions(pgrace, tmp_path):
    """A race found with 4 sessions is shrunk to the 2 sessions and 1 preemption it needs."""
    save = tmp_path / "s"
    doc, _ = explore(pgrace, "invite_claim/original", "-c", "4", "--strategy", "random",
                     "--max-schedules", "30", "--save", save, tmp_path=tmp_path)
    e = doc["results"][0]["explore"]
    assert e["minimal_size"] == {"sessions": 2, "steps": 6, "preemptions": 1}
    first = sorted(save.glob("*.schedule"))[0].read_text()
    assert "sessions 2\n" in first and "violation exactly one Submission per invite" in first
    p = pgrace.run("replay", *sorted(save.glob("*.schedule")), "-q")
    assert p.returncode == 0 and p.stdout.count("reproduced") == len(e["saved"])
