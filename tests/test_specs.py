"""Spec files: a team's own pattern without C. The same spec runs in every mode (list,
stress, explore, replay, run with its reports, accept), with faults, and bad input is one
line `FILE:LINE:COL: ...` and exit 2 before any server starts."""
import json
import shutil
import xml.etree.ElementTree as ET

import pytest

from conftest import ROOT

COUPON = ROOT / "specs" / "coupon_limit.spec"


@pytest.fixture
def coupon(tmp_path):
    """A private copy (accept rewrites files; schedules name the file)."""
    p = tmp_path / "coupon_limit.spec"
    shutil.copy(COUPON, p)
    return p


def test_list_shows_a_specs_variants_as_a_teams_own(pgrace, coupon):
    p = pgrace.run("list", coupon, dsn=False)
    assert p.returncode == 0, p.stderr
    rows = {l.split()[0]: l.split() for l in p.stdout.splitlines()[1:]}
    assert set(rows) == {"coupon_limit/original", "coupon_limit/recommended"}
    assert rows["coupon_limit/original"][1:4] == ["original", "race/race/race", "own"]
    assert rows["coupon_limit/recommended"][1:4] == ["recommended", "safe/safe/safe", "own"]


def test_stress_on_a_spec_finds_the_race_and_holds_the_fix(pgrace, coupon, tmp_path):
    for level in ("read-committed", "serializable"):
        doc, _ = pgrace.stress_json(str(coupon), "-c", 4, "-t", 300, "-i", level, tmp_path=tmp_path)
        res = {r["variant"]: r for r in doc["results"]}
        o, r = res["original"], res["recommended"]
        assert o["verdict"] == "race" and o["invariants"]["never more redemptions than max_uses"] > 0
        assert o["counterexamples"] and "violating row" in o["counterexamples"][0]["explanation"]
        assert r["verdict"] == "safe" and r["violations"] == 0 and r["matched"]
        assert r["statuses"] == {"201": 300, "410": 900}
        assert r["seed"] is None


def test_a_race_where_none_is_expected_fails_the_build(pgrace, coupon, tmp_path):
    text = coupon.read_text()
    coupon.write_text("\n".join(l for l in text.splitlines() if not l.startswith("expect ")) + "\n")
    p = pgrace.run("stress", f"{coupon}/original", "-c", 2, "-t", 200, "-q")
    assert p.returncode == 1, p.stdout + p.stderr          # no expectation: it must be safe
    assert "expected safe" in p.stdout


def test_explore_saves_a_schedule_that_replays_and_says_when_the_spec_changed(pgrace, coupon, tmp_path):
    p = pgrace.run("explore", f"{coupon}/original", "-c", 2, "-q", "--save", tmp_path / "s")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "the whole space" in p.stdout and "why: S" in p.stdout
    saved = sorted((tmp_path / "s").glob("coupon_limit-original-*.schedule"))
    assert saved
    assert f"spec " in saved[0].read_text() and str(coupon) in saved[0].read_text()
    r = pgrace.run("replay", saved[0])
    assert r.returncode == 0 and "reproduced" in r.stdout, r.stdout + r.stderr
    coupon.write_text(coupon.read_text() + "\n# changed\n")
    r = pgrace.run("replay", saved[0])
    assert "changed since this schedule was saved" in r.stderr
    assert r.returncode == 0 and "reproduced" in r.stdout


def test_faults_work_on_a_spec(pgrace, coupon, tmp_path):
    out = tmp_path / "f.json"
    p = pgrace.run("stress", f"{coupon}/original", "-c", 1, "-t", 100, "--fault", "error-at:redeem@1", "-q",
                   "--json", out)
    r = json.loads(out.read_text())["results"][0]
    assert r["fault"]["kind"] == "error-at" and r["fault"]["fired"] == 100, r["fault"]
    # the original bumped the count before the injected error: its retry then finds the coupon full
    assert r["invariants"]["every answer is 201 or 410"] == 0
    assert p.returncode in (0, 1)


def test_accept_writes_the_measured_verdicts(pgrace, coupon):
    text = coupon.read_text()
    coupon.write_text("\n".join(l for l in text.splitlines() if not l.startswith(("expect ", "# expectations"))) + "\n")
    p = pgrace.run("accept", coupon, "--budget", 0, "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    lines = coupon.read_text().splitlines()
    assert "expect original race" in lines and "expect recommended safe" in lines
    assert sum(l.startswith("# expectations measured by `pgrace accept`") for l in lines) == 1
    body = [l for l in lines if not l.startswith(("expect ", "# expectations"))]
    assert body == [l for l in text.splitlines() if not l.startswith(("expect ", "# expectations"))]
    first = [l for l in lines if l.startswith("expect ")]
    assert any(l.startswith("expect original fault ") for l in first)     # the fault matrix's verdicts
    p = pgrace.run("accept", coupon, "--budget", 0, "-q")     # again: replaced, not appended
    again = [l for l in coupon.read_text().splitlines() if l.startswith("expect ")]
    assert again.count("expect original race") == 1 and len(again) == len(set(again))
    assert pgrace.run("stress", coupon, "-c", 2, "-t", 200, "-q").returncode == 0


def test_run_with_spec_dir_reports_it(pgrace, coupon, tmp_path):
    out = tmp_path / "out"
    p = pgrace.run("run", "--spec", coupon.parent, "--budget", 0, "--out", out, "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads((out / "results.json").read_text())
    assert {r["scenario"] for r in doc["results"]} == {"coupon_limit"}
    assert any(r["fault"] for r in doc["results"])                 # the fault matrix too
    # the original's three autocommits half-commit when the connection dies or a step fails
    # after the bump: the file says so (expect original fault ... race), so run exits 0
    assert p.returncode == 0, p.stdout + p.stderr
    assert all(r["matched"] for r in doc["results"])
    broken = {r["fault"]["kind"] for r in doc["results"] if r["fault"] and r["verdict"] == "race"}
    assert broken and all(r["variant"] == "original" for r in doc["results"] if r["fault"] and r["verdict"] == "race")
    html = (out / "index.html").read_text()
    assert "<h2 id='coupon_limit'>coupon_limit</h2>" in html and "seed " not in html.split("<h2 id='coupon_limit'>")[1][:80]
    cases = ET.parse(out / "junit.xml").getroot().findall(".//testcase")
    assert cases and all(c.get("classname") == "pgrace.coupon_limit" for c in cases)
    assert "coupon_limit/original" in (out / "summary.md").read_text()


def test_explore_and_fault_expectations(pgrace, tmp_path):
    """A race inside one statement (INSERT ... SELECT max+1) is stress's to find, not
    exploration's; `expect V explore safe` says so, and `expect V fault K race` holds a
    variant to what a fault does to it."""
    f = tmp_path / "seq.spec"
    f.write_text("""setup { CREATE TABLE line (parent text, seq int); }
variant proposed {
  step add { INSERT INTO line SELECT :key, coalesce(max(seq), 0) + 1 FROM line WHERE parent = :key RETURNING seq }
           -> 201 id seq
}
invariant "no two lines share a number" {
  SELECT seq, count(*) FROM line WHERE parent = :key GROUP BY seq HAVING count(*) > 1 }
expect proposed race
expect proposed explore safe
expect proposed fault timeout_retry safe
""")
    p = pgrace.run("list", f, dsn=False)
    assert "race/race/race" in p.stdout, p.stdout + p.stderr
    out = tmp_path / "e.json"
    p = pgrace.run("explore", f, "-c", 2, "-q", "--json", out)
    assert p.returncode == 0, p.stdout + p.stderr            # explore: safe, as the file says
    r = json.loads(out.read_text())["results"][0]
    assert r["verdict"] == "safe" and r["expected"] == "safe"
    p = pgrace.run("stress", f, "-c", 8, "-t", 400, "-q")
    assert p.returncode == 0, p.stdout + p.stderr            # stress finds it: race, as expected
    bad = tmp_path / "bad.spec"
    bad.write_text(f.read_text() + "expect proposed fault no_such_fault race\n")
    p = pgrace.run("list", bad, dsn=False)
    assert p.returncode == 2 and "unknown fault" in p.stderr


@pytest.mark.parametrize("text,where,what", [
    ("variant v { step a { SELECT 1 }\n  if rows = x -> 200 }\n", ":2:", "rows"),
    ("variant v { step a { SELECT 1 } -> goto nowhere }\n", ":1:", "nowhere"),
    ("variant v { step a { SELECT :b.id } step b { SELECT 1 AS id } }\n", ":1:", "no earlier step"),
    ("variant v { step a { SELECT :nope } }\n", ":1:", "unknown parameter"),
    ("setup { CREATE TABLE t (x int) \n", ":1:", ""),
    ("variant v { step a { SELECT 1 } }\nvariant v { step b { SELECT 1 } }\n", ":2:", "v"),
    ("session s1 { step a { SELECT 1 } }\npermutation a b\n", ":2:", "b"),
])
def test_bad_spec_is_one_line_and_exit_2_before_any_server(pgrace, tmp_path, text, where, what):
    f = tmp_path / "bad.spec"
    f.write_text(text)
    p = pgrace.run("stress", f, "-t", 1, dsn=False, env=pgrace.env(PGRACE_DSN="host=/nonexistent"))
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(f"pgrace: {f}{where}") and what in lines[0], lines[0]
    assert "starting a throwaway" not in p.stderr and "cannot connect" not in p.stderr


def test_a_setup_that_fails_on_the_server_names_it(pgrace, tmp_path):
    f = tmp_path / "badsql.spec"
    f.write_text("setup { CREATE TABLE t (x nosuchtype) }\nvariant v { step a { SELECT 1 } -> 200 }\n")
    p = pgrace.run("stress", f, "-t", 1, "-q")
    assert p.returncode == 2
    assert "nosuchtype" in p.stderr and "setting up schema" in p.stderr


def test_a_failed_step_is_not_taken_by_a_bare_rule(pgrace, tmp_path):
    """`step commit { COMMIT } -> 201`: a COMMIT that fails (here a deferred unique check, as
    a serialization failure would) is an uncaught error, 500, not a 201 naming a row that was
    rolled back; `if error` still takes it."""
    f = tmp_path / "failed_commit.spec"
    f.write_text(
        "setup { CREATE TABLE t (k text, x int, UNIQUE (k, x) DEFERRABLE INITIALLY DEFERRED); }\n"
        "variant bare {\n"
        "  step begin { BEGIN }\n"
        "  step one { INSERT INTO t VALUES (:key, 1) RETURNING x }\n"
        "  step two { INSERT INTO t VALUES (:key, 1) }\n"
        "  step commit { COMMIT } -> 201 id one.x\n"
        "}\n"
        "variant caught {\n"
        "  step begin { BEGIN }\n"
        "  step one { INSERT INTO t VALUES (:key, 1) RETURNING x }\n"
        "  step two { INSERT INTO t VALUES (:key, 1) }\n"
        "  step commit { COMMIT } if error 23505 -> 409\n"
        "              -> 201 id one.x\n"
        "}\n"
        "invariant \"a failed COMMIT is never a 201\" statuses 500 409\n")
    doc, _ = pgrace.stress_json(str(f), "-c", 1, "-t", 20, tmp_path=tmp_path)
    res = {r["variant"]: r for r in doc["results"]}
    assert res["bare"]["statuses"] == {"500": 20} and res["bare"]["verdict"] == "safe", res["bare"]["statuses"]
    assert res["bare"]["sqlstates"].get("23505") == 20
    assert res["caught"]["statuses"] == {"409": 20} and res["caught"]["verdict"] == "safe"


def test_a_resent_requests_first_answer_is_checked_too(pgrace, tmp_path):
    """`case retry sends 2`: the client sends again after the answer. Answer invariants hold
    for every answer, the first send's too: a first 500 breaks `statuses 200`, a resend that
    gets 201 again breaks `exactly one 201`, and a resend naming another id breaks `same id`."""
    f = tmp_path / "resend.spec"
    f.write_text(
        "setup { CREATE TABLE t (k text PRIMARY KEY, id bigserial); }\n"
        "case retry sends 2\n"
        "variant first_fails {\n"
        "  step ins { INSERT INTO t (k) VALUES (:key) ON CONFLICT DO NOTHING RETURNING id } if rows = 1 -> 500\n"
        "  step get { SELECT id FROM t WHERE k = :key } -> 200 id id\n"
        "}\n"
        "variant creates_twice {\n"
        "  step ins { INSERT INTO t (k) VALUES (:key || '-' || nextval('t_id_seq')) RETURNING id } -> 201 id id\n"
        "}\n"
        "invariant \"every answer is 200 or 201\" statuses 200 201\n"
        "invariant \"one creation\" exactly one 201\n"
        "invariant \"one id\" same id\n")
    doc, _ = pgrace.stress_json(str(f), "-c", 1, "-t", 20, tmp_path=tmp_path, expect_rc=1)
    res = {r["variant"]: r for r in doc["results"]}
    ff, ct = res["first_fails"], res["creates_twice"]
    assert ff["invariants"] == {"every answer is 200 or 201": 20, "one creation": 20, "one id": 0}, ff["invariants"]
    assert ff["counterexamples"][0]["explanation"] == "S1 answered 500 (first send)"
    assert ct["invariants"] == {"every answer is 200 or 201": 0, "one creation": 20, "one id": 20}, ct["invariants"]


def test_commit_of_an_aborted_transaction_is_not_a_commit(pgrace, tmp_path):
    """A step's error taken by `if error -> next`, then `step commit { COMMIT } -> 201`: the
    server answers COMMIT with ROLLBACK and nothing is written, so the step failed (25P02,
    as pgr_commit says for C handlers): uncaught, 500, never a 201."""
    f = tmp_path / "aborted_commit.spec"
    f.write_text(
        "setup { CREATE TABLE t (k text PRIMARY KEY); }\n"
        "variant v {\n"
        "  step begin { BEGIN }\n"
        "  step ins { INSERT INTO t VALUES (:key) }\n"
        "  step bad { SELECT 1/0 } if error -> next\n"
        "  step commit { COMMIT } -> 201\n"
        "}\n"
        "invariant \"nothing was committed, so no 201\" statuses 500\n")
    doc, _ = pgrace.stress_json(str(f), "-c", 1, "-t", 10, tmp_path=tmp_path)
    r = doc["results"][0]
    assert r["statuses"] == {"500": 10} and r["verdict"] == "safe", r["statuses"]


def test_a_batch_of_cases_without_rows_runs(pgrace, tmp_path):
    """`case NAME { }` inserts no row; a batch made only of such trials sends nothing (it used
    to send an empty query and stop with a harness error)."""
    f = tmp_path / "empty.spec"
    f.write_text("setup { CREATE TABLE t (k text); }\ncase none { }\n"
                 "variant v { step a { SELECT count(*) AS n FROM t WHERE k = :key::text } if n = 0 -> 404 -> 200 }\n"
                 "invariant \"nothing there\" statuses 404\n")
    doc, _ = pgrace.stress_json(str(f), "-t", 20, tmp_path=tmp_path)
    r = doc["results"][0]
    assert doc["error"] is None and r["verdict"] == "safe" and r["statuses"] == {"404": 40}
