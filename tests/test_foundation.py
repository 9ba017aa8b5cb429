"""The foundation: CLI contract, throwaway server, JSON schema, invite_claim verdicts."""
import json
import os
import signal
import subprocess
import time

import pytest

from conftest import BIN, postgres_processes_under, _clean_env, start_running, stop_server_now

ISOLATIONS = ["read-committed", "repeatable-read", "serializable"]


def test_list_shows_targets_kinds_expectations():
    p = subprocess.run([str(BIN), "list"], capture_output=True, text=True)
    assert p.returncode == 0
    rows = [line.split() for line in p.stdout.splitlines()[1:]]
    targets = {r[0]: r for r in rows}
    assert targets["invite_claim/original"][1] == "original"
    assert targets["invite_claim/proposed"][1] == "proposed"
    assert targets["invite_claim/recommended"][1] == "recommended"
    assert targets["invite_claim/recommended"][2] == "safe/safe/safe"
    assert targets["invite_claim/original"][3] == "001"


def test_original_is_flagged(pgrace, tmp_path):
    doc, p = pgrace.stress_json("invite_claim/original", "-c", "8", "-t", "300", tmp_path=tmp_path)
    r = doc["results"][0]
    assert r["verdict"] == "race" and r["expected"] == "race" and r["matched"]
    assert r["invariants"]["exactly one Submission per invite"] > 0
    assert "RACE in" in p.stdout
    cex = r["counterexamples"][0]
    assert cex["invariant"] == "exactly one Submission per invite"
    # the counterexample shows at least two sessions creating a Submission
    creators = {s["session"] for s in cex["steps"] if s["label"] == "create submission"}
    assert len(creators) >= 2


def test_proposed_keeps_one_row_but_breaks_its_status_contract(pgrace, tmp_path):
    """PR #15's first claim holds (one Submission); its second (duplicates get 200 with the
    same id) does not: some duplicates get 409 before the winner's Submission exists."""
    doc, _ = pgrace.stress_json("invite_claim/proposed", "-c", "8", "-t", "600", tmp_path=tmp_path)
    r = doc["results"][0]
    assert r["verdict"] == "race"
    assert r["invariants"]["exactly one Submission per invite"] == 0
    assert r["invariants"]["exactly one 201; every duplicate gets 200 with the winner's id"] > 0
    assert r["statuses"].get("409", 0) > 0


def test_proposed_under_repeatable_read_answers_500(pgrace, tmp_path):
    doc, _ = pgrace.stress_json("invite_claim/proposed", "-c", "8", "-t", "300", "-i", "repeatable-read",
                                tmp_path=tmp_path)
    r = doc["results"][0]
    assert r["verdict"] == "race"
    assert r["statuses"].get("500", 0) > 0
    assert r["sqlstates"].get("40001", 0) > 0


@pytest.mark.parametrize("iso", ISOLATIONS)
def test_recommended_holds_2000_trials_8_sessions(pgrace, tmp_path, iso):
    doc, _ = pgrace.stress_json("invite_claim/recommended", "-c", "8", "-t", "2000", "-i", iso,
                                tmp_path=tmp_path)
    r = doc["results"][0]
    assert r["trials"] == 2000 and r["sessions"] == 8 and r["isolation"] == iso
    assert r["verdict"] == "safe" and r["violations"] == 0 and r["matched"]
    assert all(v == 0 for v in r["invariants"].values())
    cases = r["cases"]
    assert sum(cases.values()) == 2000
    # exactly the statuses the contract allows, in exactly the expected numbers
    assert r["statuses"] == {
        "201": cases["double_submit"],
        "200": 7 * cases["double_submit"],
        "400": 8 * cases["missing_invite"],
        "410": 8 * cases["expired_invite"],
    }


def _check_schema(doc):
    assert set(doc) >= {"pgrace_version", "server", "results", "error"}
    assert doc["server"].startswith("PostgreSQL ")
    for r in doc["results"]:
        types = {"scenario": str, "variant": str, "kind": str, "seed": str, "isolation": str,
                 "sessions": int, "mode": str, "trials": int, "violations": int, "seconds": float,
                 "statements": int, "trials_per_s": float, "statements_per_s": float,
                 "verdict": str, "expected": str, "matched": bool, "invariants": dict,
                 "statuses": dict, "sqlstates": dict, "cases": dict, "latency_us": dict,
                 "release_skew_us": dict, "release": str, "counterexamples": list}
        assert r["fault"] is None or set(r["fault"]) == {"kind", "step", "rate", "armed", "fired", "retried",
                                                          "indeterminate", "retry_failed", "half_committed",
                                                          "unjudged"}
        assert r["seed_sql_error"] is None or isinstance(r["seed_sql_error"], str)
        assert isinstance(r["seed_sql"], list)
        for q in r["seed_sql"]:
            assert q["which"] in ("ddl", "rollback") and isinstance(q["sql"], str)
            assert (q["error"] is None) == (q["sqlstate"] is None)
        for k, t in types.items():
            assert isinstance(r[k], t), (k, r[k])
        assert r["kind"] in ("original", "proposed", "recommended")
        assert r["verdict"] in ("race", "safe") and r["expected"] in ("race", "safe", "either")
        assert r["isolation"] in ISOLATIONS
        assert r["mode"] == "stress"
        assert r["release"] in ("realtime", "normal")
        for d in ("latency_us", "release_skew_us"):
            assert set(r[d]) == {"p50", "p99", "max", "samples"}
            assert r[d]["p50"] <= r[d]["p99"] <= r[d]["max"]
        assert all(k.isdigit() and isinstance(v, int) for k, v in r["statuses"].items())
        assert all(len(k) == 5 and isinstance(v, int) for k, v in r["sqlstates"].items())
        assert sum(r["statuses"].values()) == r["trials"] * r["sessions"]
        assert r["error"] is None or isinstance(r["error"], str)
        for c in r["counterexamples"]:
            assert set(c) == {"trial", "case", "invariant", "explanation", "steps", "answers"}
            assert c["invariant"] in r["invariants"]
            for s in c["steps"]:
                assert set(s) == {"session", "label", "sql", "params", "sqlstate", "constraint",
                                  "rows", "attempt", "t_send_us", "t_done_us", "values", "waited", "message"}
            assert len(c["answers"]) == r["sessions"]


def test_json_matches_readme_schema(pgrace, tmp_path):
    doc, _ = pgrace.stress_json("invite_claim", "-c", "4", "-t", "200", tmp_path=tmp_path)
    assert [r["variant"] for r in doc["results"]] == ["original", "proposed", "recommended"]
    assert doc["error"] is None
    _check_schema(doc)
    # the README documents every key the JSON has
    readme = (BIN.parent.parent / "README.md").read_text()
    for key in doc["results"][0]:
        assert f"`{key}`" in readme, key


BAD_INPUTS = [
    (["stress", "no_such_scenario"], "unknown target"),
    (["stress", "invite_claim/no_such_variant"], "unknown target"),
    (["stress", "invite_claim", "-c", "0"], "-c/--sessions must be an integer in 1..64"),
    (["stress", "invite_claim", "-c", "abc"], "-c/--sessions must be an integer"),
    (["stress", "invite_claim", "-c", "65"], "-c/--sessions must be an integer"),
    (["stress", "invite_claim", "-t", "-1"], "-t/--trials must be an integer"),
    (["stress", "invite_claim", "-t", "10x"], "-t/--trials must be an integer"),
    (["stress", "invite_claim", "-T", "-3"], "-T/--seconds must be a number"),
    (["stress", "invite_claim", "-i", "dirty-read"], "-i/--isolation must be"),
    (["stress", "invite_claim", "--bogus"], "unknown option"),
    (["stress", "invite_claim", "-t", "5", "-T", "5"], "not both"),
    (["stress"], "exactly one TARGET"),
    (["frobnicate"], "unknown command"),
    (["stress", "invite_claim", "--dsn", "this is not a dsn"], "bad DSN"),
    (["stress", "invite_claim", "--dsn", "host=/nonexistent/socket/dir port=1 dbname=x"],
     "cannot connect to the server"),
    (["stress", "invite_claim", "--dsn", "host=127.0.0.1 port=1 dbname=x connect_timeout=2"],
     "cannot connect to the server"),
    (["server", "reboot"], "unknown action"),
]


@pytest.mark.parametrize("argv,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_exits_2_with_one_line(argv, message, private_tmp):
    p = subprocess.run([str(BIN), *argv], capture_output=True, text=True, timeout=60,
                       env=_clean_env(private_tmp))
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("pgrace: ") and message in lines[0], lines[0]
    assert p.stdout == ""
    assert list(private_tmp.glob("pgrace.*")) == []


def test_throwaway_server_leaves_nothing_behind(private_tmp, tmp_path):
    env = _clean_env(private_tmp)
    # a stray PGHOST/PGPORT must not redirect pgrace anywhere
    env.update(PGHOST="/nonexistent", PGPORT="1", PGDATABASE="nope", PGUSER="nobody_here")
    out = tmp_path / "r.json"
    p = subprocess.run([str(BIN), "stress", "invite_claim/recommended", "-c", "2", "-t", "50",
                        "--json", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert json.loads(out.read_text())["results"][0]["trials"] == 50
    assert list(private_tmp.glob("pgrace.*")) == []
    assert postgres_processes_under(private_tmp) == []


def test_sigint_mid_run_cleans_up(private_tmp):
    env = _clean_env(private_tmp)
    proc = subprocess.Popen([str(BIN), "stress", "invite_claim/original", "-c", "4", "-T", "60",
                             "-P", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    # wait until trials are running (progress lines appear)
    deadline = time.time() + 60
    buf = ""
    while time.time() < deadline and "trials," not in buf:
        buf += os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
    assert "trials," in buf, buf
    assert list(private_tmp.glob("pgrace.*")), "server directory should exist mid-run"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (proc.returncode, err)
    assert "interrupted" in err
    assert list(private_tmp.glob("pgrace.*")) == []
    assert postgres_processes_under(private_tmp) == []


def test_sigterm_during_startup_cleans_up(private_tmp):
    env = _clean_env(private_tmp)
    proc = subprocess.Popen([str(BIN), "stress", "invite_claim", "-T", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    time.sleep(0.3)          # inside initdb or server start
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode in (143, 2)
    assert list(private_tmp.glob("pgrace.*")) == []
    assert postgres_processes_under(private_tmp) == []


@pytest.mark.parametrize("fault", [[], ["--fault", "kill-backend@0.5"]], ids=["plain", "kill-backend"])
def test_server_killed_mid_run_is_an_error_not_a_race(private_tmp, tmp_path, fault):
    """An infrastructure fault is never a race: exit 2, an error in the JSON, what finished
    kept; also while our own faults are being injected (they must not mask it)."""
    env = _clean_env(private_tmp)
    dsn = subprocess.run([str(BIN), "server", "start", "-q"], capture_output=True, text=True,
                         env=env, timeout=120).stdout.strip()
    try:
        out = tmp_path / "r.json"
        proc = start_running([BIN, "stress", "invite_claim/recommended", "-c", "4", "-T", "60",
                              "--dsn", dsn, "--json", out, "-P", "0.2", *fault], env)
        stop_server_now(private_tmp)
        stdout, stderr = proc.communicate(timeout=60)
        assert proc.returncode == 2, (stdout, stderr)
        assert "RACE" not in stdout
        doc = json.loads(out.read_text())
        assert doc["error"] and doc["results"][0]["trials"] > 0
        assert doc["results"][0]["verdict"] == "error"     # never a race, nor a verdict
        if fault:
            assert doc["results"][0]["fault"]["fired"] > 0
    finally:
        # the SIGQUIT'd server's processes take a moment to go; pgrace never removes a directory
        # a postgres of ours still runs in, so let them go before asking it to clean up
        for _ in range(100):
            if not postgres_processes_under(private_tmp):
                break
            time.sleep(0.1)
        subprocess.run([str(BIN), "server", "stop", "-q"], env=env, timeout=60)
    assert list(private_tmp.glob("pgrace.*")) == []


def test_server_status_start_stop(private_tmp):
    env = _clean_env(private_tmp)
    run = lambda *a: subprocess.run([str(BIN), "server", *a], capture_output=True, text=True,
                                    env=env, timeout=120)
    assert run("status").returncode == 1
    s1 = run("start", "-q")
    assert s1.returncode == 0 and s1.stdout.startswith("host=")
    st = run("status")
    assert st.returncode == 0 and s1.stdout.strip() in st.stdout
    assert run("start", "-q").stdout == s1.stdout          # idempotent
    assert run("stop", "-q").returncode == 0
    assert run("status").returncode == 1
    assert list(private_tmp.glob("pgrace.*")) == []


def test_external_dsn_touches_only_its_own_schemas(pgrace, tmp_path):
    psql = lambda sql: subprocess.run(["psql", pgrace.dsn, "-Atc", sql], capture_output=True,
                                      text=True, env=pgrace.env()).stdout.strip()
    psql("CREATE SCHEMA IF NOT EXISTS app_data; CREATE TABLE IF NOT EXISTS app_data.t (x int)")
    pgrace.stress_json("invite_claim/recommended", "-t", "20", tmp_path=tmp_path)
    assert psql("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgrace%'") == "0"
    assert psql("SELECT count(*) FROM app_data.t") == "0"
    # schemas with pgrace's names that pgrace did not create (no mark) are never touched, not
    # even by the reclaiming of schemas whose run is gone
    foreign = ["pgrace_invite_claim_recommended", "pgrace_invite_claim_recommended_4242"]
    psql(f"CREATE SCHEMA {foreign[0]}; CREATE SCHEMA {foreign[1]}; "
         f"COMMENT ON SCHEMA {foreign[1]} IS 'made by someone else, not created by pgrace'")
    try:
        p = pgrace.run("stress", "invite_claim/recommended", "-t", "5")
        assert p.returncode == 0, p.stderr
        assert psql("SELECT string_agg(nspname, ' ' ORDER BY nspname) FROM pg_namespace "
                    "WHERE nspname LIKE 'pgrace%'") == " ".join(foreign)
    finally:
        psql(f"DROP SCHEMA {foreign[0]}; DROP SCHEMA {foreign[1]}")
