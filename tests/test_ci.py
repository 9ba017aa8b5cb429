"""pgrace ci: regressions must reproduce; new failures fail the job, known ones do not."""
import json


def test_ci_replays_regressions_and_tells_new_from_known(pgrace, tmp_path):
    regs = tmp_path / "regs"
    p = pgrace.run("explore", "invite_claim/proposed", "-c", "2", "--save", regs, "-q")
    assert p.returncode == 0 and list(regs.glob("*.schedule"))
    out = tmp_path / "out"
    p = pgrace.run("ci", "invite_claim", "--regressions", regs, "--budget", "0", "--out", out, "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "regressions all reproduced" in p.stdout and "0 new failure(s)" in p.stdout
    for name in ("results.json", "index.html", "junit.xml", "summary.md"):
        assert (out / name).exists()

    # a baseline in which one cell failed: that failure is known; a cell failing now that
    # did not fail then is new, and fails the job
    doc = json.loads((out / "results.json").read_text())
    for r in doc["results"]:
        r["matched"] = not (r["variant"] == "recommended" and r["mode"] == "explore")
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps(doc))
    p = pgrace.run("ci", "invite_claim", "--regressions", regs, "--budget", "0", "--out", out,
                   "--baseline", baseline, "-q")
    assert p.returncode == 0
    assert p.stdout.count("fixed since the baseline: invite_claim/recommended explore") == 3


def test_ci_fails_when_a_regression_no_longer_reproduces(pgrace, tmp_path):
    regs = tmp_path / "regs"
    pgrace.run("explore", "invite_claim/proposed", "-c", "2", "--save", regs, "-q")
    f = sorted(regs.glob("*.schedule"))[0]
    f.write_text(f.read_text().replace("variant proposed", "variant recommended"))
    p = pgrace.run("ci", "invite_claim/recommended", "--regressions", regs, "--budget", "0",
                   "--out", tmp_path / "o", "-q")
    assert p.returncode == 1
    assert "NOT reproduced" in p.stdout and "regressions NOT all reproduced" in p.stdout


def test_ci_bad_baseline_exits_2(pgrace, tmp_path):
    bad = tmp_path / "b.json"
    bad.write_text("{not json")
    p = pgrace.run("ci", "invite_claim/recommended", "--baseline", bad, "--budget", "1", "--out",
                   tmp_path / "o", "-q")
    assert p.returncode == 2
    assert p.stderr.startswith(f"pgrace: cannot read {bad}") and len(p.stderr.strip().splitlines()) == 1
    not_results = tmp_path / "n.json"
    not_results.write_text('{"x": 1}')
    p = pgrace.run("ci", "invite_claim/recommended", "--baseline", not_results, "--out", tmp_path / "o", "-q")
    assert p.returncode == 2 and "not a pgrace results file" in p.stderr
    p = pgrace.run("ci", "invite_claim/recommended", "--regressions", tmp_path / "none", "--out", tmp_path / "o", "-q")
    assert p.returncode == 2 and "no *.schedule files in" in p.stderr
