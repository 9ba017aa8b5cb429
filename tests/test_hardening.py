"""Issue #15, hardening: the kept server's state file, passwords in DSNs, what a killed or
hung-up run leaves in TMPDIR, and TMPDIRs the server cannot use. The security tests are
written as the attack: what another user can plant, and what root's pgrace then does."""
import os
import pwd
import signal
import subprocess
import time

import pytest

from conftest import BIN, _clean_env, postgres_processes_under, start_running

UID = os.geteuid()
NOBODY = pwd.getpwnam("nobody")
root_only = pytest.mark.skipif(UID != 0, reason="the attack is on root's pgrace; the server runs as nobody")


def run_pgrace(*args, env, timeout=120):
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout)


def one_error_line(p):
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("pgrace: "), lines[0]
    return lines[0]


def wait_until(cond, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


# ---- 2. passwords never shown ---------------------------------------------------------------

SECRET = "supersecret"

# (how the DSN is given, the DSN, what the one line must say)
DSNS = [
    ("--dsn", "host=/tmp password=supersecret garbage", "bad DSN"),
    ("--dsn", "host=/tmp password='supersecret and more", "bad DSN"),
    ("--dsn", "postgresql://u:supersecret@localhost/db?bogus=1", "bad DSN"),
    ("--dsn", "postgresql://localhost/db?password=supersecret&bogus=1", "bad DSN"),
    ("--dsn", "postgresql://u:supersecret@[::1/db", "bad DSN"),                   # libpq echoes the URI
    ("--dsn", "postgresql://u:supersecret%zz@localhost/db", "bad DSN"),           # ... or the token
    ("--dsn", "postgresql://u:supersecret/x@localhost/db", "cannot connect"),     # ... or the "port"
    ("env", "host=/tmp password=supersecret garbage", "bad DSN"),
    ("env", "postgresql://u:supersecret@localhost/db?bogus=1", "bad DSN"),
    ("--dsn", "host=/nonexistent/socket/dir password=supersecret dbname=x", "cannot connect"),
    ("--dsn", "postgresql://u:supersecret@/db?host=/nonexistent/socket/dir", "cannot connect"),
]


@pytest.mark.parametrize("how,dsn,message", DSNS, ids=[f"{h} {d}" for h, d, _ in DSNS])
def test_password_never_shown(how, dsn, message, private_tmp, tmp_path):
    env = _clean_env(private_tmp)
    out = tmp_path / "r.json"
    argv = [BIN, "stress", "invite_claim", "-t", "5", "--json", out]
    if how == "env":
        env["PGRACE_DSN"] = dsn
    else:
        argv += ["--dsn", dsn]
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2, p.stderr
    line = one_error_line(p)
    assert message in line, line
    assert SECRET not in p.stdout and SECRET not in p.stderr, line
    assert not out.exists() or SECRET not in out.read_text()
    assert list(private_tmp.glob("pgrace.*")) == []


def test_bad_dsn_line_still_says_what_is_wrong(private_tmp):
    p = run_pgrace("stress", "invite_claim", "-t", "5", "--dsn", "host=/tmp password=supersecret dbnme=x",
               env=_clean_env(private_tmp))
    line = one_error_line(p)
    assert "host=/tmp password=***" in line and 'invalid connection option "dbnme"' in line, line


def test_password_of_a_working_dsn_is_not_in_results(pgrace, tmp_path):
    """The session server trusts every password: a run with one in its DSN goes through."""
    out = tmp_path / "r.json"
    p = subprocess.run([pgrace.binary, "stress", "invite_claim/recommended", "-t", "5", "--json", str(out),
                        "--dsn", pgrace.dsn + " password=supersecret"],
                       capture_output=True, text=True, env=pgrace.env(), timeout=120)
    assert p.returncode == 0, p.stderr
    assert SECRET not in p.stdout + p.stderr + out.read_text()


# ---- 3. what a hung-up or killed run leaves behind -----------------------------------------

def long_run(env, seconds=30):
    return start_running([BIN, "stress", "invite_claim/original", "-c", "2", "-T", seconds, "-P", "0.2"], env)


def test_sighup_cleans_up_like_sigterm(private_tmp):
    env = _clean_env(private_tmp)
    proc = long_run(env)
    assert list(private_tmp.glob("pgrace.*")), "server directory should exist mid-run"
    proc.send_signal(signal.SIGHUP)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGHUP, (proc.returncode, err)
    assert "pgrace: interrupted" in err
    assert list(private_tmp.glob("pgrace.*")) == []
    assert postgres_processes_under(private_tmp) == []
