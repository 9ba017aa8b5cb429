"""Faults (issue #7): timeout-retry, kill-backend, error-at, lost-commit, at the seam, in
stress, in the explorer and in replay; the harness surviving a stuck step and a dead server.

Every fault here is real: the step's answer is dropped with the connection, the backend is
ended by pg_terminate_backend, the server raises the error, the connection drops around a
COMMIT. One client (-c 1) isolates what the fault does from what concurrency does.
"""
import json
import subprocess
import time

import pytest

from conftest import start_running

FAULTS = ["timeout-retry", "kill-backend", "error-at", "lost-commit"]
ONE_SUBMISSION = "exactly one Submission per invite"
RETRY = "after a fault, the client's retry gets a definite answer (never 5xx)"
ATOMIC = "a request that failed (5xx) left nothing behind (nothing half-committed)"


def faulted(pgrace, target, fault, tmp_path, *args, trials=80):
    doc, p = pgrace.stress_json(target, "-c", 1, "-t", trials, "--case", "double_submit", "--fault", fault,
                                *args, tmp_path=tmp_path)
    assert doc["error"] is None
    return {r["variant"]: r for r in doc["results"]}, p


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_breaks_the_pr_and_not_the_recommended_claim(pgrace, tmp_path, fault):
    """PR #15's claim and its Submission are two autocommitted statements: a fault between
    them burns the invite (claimed, no Submission; the retry gets 409). The recommended
    transaction survives every fault."""
    res, p = faulted(pgrace, "invite_claim", f"{fault}@0.5", tmp_path)
    for v in ("proposed", "recommended"):
        f = res[v]["fault"]
        assert f["kind"] == fault and f["rate"] == 0.5
        assert 0 < f["fired"] <= f["armed"] <= res[v]["trials"]
        assert f["retried"] == f["fired"], "every fault cost the client its answer or a 5xx: it retried"
        assert res[v]["matched"], (v, res[v]["verdict"], res[v]["invariants"])
    prop, rec = res["proposed"], res["recommended"]
    assert prop["verdict"] == "race" and prop["invariants"][ONE_SUBMISSION] > 0
    assert rec["verdict"] == "safe" and rec["violations"] == 0
    assert rec["invariants"][RETRY] == 0
    assert set(rec["statuses"]) <= {"201", "200"}, rec["statuses"]
    if fault == "lost-commit":
        assert rec["fault"]["indeterminate"] == rec["fault"]["fired"], "a lost commit is never success nor failure"
    else:
        assert rec["fault"]["indeterminate"] == 0
    # the counterexample shows the fault on its step
    cex = prop["counterexamples"][0]
    assert any(a.get("fault") for a in cex["answers"])
    assert any("fault" in s["message"] for s in cex["steps"])


def test_kill_backend_is_a_real_pg_terminate_backend(pgrace, tmp_path):
    res, p = faulted(pgrace, "invite_claim/recommended", "kill-backend@1", tmp_path, trials=20)
    r = res["recommended"]
    # armed on every request, at a step every request reaches
    assert r["fault"]["armed"] == 20 and r["fault"]["fired"] == 20 and r["verdict"] == "safe"
    assert r["sqlstates"]["08006"] == r["fault"]["fired"]    # the step after the kill: no connection
    # the session reconnected after every kill: every request still got its answer
    assert r["statuses"] == {"201": 20}


def test_error_after_half_the_work_is_half_committed_only_without_a_transaction(pgrace, tmp_path):
    """Seed 004: the original updates the user, then inserts the audit row, each on its own;
    an error at the audit leaves a verified user without audit, even though the client's
    retry later repairs it. The proposed and recommended transactions roll back."""
    doc, p = pgrace.stress_json("identity_verify", "-c", 1, "-t", 60, "--case", "same_user_twice",
                                "--fault", "error-at:audit success@1", tmp_path=tmp_path)
    res = {r["variant"]: r for r in doc["results"]}
    orig = res["original"]
    assert orig["fault"]["step"] == "audit success" and orig["fault"]["fired"] == 60
    assert orig["invariants"][ATOMIC] == 60 and orig["fault"]["half_committed"] == 60
    assert "left changes behind" in orig["counterexamples"][0]["explanation"]
    assert "audit success" in orig["counterexamples"][0]["explanation"]
    for v in ("proposed", "recommended"):
        assert res[v]["invariants"][ATOMIC] == 0 and res[v]["violations"] == 0, res[v]["invariants"]


def test_error_at_a_step_no_variant_has_fires_nowhere_and_says_so(pgrace, tmp_path):
    res, p = faulted(pgrace, "invite_claim/recommended", "error-at:no such step@1", tmp_path, trials=10)
    assert res["recommended"]["fault"]["armed"] == 10 and res["recommended"]["fault"]["fired"] == 0
    assert "the fault never fired" in p.stdout


@pytest.mark.parametrize("fault", ["lost-commit@1", "timeout-retry@1"])
def test_a_lost_answer_duplicates_a_message_unless_the_client_id_is_kept(pgrace, tmp_path, fault):
    """Seed 003: the seed's sends are not idempotent, so a send whose answer is lost, then
    retried, is stored twice. The recommended keeps the client's message id: the resend
    answers the stored message."""
    doc, p = pgrace.stress_json("message_sequence", "-c", 1, "-t", 60, "--case", "channel_burst", "--fault", fault,
                                tmp_path=tmp_path)
    res = {r["variant"]: r for r in doc["results"]}
    for r in res.values():
        assert r["matched"], (r["variant"], r["invariants"])
        assert r["fault"]["fired"] == 60 and r["fault"]["retried"] == 60
    answers = "every 201 has its message stored with the answered sequence, a failed send stores nothing"
    for v in ("original", "proposed"):
        assert res[v]["verdict"] == "race" and res[v]["invariants"][answers] > 0
        assert "S1's one message is stored 2 times" in res[v]["counterexamples"][0]["explanation"]
    rec = res["recommended"]
    assert rec["verdict"] == "safe" and rec["statuses"] == {"201": 60}


def test_explore_enumerates_fault_sites_and_replays_them(pgrace, tmp_path):
    save = tmp_path / "saved"
    out = tmp_path / "e.json"
    p = pgrace.run("explore", "invite_claim", "-c", "1", "--fault", "timeout-retry", "--save", save,
                   "-q", "--json", out)
    assert p.returncode == 0, p.stdout + p.stderr
    res = {r["variant"]: r for r in json.loads(out.read_text())["results"]}
    for v in ("original", "proposed"):
        assert res[v]["verdict"] == "race" and res[v]["explore"]["complete"]
    rec = res["recommended"]
    # one schedule per step of the recommended request (begin, claim, create, commit)
    assert rec["verdict"] == "safe" and rec["explore"]["complete"] and rec["schedules"] == 4
    files = sorted(save.glob("*.schedule"))
    assert len(files) >= 2 and all("-recommended-" not in f.name for f in files)
    text = (save / "invite_claim-proposed-read-committed-1.schedule").read_text()
    assert "\nfault 1 1 0 timeout-retry\n" in text, text         # the claim's answer is lost
    p = pgrace.run("replay", *files, "-q")
    assert p.returncode == 0 and p.stdout.count("reproduced") == len(files), p.stdout + p.stderr


def test_explore_two_sessions_with_lost_commit_clears_the_recommended(pgrace, tmp_path):
    out = tmp_path / "e.json"
    p = pgrace.run("explore", "invite_claim/recommended", "-c", "2", "--fault", "lost-commit", "-q", "--json", out)
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(out.read_text())["results"][0]
    assert r["explore"]["complete"] and r["verdict"] == "safe"
    assert r["schedules"] > 50 and r["fault"]["indeterminate"] > 0


@pytest.mark.parametrize("bad", ["nope", "kill-backend@2", "kill-backend@0", "timeout-retry@x", "error-at:",
                                 "lost-commit@-1"])
def test_bad_fault_is_a_one_line_usage_error(pgrace, bad):
    p = pgrace.run("stress", "invite_claim", "--fault", bad)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "fault" in p.stderr, p.stderr


def test_bad_fault_line_in_a_schedule_file(pgrace, tmp_path):
    f = tmp_path / "bad.schedule"
    f.write_text("scenario invite_claim\nvariant proposed\nisolation read-committed\nsessions 1\n"
                 "case double_submit\ngrants 1 1\nfault 3 1 0 timeout-retry\nviolation none\n")
    p = pgrace.run("replay", f)
    assert p.returncode == 2 and "session 3 of 1" in p.stderr, p.stderr


def test_watchdog_cancels_a_stuck_step_and_reports_it(pgrace, tmp_path):
    """A statement blocked by a lock nobody releases: cancelled after --step-timeout, exit 2,
    the JSON says which step, and it is not a race."""
    env = pgrace.env()
    holder = subprocess.Popen(["psql", pgrace.dsn, "-v", "ON_ERROR_STOP=1", "-q", "-t"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def say(sql, expect):
        holder.stdin.write(sql + f"\nSELECT '{expect}';\n")
        holder.stdin.flush()
        deadline = time.time() + 30
        line = ""
        while expect not in line and time.time() < deadline:
            line = holder.stdout.readline()
        assert expect in line, holder.stderr.read()

    try:
        out = tmp_path / "w.json"
        # one client, the double-submit case: 'create submission' is its only step that
        # touches the submission table (the missing/expired cases' 'lookup' would too)
        proc = start_running([pgrace.binary, "stress", "invite_claim/recommended", "-c", "1", "-T", "60",
                              "--case", "double_submit", "--step-timeout", "1", "-P", "0.2", "--json", out,
                              "--dsn", pgrace.dsn], env)
        # the run's own schema (pgrace_<scenario>_<variant>_<its admin's backend pid>)
        schema = subprocess.run(["psql", pgrace.dsn, "-qAt", "-c", "SELECT nspname FROM pg_namespace WHERE "
                                 "nspname LIKE 'pgrace\\_invite\\_claim\\_recommended\\_%'"],
                                capture_output=True, text=True, env=env, timeout=30).stdout.split()
        assert len(schema) == 1, schema
        t0 = time.time()
        say(f"BEGIN; LOCK TABLE {schema[0]}.submission IN ACCESS EXCLUSIVE MODE;", "locked")
        stdout, stderr = proc.communicate(timeout=60)
        assert time.time() - t0 < 30
        assert proc.returncode == 2, stdout + stderr
        # the session's step stuck behind the lock (or, if the lock landed while the batch
        # was being checked, the admin connection's own timeout): named, cancelled, exit 2
        assert ("watchdog" in stderr and "create submission" in stderr) or "checking invariants" in stderr, stderr
        doc = json.loads(out.read_text())
        assert doc["error"] and doc["results"][0]["trials"] > 0
        assert "RACE" not in stdout
        # the server's statement_timeout (from the DSN) with pgrace's DDL lock held: the
        # schema's DDL is cancelled by the server; a clear error, exit 2, never a hang
        say("SELECT pg_advisory_xact_lock(hashtext('pgrace-ddl'));", "ddl")
        t0 = time.time()
        p = pgrace.run("stress", "invite_claim/recommended", "-t", "5", "-q", "--json", out,
                       "--dsn", pgrace.dsn + " options='-c statement_timeout=300'", dsn=False, timeout=60)
        assert time.time() - t0 < 30
        assert p.returncode == 2, p.stdout + p.stderr
        assert "statement timeout" in p.stderr and "RACE" not in p.stdout, p.stderr
    finally:
        holder.stdin.write("ROLLBACK;\n")       # the run's schema, left, is reclaimed by the next run
        holder.stdin.close()
        holder.wait(timeout=30)


def test_backends_killed_by_someone_else_are_a_harness_error(pgrace, tmp_path):
    """Our kill-backend is expected by the seam; a backend terminated from outside is not:
    a clear error, exit 2, the cells that finished in the JSON, never a race."""
    env = pgrace.env()
    out = tmp_path / "k.json"
    proc = start_running([pgrace.binary, "stress", "invite_claim/recommended", "-c", "2", "-T", "60", "-P", "0.2",
                          "--json", out, "--dsn", pgrace.dsn], env)
    kill = subprocess.run(["psql", pgrace.dsn, "-qAt", "-c",
                           "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                           "WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' "
                           "AND datname = current_database()"], capture_output=True, text=True, env=env, timeout=30)
    assert kill.returncode == 0 and int(kill.stdout) >= 1, kill.stderr
    stdout, stderr = proc.communicate(timeout=60)
    # the admin connection died too: the schema is left, and the next run reclaims it
    assert proc.returncode == 2, stdout + stderr
    assert "verdict: RACE" not in stdout, stdout
    assert "terminat" in stderr or "closed the connection" in stderr, stderr
    doc = json.loads(out.read_text())
    assert doc["error"] and doc["results"][0]["verdict"] == "error"     # never a race, nor a verdict
