"""Programs as sessions (issue #13, item 3): `pgrace stress|explore FILE.spec --client CMD` and a
spec's `client NAME { CMD }` items. Each session runs the program once per trial through the
proxy listener bound to it; the program's statements are the session's steps.

Seed 001's PR #15 claim (tests/clients/invite_claim_pr15.py, psycopg2) and the recommended
one-transaction form (invite_claim_recommended.py), and programs that misbehave
(bad_program.py): a harness error (exit 2) or the answer the protocol documents, never a race.
"""
import json
import os
import pathlib
import subprocess
import sys
import time

import psycopg2
import pytest

from conftest import ROOT

PY = "/usr/bin/python3"
SPEC = "tests/clients/invite_claim_client.spec"
ANSWERS = "tests/clients/answers.spec"
PR15 = f"{PY} tests/clients/invite_claim_pr15.py"
REC = f"{PY} tests/clients/invite_claim_recommended.py"
BAD = f"{PY} tests/clients/bad_program.py"


def run(pgrace, *args, dsn=None, timeout=600):
    argv = [pgrace.binary, *map(str, args), "--dsn", dsn or pgrace.dsn]
    t0 = time.time()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=pgrace.env(), cwd=ROOT)
    p.seconds = time.time() - t0
    return p


def results(path):
    doc = json.loads(pathlib.Path(path).read_text())
    return doc, {r["variant"]: r for r in doc["results"]}


def test_stress_8_sessions_pr15_409_and_recommended_clean(pgrace, tmp_path):
    out = tmp_path / "r.json"
    p = run(pgrace, "stress", SPEC, "-c", 8, "-t", 60, "-q", "--json", out)
    assert p.returncode == 0, p.stdout + p.stderr
    doc, res = results(out)
    assert doc["error"] is None
    pr15, rec = res["pr15"], res["recommended"]
    for r in (pr15, rec):
        assert r["trials"] == 60 and r["sessions"] == 8 and r["matched"], r
    # PR #15: one Submission per invite holds, the duplicates' 409 does not
    assert pr15["verdict"] == "race" and pr15["statuses"].get("409", 0) > 0, pr15["statuses"]
    assert pr15["invariants"]["exactly one Submission per valid invite"] == 0
    assert pr15["invariants"]["every answer is 201, 200 (the winner's id), 400 or 410"] > 0
    assert pr15["release"] == "normal"
    # recommended: clean, every duplicate gets the winner's id
    assert rec["verdict"] == "safe" and rec["violations"] == 0, rec["invariants"]
    assert set(rec["statuses"]) <= {"200", "201"} and rec["statuses"]["201"] == 60
    print(f"\ntrials/s at 8 sessions: pr15 {pr15['trials_per_s']:.1f}, recommended {rec['trials_per_s']:.1f}")


def test_explore_finds_409_within_10_and_recommended_whole_space(pgrace, tmp_path):
    out = tmp_path / "r.json"
    p = run(pgrace, "explore", SPEC, "-c", 2, "-q", "--json", out, "--save", tmp_path / "s")
    assert p.returncode == 0, p.stdout + p.stderr
    doc, res = results(out)
    pr15, rec = res["pr15"], res["recommended"]
    assert pr15["verdict"] == "race" and 1 <= pr15["explore"]["first_violation"] <= 10, pr15["explore"]
    assert "S1=201" in pr15["explore"]["minimal"] and "409" in pr15["explore"]["minimal"]
    assert rec["verdict"] == "safe" and rec["explore"]["complete"], rec["explore"]
    assert rec["violations"] == 0
    print(f"\nschedules/s through the wire: pr15 {pr15['trials_per_s']:.1f}, recommended {rec['trials_per_s']:.1f}")
    # the schedule names the program and replays it
    saved = pr15["explore"]["saved"]
    assert saved and f"client {PR15}\n" in pathlib.Path(saved[0]).read_text()
    r = run(pgrace, "replay", saved[0])
    assert r.returncode == 0 and "reproduced" in r.stdout + r.stderr, r.stdout + r.stderr


def test_client_option_programs_as_a_specs_variants_side_by_side(pgrace, tmp_path):
    """--client NAME=CMD replaces the spec's variants; its expect lines apply by name."""
    out = tmp_path / "r.json"
    p = run(pgrace, "explore", "specs/invite_claim_spec.spec", "-c", 2, "-q", "--json", out,
            "--client", f"proposed={PR15}", "--client", f"recommended={REC}")
    assert p.returncode == 0, p.stdout + p.stderr
    _, res = results(out)
    assert sorted(res) == ["proposed", "recommended"]
    assert res["proposed"]["verdict"] == "race" and res["proposed"]["expected"] == "race"
    assert res["recommended"]["verdict"] == "safe" and res["recommended"]["matched"]
    # one program, no name: the variant is 'client', held to safe (no expect line names it)
    p = run(pgrace, "stress", "specs/invite_claim_spec.spec", "-c", 2, "-t", 10, "-q", "--json", out,
            "--client", REC, "--case", "double_submit")
    assert p.returncode == 0, p.stdout + p.stderr
    _, res = results(out)
    assert list(res) == ["client"] and res["client"]["verdict"] == "safe"


def test_list_and_run_with_programs(pgrace, tmp_path):
    p = run(pgrace, "list", SPEC)
    assert p.returncode == 0 and "invite_claim_client/pr15" in p.stdout and "race/race/race" in p.stdout, p.stdout
    p = run(pgrace, "run", "--spec", ANSWERS, "--client", f"{BAD} answer", "--no-faults", "--budget", 20,
            "--out", tmp_path / "o", "-q", timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    cells = [r for r in doc["results"] if r["scenario"] == "answers"]
    assert cells and all(r["verdict"] == "safe" and r["variant"] == "client" for r in cells)
    assert {r["mode"] for r in cells} == {"stress", "explore"}


def test_answers_as_documented(pgrace, tmp_path):
    """Last line `STATUS [ID]`, else exit 0 -> 200, nonzero -> 500 (garbage is no answer)."""
    for mode, want in [("answer", {"201": 8}), ("garbage", {"200": 8}), ("garbage_fail", {"500": 8})]:
        out = tmp_path / f"{mode}.json"
        p = run(pgrace, "stress", ANSWERS, "--client", f"{BAD} {mode}", "-c", 2, "-t", 4, "-q", "--json", out)
        assert p.returncode == 0, (mode, p.stdout + p.stderr)
        _, res = results(out)
        assert res["client"]["statuses"] == want and res["client"]["verdict"] == "safe", (mode, res["client"])


@pytest.mark.parametrize("mode,message", [
    ("hang", "neither answered nor exited within the step timeout (2 s, --step-timeout): killed"),
    ("hang_before", "neither answered nor exited within the step timeout (2 s, --step-timeout): killed"),
    ("crash", "crashed: killed by signal 11 (Segmentation fault"),
    ("noconnect", "answered 201 (exit 0) without one statement through its listener"),
    ("missing", "the command was not found (exit 127)"),
])
@pytest.mark.parametrize("command", ["stress", "explore"])
def test_misbehaving_programs_are_harness_errors(pgrace, tmp_path, command, mode, message):
    cmd = "/nonexistent/program" if mode == "missing" else f"{BAD} {mode}"
    out = tmp_path / "r.json"
    args = ["-t", 4] if command == "stress" else []
    p = run(pgrace, command, ANSWERS, "--client", cmd, "-c", 2, "--step-timeout", 2, "-q", "--json", out, *args,
            timeout=120)
    assert p.returncode == 2, (p.returncode, p.stdout + p.stderr)
    assert message in p.stderr, p.stderr
    assert p.seconds < 30, p.seconds
    doc, res = results(out)
    assert "client 'client'" in doc["error"] or "client 'client'" in (res["client"]["error"] or "")
    assert all(r["verdict"] != "race" for r in doc["results"])
    # nothing left running: the process group was killed
    left = subprocess.run(["pgrep", "-f", f"bad_program.py {mode}"], capture_output=True, text=True).stdout
    assert left == "", left


def admin(pgrace):
    c = psycopg2.connect(pgrace.dsn)
    c.autocommit = True
    return c


def test_scram_password_reaches_the_program_and_is_never_printed(pgrace, tmp_path):
    secret = "Cl1ent-s3cret-" + str(os.getpid())
    role = "pgrace_client_scram"
    a = admin(pgrace)
    with a.cursor() as cur:
        cur.execute(f"DROP OWNED BY {role}" if _role_exists(cur, role) else "SELECT 1")
        cur.execute(f"DROP ROLE IF EXISTS {role}")
        cur.execute("SET password_encryption = 'scram-sha-256'")
        cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", (secret,))
        cur.execute(f"GRANT CREATE ON DATABASE {a.info.dbname} TO {role}")
        cur.execute("SHOW hba_file")
        hba = pathlib.Path(cur.fetchone()[0])
        line = f"local all {role} scram-sha-256\n"
        text = hba.read_text()
        if line not in text:
            hba.write_text(line + text)
        cur.execute("SELECT pg_reload_conf()")
    a.close()
    time.sleep(0.5)
    dsn = f"{pgrace.dsn} user={role} password={secret}"
    out = tmp_path / "r.json"
    p = run(pgrace, "stress", SPEC, "-c", 2, "-t", 10, "--json", out, dsn=dsn)
    assert p.returncode == 0, p.stdout + p.stderr
    _, res = results(out)
    assert res["recommended"]["statuses"].get("201") == 10
    for text in (p.stdout, p.stderr, out.read_text()):
        assert secret not in text
    # a wrong password: the server refuses the program, a harness error that shows no password
    p = run(pgrace, "stress", ANSWERS, "--client", f"{BAD} answer", "-c", 2, "-t", 2,
            dsn=f"{pgrace.dsn} user={role} password=wrong-{secret}")
    assert p.returncode == 2 and secret not in p.stdout + p.stderr


def _role_exists(cur, role):
    cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    return cur.fetchone() is not None


@pytest.mark.parametrize("build", ["pgrace-asan", "pgrace-tsan"])
def test_sanitizer_builds_run_programs_clean(pgrace, build):
    """The session thread, the proxy's threads and the scheduler around a program: no report
    from ASan+UBSan or TSan, under stress and explore (the program's misbehaviour included)."""
    binary = pathlib.Path(pgrace.binary).parent / build
    for args, rc in [(["stress", SPEC, "-c", 2, "-t", 4, "--case", "all"], (0, 1)),
                     (["explore", f"{SPEC}/recommended", "-c", 2], (0,)),
                     (["explore", ANSWERS, "--client", f"{BAD} hang", "-c", 2, "--step-timeout", 2], (2,))]:
        p = subprocess.run([str(binary), *map(str, args), "-q", "--dsn", pgrace.dsn], capture_output=True, text=True,
                           timeout=300, env=pgrace.env(), cwd=ROOT)
        assert p.returncode in rc, (args, p.returncode, p.stderr[-3000:])
        for bad in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer", "WARNING: ThreadSanitizer"):
            assert bad not in p.stderr, (args, p.stderr[-3000:])


@pytest.mark.parametrize("fault", ["error-at@1", "kill-backend@1", "timeout-retry@1"])
def test_faults_at_the_wire_reach_the_program_and_its_retry(pgrace, tmp_path, fault):
    """The seam fires the fault on the program's statement; the program sees it as it would
    see the server's (an error, a closed connection), answers 500 or nothing, and the client's
    retry runs the program again. The recommended program survives every one."""
    out = tmp_path / "r.json"
    p = run(pgrace, "stress", f"{SPEC}/recommended", "-c", 2, "-t", 10, "-q", "--fault", fault, "--json", out)
    assert p.returncode == 0, p.stdout + p.stderr
    _, res = results(out)
    r = res["recommended"]
    assert r["fault"]["fired"] > 0 and r["fault"]["retried"] > 0, r["fault"]
    assert r["verdict"] == "safe" and set(r["statuses"]) <= {"200", "201"}, (r["statuses"], r["invariants"])
