"""The HTTP door (issue #14): a spec's `http` variants are requests to the application, one
instance per session started by pgrace (`app { CMD }`, --app) behind its session's proxy
listener, so its statements are the session's steps. tests/node/invite_app.js is seed 001's
claim with node-postgres (PR #15 as merged, and the recommended one-transaction form), and
misbehaves on demand (MISBEHAVE=...). The seeds' own stacks are under examples/ and have
their own tests (test_examples_*.py).
"""
import json
import os
import pathlib
import signal
import subprocess
import time

import pytest

from conftest import ROOT

SPEC = "tests/node/invite_claim_http.spec"
INV_409 = "a double submit answers 201 once, then 200 with the same Submission (never 409)"
INV_ONE = "at most one Submission per invite"


def run(pgrace, *args, timeout=600, **env):
    argv = [pgrace.binary, *map(str, args), "--dsn", pgrace.dsn]
    e = pgrace.env()
    e.update(env)
    t0 = time.time()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=e, cwd=ROOT)
    p.seconds = time.time() - t0
    return p


def results(path):
    doc = json.loads(pathlib.Path(path).read_text())
    return doc, {r["variant"]: r for r in doc["results"]}


def app_processes():
    """PIDs of test applications still running (none may outlive pgrace)."""
    out = subprocess.run(["pgrep", "-f", "tests/node/invite_app.js"], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def test_pr15_409_found_over_http_at_8_sessions(pgrace, tmp_path):
    out = tmp_path / "r.json"
    p = run(pgrace, "http", f"{SPEC}/proposed", "-c", 8, "-t", 150, "-q", "--json", out)
    assert p.returncode == 0, p.stdout + p.stderr          # expect proposed race: matched
    doc, res = results(out)
    r = res["proposed"]
    assert doc["error"] is None and r["sessions"] == 8 and r["trials"] == 150
    assert r["verdict"] == "race" and r["matched"]
    assert r["invariants"][INV_409] > 0 and r["invariants"][INV_ONE] == 0
    assert r["statuses"].get("409", 0) > 0 and r["statuses"]["201"] == 150
    bodies = {(b["status"], b["body"]): b["answers"] for b in r["bodies"]}     # tallied by shape
    assert bodies[(201, '{"submission":{"id":#}}')] == 150
    assert bodies[(409, '{"error":"invite already used"}')] == r["statuses"]["409"]
    # the application's own statements are the trace: PR #15's claim, its lookups
    labels = {s["label"] for c in r["counterexamples"] for s in c["steps"]}
    assert any(l.startswith("UPDATE invite") for l in labels), labels
    # last-byte sync: every request's final byte within a millisecond (send side) at p99
    spread = r["http_spread_us"]
    assert spread["samples"] == 150 and spread["p50"] < 1000, spread
    assert not app_processes()


def test_recommended_clean_over_1000_trials(pgrace, tmp_path):
    out = tmp_path / "r.json"
    p = run(pgrace, "http", f"{SPEC}/recommended", "-c", 8, "-t", 1000, "-q", "--json", out)
    assert p.returncode == 0, p.stdout + p.stderr
    _, res = results(out)
    r = res["recommended"]
    assert r["trials"] == 1000 and r["verdict"] == "safe" and r["violations"] == 0, r["invariants"]
    assert r["statuses"] == {"201": 1000, "200": 7000}


def test_explore_finds_409_within_10_schedules_and_replays(pgrace, tmp_path):
    save = tmp_path / "s"
    out = tmp_path / "r.json"
    p = run(pgrace, "explore", SPEC, "-c", 2, "--save", save, "-q", "--json", out)
    assert p.returncode == 0, p.stdout + p.stderr
    _, res = results(out)
    pr, rec = res["proposed"], res["recommended"]
    # the C scenario's figures exactly: 2 of the 8 schedules fail, the first at schedule 4
    assert pr["verdict"] == "race" and pr["trials"] == 8 and pr["violations"] == 2
    assert 1 <= pr["explore"]["first_violation"] <= 10
    assert rec["verdict"] == "safe" and rec["explore"]["complete"] and rec["trials"] <= 7   # DPOR: 6 traces
    files = sorted(save.glob("*.schedule"))
    assert len(files) == 1 and "proposed" in files[0].name
    p = run(pgrace, "replay", files[0])
    assert p.returncode == 0 and "reproduced" in p.stdout, p.stdout + p.stderr
    assert "S2=409" in p.stdout or "S1=409" in p.stdout


def test_faults_reach_the_application(pgrace, tmp_path):
    """kill-backend through the wire: the app's connection dies, it answers 500, the client
    retries; the recommended form leaves nothing half-done. PR #15's two autocommits do."""
    out = tmp_path / "r.json"
    p = run(pgrace, "http", SPEC, "-c", 1, "-t", 60, "--fault", "kill-backend@0.5", "-q", "--json", out)
    assert p.returncode in (0, 1), p.stdout + p.stderr
    doc, res = results(out)
    assert doc["error"] is None
    rec, pr = res["recommended"], res["proposed"]
    assert rec["fault"]["fired"] > 0 and rec["verdict"] == "safe", rec["fault"]
    assert pr["fault"]["fired"] > 0
    assert pr["invariants"]["a request that failed (5xx) left nothing behind (nothing half-committed)"] > 0


@pytest.mark.parametrize("mode,message", [
    ("exit-at-start", "app instance 1 (port "),
    ("no-listen", "did not listen on 127.0.0.1:"),
    ("crash", "Segmentation fault"),
    ("hang", "did not answer within the step timeout"),
    ("garbage", "answered what is not HTTP: not an HTTP/1.x status line"),
])
def test_a_misbehaving_application_is_a_harness_error(pgrace, tmp_path, mode, message):
    out = tmp_path / "r.json"
    p = run(pgrace, "http", f"{SPEC}/proposed", "-c", 4, "-t", 20, "--step-timeout", 3, "-q", "--json", out,
            timeout=120, MISBEHAVE=mode)
    assert p.returncode == 2, p.stdout + p.stderr
    err = p.stderr.strip().splitlines()[-1]
    assert err.startswith("pgrace: invite_claim_http/proposed: ") and message in err, err
    if mode == "exit-at-start":
        assert "exited with status 3; its output said: cannot start: missing config" in err
    doc = json.loads(out.read_text())
    assert doc["error"] and message in doc["error"]
    assert all(r["verdict"] != "race" for r in doc["results"])          # never a race
    assert not app_processes()


def test_interrupt_stops_the_application(pgrace, tmp_path):
    e = pgrace.env()
    p = subprocess.Popen([str(pgrace.binary), "http", f"{SPEC}/recommended", "-c", "4", "-T", "60", "-q", "--dsn", pgrace.dsn],
                         cwd=ROOT, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(100):
        if len(app_processes()) >= 4:
            break
        time.sleep(0.1)
    assert len(app_processes()) >= 4
    time.sleep(1)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130, err
    assert "interrupted" in err
    assert not app_processes()


def test_bad_spec_and_options_exit_2_before_a_server(pgrace, tmp_path):
    bad = tmp_path / "bad.spec"
    bad.write_text("setup { CREATE TABLE t (k text); }\nhttp v { POST no-slash }\n")
    p = subprocess.run([pgrace.binary, "http", str(bad)], capture_output=True, text=True, cwd=ROOT,
                       env=pgrace.env(), timeout=30)
    assert p.returncode == 2
    assert "the request line 'POST no-slash' is not `METHOD /path`" in p.stderr
    noapp = tmp_path / "noapp.spec"
    noapp.write_text("http v { GET /x }\n")
    p = subprocess.run([pgrace.binary, "http", str(noapp)], capture_output=True, text=True, cwd=ROOT,
                       env=pgrace.env(), timeout=30)
    assert p.returncode == 2 and "no application to send it to" in p.stderr, p.stderr
    p = subprocess.run([pgrace.binary, "http", "invite_claim"], capture_output=True, text=True, cwd=ROOT,
                       env=pgrace.env(), timeout=30)
    assert p.returncode == 2 and "http needs a spec file with http variants" in p.stderr
    for spec_text, msg in [("model nosuch\nhttp v { GET /x }\napp { true }\n", "model 'nosuch': no such scenario"),
                           ("app { a }\napp { b }\n", "a second app block")]:
        f = tmp_path / "m.spec"
        f.write_text(spec_text)
        p = subprocess.run([pgrace.binary, "http", str(f)], capture_output=True, text=True, cwd=ROOT,
                           env=pgrace.env(), timeout=30)
        assert p.returncode == 2 and msg in p.stderr, p.stderr


def test_run_puts_the_c_model_beside_the_real_stack(pgrace, tmp_path):
    out = tmp_path / "out"
    p = run(pgrace, "run", f"{SPEC}/proposed", "--no-faults", "--budget", 20, "--out", out, "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "the C model against the real stack" in p.stdout
    assert "invite_claim/proposed " in p.stdout       # the modelled C variant ran beside it
    lines = [l for l in p.stdout.splitlines() if l.startswith("invite_claim_http/") and ("agree" in l or "DIFFER" in l)]
    assert len(lines) == 9, lines                   # 3 levels x (2, 8 sessions, explore)
    explore = [l for l in lines if " explore " in l]
    assert all(l.rstrip().endswith("agree") for l in explore), explore
    assert any("race 2/8 schedules" in l for l in explore)
    html = (out / "index.html").read_text()
    assert "The C model against the real stack" in html
    assert "The C model against the real stack" in (out / "summary.md").read_text()


@pytest.mark.parametrize("build", ["pgrace-asan", "pgrace-tsan"])
def test_sanitizer_builds_run_applications_clean(pgrace, build):
    """The session threads, the last-byte release, the proxy's threads and the scheduler
    around an application: no report from ASan+UBSan or TSan, under stress (with a fault),
    explore, and an application that crashes."""
    binary = ROOT / "bin" / build
    for args, env, rc in [(["http", SPEC, "-c", 4, "-t", 30], {}, (0,)),
                          (["http", f"{SPEC}/recommended", "-c", 2, "-t", 20, "--fault", "kill-backend"], {}, (0,)),
                          (["explore", SPEC, "-c", 2], {}, (0,)),
                          (["http", f"{SPEC}/proposed", "-c", 2, "-t", 5], {"MISBEHAVE": "crash"}, (2,))]:
        e = pgrace.env()
        e.update(env)
        p = subprocess.run([str(binary), *map(str, args), "-q", "--dsn", pgrace.dsn], capture_output=True, text=True,
                           timeout=300, env=e, cwd=ROOT)
        assert p.returncode in rc, (args, p.returncode, p.stderr[-3000:])
        for bad in ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer", "WARNING: ThreadSanitizer"):
            assert bad not in p.stderr, (args, p.stderr[-3000:])
    assert not app_processes()


def test_statements_outside_a_request_pass_through(pgrace, tmp_path):
    """An application that talks to the database before its first request (an ORM's
    initialize()) or between requests: those statements belong to no request; they pass the
    proxy unrecorded and ungated, so explore neither waits for them nor counts them."""
    out = tmp_path / "r.json"
    p = run(pgrace, "explore", SPEC, "-c", 2, "-q", "--json", out, timeout=120, QUERY_AT_START="1")
    assert p.returncode == 0, p.stdout + p.stderr
    _, res = results(out)
    assert res["proposed"]["verdict"] == "race" and res["proposed"]["violations"] == 2
    assert res["recommended"]["verdict"] == "safe" and res["recommended"]["explore"]["complete"]
    labels = {s["label"] for c in res["proposed"]["counterexamples"] for s in c["steps"]}
    assert not any("version" in l for l in labels), labels
    p = run(pgrace, "http", SPEC, "-c", 4, "-t", 20, "-q", "--json", out, timeout=120, QUERY_AT_START="1")
    assert p.returncode == 0, p.stdout + p.stderr
