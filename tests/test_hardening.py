"""Issue #15, hardening: the kept server's state file, passwords in DSNs, what a killed or
hung-up run leaves in TMPDIR, TMPDIRs the server cannot use, a frozen server, harness errors
reported as errors, output paths checked first, schedule files that are not text, --budget
as a cap, and the schemas runs leave on an external server. The security tests are written
as the attack: what another user can plant, and what root's pgrace then does."""
import json
import os
import pathlib
import pwd
import re
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


# ---- 1. the kept server's state file -------------------------------------------------------

def state_dir(tmp):
    return tmp / f"pgrace-{UID}"


def old_state(tmp):
    """Where pgrace kept the state before: a predictable name in a shared directory."""
    return tmp / f"pgrace-server-{UID}.state"


def as_nobody(path):
    os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid, follow_symlinks=False)


def plant_old(tmp, body):
    old_state(tmp).write_text(body)
    as_nobody(old_state(tmp))
    return old_state(tmp)


def plant_file_owned_by_nobody(tmp, body):
    d = state_dir(tmp)
    d.mkdir(mode=0o700)
    (d / "server.state").write_text(body)
    as_nobody(d / "server.state")
    return d / "server.state"


def plant_symlinked_file(tmp, body):
    d = state_dir(tmp)
    d.mkdir(mode=0o700)
    target = tmp / "evil.state"
    target.write_text(body)
    as_nobody(target)
    (d / "server.state").symlink_to(target)
    return d / "server.state"


def plant_writable_file(tmp, body):
    d = state_dir(tmp)
    d.mkdir(mode=0o700)
    (d / "server.state").write_text(body)
    os.chmod(d / "server.state", 0o666)
    return d / "server.state"


def plant_dir_owned_by_nobody(tmp, body):
    """The predictable directory, created by another user before root ever ran pgrace."""
    d = state_dir(tmp)
    d.mkdir(mode=0o700)
    (d / "server.state").write_text(body)
    as_nobody(d / "server.state")
    as_nobody(d)
    return d


def plant_symlinked_dir(tmp, body):
    elsewhere = tmp / "attacker"
    elsewhere.mkdir(mode=0o700)
    (elsewhere / "server.state").write_text(body)
    as_nobody(elsewhere / "server.state")
    as_nobody(elsewhere)
    state_dir(tmp).symlink_to(elsewhere)
    return state_dir(tmp)


def plant_root_owned(tmp, body):
    """Well-formed and root's own (say, stale), but naming things pgrace did not create."""
    d = state_dir(tmp)
    d.mkdir(mode=0o700)
    (d / "server.state").write_text(body)
    os.chmod(d / "server.state", 0o600)
    return d / "server.state"


# (plant, refused): every plant also puts the file where pgrace used to look for it
PLANTS = [
    (None, False),
    (plant_file_owned_by_nobody, True),
    (plant_symlinked_file, True),
    (plant_writable_file, True),
    (plant_dir_owned_by_nobody, True),
    (plant_symlinked_dir, True),
    (plant_root_owned, True),
]


@pytest.fixture
def bait(private_tmp):
    """An unrelated live process, and an unrelated directory with a file in it that looks
    like a server directory of pgrace's (name and mode) but is not one."""
    sleeper = subprocess.Popen(["sleep", "300"])
    victim = private_tmp / "pgrace.Vict1m"
    victim.mkdir(mode=0o700)
    (victim / "keep.txt").write_text("not pgrace's\n")
    (victim / "data").mkdir()
    (victim / "data" / "postmaster.pid").write_text(f"{sleeper.pid}\n{victim}/data\n")
    for p in (victim, victim / "keep.txt", victim / "data", victim / "data" / "postmaster.pid"):
        as_nobody(p)
    body = f"pid={sleeper.pid}\ndir={victim}\ndsn=host={victim} port=5432 user=pgrace dbname=postgres\n"
    yield sleeper, victim, body
    sleeper.kill()
    sleeper.wait()


def assert_untouched(sleeper, victim):
    assert sleeper.poll() is None, "pgrace signalled a process that is not its server"
    assert (victim / "keep.txt").read_text() == "not pgrace's\n", "pgrace removed a directory that is not its own"


@root_only
@pytest.mark.parametrize("plant,refused", PLANTS,
                         ids=["old-location"] + [p.__name__[len("plant_"):] for p, _ in PLANTS[1:]])
def test_planted_state_file_kills_and_deletes_nothing(bait, private_tmp, plant, refused):
    sleeper, victim, body = bait
    env = _clean_env(private_tmp)
    plant_old(private_tmp, body)
    planted = plant(private_tmp, body) if plant else None

    stop = run_pgrace("server", "stop", env=env)
    time.sleep(0.3)
    assert_untouched(sleeper, victim)
    status = run_pgrace("server", "status", env=env)
    start = run_pgrace("server", "start", "-q", env=env)
    time.sleep(0.3)
    assert_untouched(sleeper, victim)
    if refused:
        for p in (stop, status, start):
            assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
            line = one_error_line(p)
            assert str(planted) in line, line
        assert start.stdout == ""
        assert sorted(x.name for x in private_tmp.glob("pgrace.*")) == [victim.name]   # nothing started
    else:
        assert stop.returncode == 0 and "no server was running" in stop.stderr, stop.stderr
        assert status.returncode == 1
        assert start.returncode == 0, start.stderr        # the old file is not even read
        assert run_pgrace("server", "status", env=env).returncode == 0
        assert run_pgrace("server", "stop", "-q", env=env).returncode == 0
        assert_untouched(sleeper, victim)
        assert sorted(x.name for x in private_tmp.glob("pgrace.*")) == [victim.name]
        assert wait_until(lambda: postgres_processes_under(private_tmp) == [], 10)


@root_only
def test_stale_state_naming_a_gone_directory_signals_nothing(bait, private_tmp):
    """A state file of our own whose directory is gone (say, TMPDIR was cleaned) while its pid
    now belongs to someone else: stale, nothing is signalled, and the server starts afresh."""
    sleeper, victim, _ = bait
    env = _clean_env(private_tmp)
    gone = private_tmp / "pgrace.G0neXx"
    plant_root_owned(private_tmp, f"pid={sleeper.pid}\ndir={gone}\ndsn=host={gone}\n")
    assert run_pgrace("server", "status", env=env).returncode == 1
    start = run_pgrace("server", "start", "-q", env=env)
    assert start.returncode == 0, start.stderr
    assert_untouched(sleeper, victim)
    assert run_pgrace("server", "stop", "-q", env=env).returncode == 0
    assert_untouched(sleeper, victim)
    assert wait_until(lambda: postgres_processes_under(private_tmp) == [], 10)


@root_only
def test_server_account_cannot_aim_stop_at_another_process(bait, private_tmp):
    """nobody owns the kept server's data directory, so can rewrite its postmaster.pid: the
    pid there must still be proven to be the postmaster before anything is signalled."""
    sleeper, victim, _ = bait
    env = _clean_env(private_tmp)
    assert run_pgrace("server", "start", "-q", env=env).returncode == 0
    (d,) = set(private_tmp.glob("pgrace.*")) - {victim}
    pidfile = d / "data" / "postmaster.pid"
    real = pidfile.read_text()
    try:
        pidfile.write_text(f"{sleeper.pid}\n" + real.split("\n", 1)[1])
        for action in ("stop", "start"):
            p = run_pgrace("server", action, env=env)
            assert p.returncode == 2, p.stderr
            assert f"names live pid {sleeper.pid}, which is not its server" in one_error_line(p)
            assert_untouched(sleeper, victim)
            assert d.exists()
    finally:
        pidfile.write_text(real)
        assert run_pgrace("server", "stop", "-q", env=env).returncode == 0
    assert not d.exists()
    assert_untouched(sleeper, victim)


def test_state_lives_in_a_private_directory(private_tmp):
    env = _clean_env(private_tmp)
    assert run_pgrace("server", "start", "-q", env=env).returncode == 0
    try:
        d = state_dir(private_tmp)
        st = os.lstat(d)
        assert not os.path.islink(d) and st.st_uid == UID and st.st_mode & 0o777 == 0o700
        f = os.lstat(d / "server.state")
        assert f.st_uid == UID and f.st_mode & 0o077 == 0
        assert not old_state(private_tmp).exists()
    finally:
        assert run_pgrace("server", "stop", "-q", env=env).returncode == 0


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


def killed_run(env, private_tmp, stop_postmaster=False):
    """A run SIGKILLed mid-way: returns its server directory and its postmaster's pid."""
    before = set(private_tmp.glob("pgrace.*"))
    proc = long_run(env)
    (d,) = set(private_tmp.glob("pgrace.*")) - before
    postmaster = int((d / "data" / "postmaster.pid").read_text().split()[0])
    if stop_postmaster:         # so that it outlives its parent-death signal, as an orphan
        os.kill(postmaster, signal.SIGSTOP)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.pid, d, postmaster


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@root_only
def test_dead_runs_directory_is_reclaimed_and_nothing_else(private_tmp, bait):
    sleeper, victim, _ = bait
    env = _clean_env(private_tmp)
    # a run killed outright: its directory stays; its postmaster stops by its parent-death signal
    dead_pid, dead, _ = killed_run(env, private_tmp)
    assert wait_until(lambda: postgres_processes_under(dead) == [], 30), "the postmaster outlived its pgrace"
    assert dead.exists()
    # one whose postmaster did not stop (stopped itself, so the parent-death signal waits)
    _, orphaned, orphan = killed_run(env, private_tmp, stop_postmaster=True)
    time.sleep(0.5)
    assert alive(orphan)
    # a forged marker (nobody owns every server directory, so can write one there) proves nothing
    forged = private_tmp / "pgrace.F0rged"
    forged.mkdir(mode=0o700)
    (forged / "pgrace.marker").write_text(f"pgrace server directory\ndir={forged}\nkind=run\npid={dead_pid}\nstart=0\n")
    (forged / "keep.txt").write_text("x")
    for p in (forged, forged / "pgrace.marker", forged / "keep.txt"):
        as_nobody(p)
    # a kept server and a concurrent run must survive the next run's reclaiming
    assert run_pgrace("server", "start", "-q", env=env).returncode == 0
    try:
        live = long_run(env, seconds=8)
        before = set(private_tmp.glob("pgrace.*"))
        p = run_pgrace("stress", "invite_claim/recommended", "-t", "20", "-q", env=env)
        assert p.returncode == 0, p.stderr
        assert not dead.exists(), "the dead run's directory was not reclaimed"
        assert not orphaned.exists() and not alive(orphan), "the orphaned server was not stopped and reclaimed"
        assert set(private_tmp.glob("pgrace.*")) == before - {dead, orphaned}
        assert (forged / "keep.txt").exists()
        assert_untouched(sleeper, victim)
        _, err = live.communicate(timeout=60)
        assert live.returncode == 0, err
        assert run_pgrace("server", "status", env=env).returncode == 0
    finally:
        if alive(orphan):
            os.kill(orphan, signal.SIGKILL)
        assert run_pgrace("server", "stop", "-q", env=env).returncode == 0
    assert sorted(x.name for x in private_tmp.glob("pgrace.*")) == sorted([victim.name, forged.name])
    assert wait_until(lambda: postgres_processes_under(private_tmp) == [], 10)


# ---- 4. a TMPDIR the server cannot use -----------------------------------------------------

def test_tmpdir_too_long_for_the_socket(private_tmp):
    long = private_tmp / ("d" * 60) / ("e" * 40)
    long.mkdir(parents=True)
    for d in (long.parent, long):
        os.chmod(d, 0o755)
    p = run_pgrace("stress", "invite_claim", "-t", "5", "-q", env=_clean_env(long))
    assert p.returncode == 2, p.stderr
    line = one_error_line(p)
    assert "TMPDIR" in line and str(long) in line and "too long" in line and "unix socket" in line, line
    assert list(long.iterdir()) == []


@root_only
def test_tmpdir_the_server_user_cannot_enter(private_tmp):
    closed = private_tmp / "closed"
    closed.mkdir(mode=0o700)
    tmp = closed / "tmp"
    tmp.mkdir(mode=0o755)
    p = run_pgrace("stress", "invite_claim", "-t", "5", "-q", env=_clean_env(tmp))
    assert p.returncode == 2, p.stderr
    line = one_error_line(p)
    assert "TMPDIR" in line and "nobody" in line and f"cannot enter {closed}" in line, line
    assert list(tmp.iterdir()) == []


# ---- 5. a frozen server (issue #15 item 3) ---------------------------------------------------

STEP = 2


@pytest.fixture
def kept_server(private_tmp):
    """A private kept server: its backends can be stopped without touching anyone else's."""
    env = _clean_env(private_tmp)
    p = run_pgrace("server", "start", "-q", env=env)
    assert p.returncode == 0, p.stderr
    state = (private_tmp / f"pgrace-{UID}" / "server.state").read_text()
    postmaster = int([l for l in state.splitlines() if l.startswith("pid=")][0][4:])
    yield p.stdout.strip(), env, postmaster
    run_pgrace("server", "stop", "-q", env=env)


def children_of(pid):
    kids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                stat = open(f"/proc/{p}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(p))
    return kids


class Frozen:
    """Every `postgres:` process of the server (not the postmaster) stopped; thawed on exit."""
    def __init__(self, postmaster):
        self.postmaster, self.pids = postmaster, []

    def __enter__(self):
        self.pids = children_of(self.postmaster)
        assert self.pids
        for pid in self.pids:
            os.kill(pid, signal.SIGSTOP)
        self.at = time.time()
        return self

    def __exit__(self, *exc):
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def running(argv, env, what):
    """Start pgrace and return it once its progress line shows `what` (it is mid-run)."""
    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline, buf = time.time() + 60, ""
    while time.time() < deadline and buf.count(what) < 3:
        buf += os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
    assert buf.count(what) >= 3, buf
    return proc


FREEZE_MODES = {
    "stress": (["stress", "invite_claim/recommended", "-c", "2", "-T", "120"], "trials,"),
    "explore": (["explore", "invite_claim/recommended", "--strategy", "random", "--max-schedules", "10000000"],
                "schedules,"),
}


def finish_within(proc, seconds):
    try:
        return proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"pgrace was still running {seconds} s later")


@pytest.mark.parametrize("mode", sorted(FREEZE_MODES))
def test_frozen_server_is_a_harness_error_within_the_step_timeout(kept_server, tmp_path, mode):
    dsn, env, postmaster = kept_server
    args, progress = FREEZE_MODES[mode]
    out = tmp_path / "f.json"
    proc = running([BIN, *args, "--step-timeout", STEP, "-P", "0.1", "--json", out, "--dsn", dsn], env, progress)
    with Frozen(postmaster) as frozen:
        _, err = finish_within(proc, STEP + 8)
        took = time.time() - frozen.at
    assert proc.returncode == 2, err
    assert took < STEP + 4, took
    line = err.strip().splitlines()[-1]
    assert line.startswith("pgrace: invite_claim/recommended: ") and "not responding" in line, line
    doc = json.loads(out.read_text())
    assert "not responding" in doc["error"]
    assert len(doc["results"]) == 1 and doc["results"][0]["trials"] > 0


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("mode", sorted(FREEZE_MODES))
def test_interrupt_ends_a_run_on_a_frozen_server(kept_server, tmp_path, mode, sig):
    dsn, env, postmaster = kept_server
    args, progress = FREEZE_MODES[mode]
    out = tmp_path / "f.json"
    proc = running([BIN, *args, "--step-timeout", 30, "-P", "0.1", "--json", out, "--dsn", dsn], env, progress)
    with Frozen(postmaster):
        time.sleep(0.5)
        t0 = time.time()
        proc.send_signal(getattr(signal, sig))
        _, err = finish_within(proc, 10)
        took = time.time() - t0
    assert proc.returncode == 128 + getattr(signal, sig), err
    assert took < 2.5, took
    assert err.strip().splitlines()[-1] == "pgrace: interrupted", err
    assert json.loads(out.read_text())["error"]


@pytest.mark.parametrize("sig", [None, "SIGINT"], ids=["step-timeout", "SIGINT"])
def test_frozen_throwaway_server_is_stopped_and_removed(private_tmp, sig):
    """pgrace's own server, its backends stopped: the run still ends in time, and stopping
    the server (which waits for its backends) does not hang on them."""
    env = _clean_env(private_tmp)
    proc = running([BIN, "stress", "invite_claim/recommended", "-T", 120, "-P", 0.1, "--step-timeout", STEP], env,
                   "trials,")
    (d,) = private_tmp.glob("pgrace.*")
    postmaster = int((d / "data" / "postmaster.pid").read_text().split()[0])
    with Frozen(postmaster) as frozen:
        if sig:
            time.sleep(0.5)
            frozen.at = time.time()
            proc.send_signal(getattr(signal, sig))
        _, err = finish_within(proc, STEP + 30)
        took = time.time() - frozen.at
    assert proc.returncode == (130 if sig else 2), err
    assert took < (2.5 if sig else STEP + 4), took
    assert list(private_tmp.glob("pgrace.*")) == []
    assert wait_until(lambda: postgres_processes_under(private_tmp) == [], 10)


# ---- 6. a harness error is an error, never a verdict (issue #15 item 10) ---------------------

class Holder:
    """A psql session of our own that holds what it is told to, until closed."""
    def __init__(self, dsn, env):
        self.p = subprocess.Popen(["psql", dsn, "-v", "ON_ERROR_STOP=1", "-q", "-t"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def say(self, sql, expect):
        self.p.stdin.write(sql + f"\nSELECT '{expect}';\n")
        self.p.stdin.flush()
        deadline, line = time.time() + 30, ""
        while expect not in line and time.time() < deadline:
            line = self.p.stdout.readline()
        assert expect in line, self.p.stderr.read()

    def close(self):
        self.p.stdin.write("ROLLBACK;\n")
        self.p.stdin.close()
        self.p.wait(timeout=30)


def reports(out):
    return {n: (out / n).read_text() for n in ("summary.md", "junit.xml", "index.html", "results.json")}


def test_harness_error_is_reported_as_an_error_never_a_verdict(pgrace, tmp_path):
    """Schema setup stuck behind the DDL lock of someone else: the cell has no verdict."""
    holder = Holder(pgrace.dsn, pgrace.env())
    try:
        holder.say("BEGIN; SELECT pg_advisory_xact_lock(hashtext('pgrace-ddl'));", "held")
        out = tmp_path / "out"
        p = pgrace.run("run", "invite_claim/recommended", "--no-faults", "--budget", 2, "--step-timeout", 1,
                       "--out", out, "-q", timeout=120)
    finally:
        holder.close()
    assert p.returncode == 2, p.stdout + p.stderr
    assert "verdict:" not in p.stdout and "MISMATCH" not in p.stdout, p.stdout
    assert "  error: setting up schema" in p.stdout
    row = [l for l in p.stdout.split("TARGET")[1].splitlines() if l.startswith("invite_claim/recommended ")][0]
    assert "  error: setting up schema" in row and " safe" not in row, row
    r = reports(out)
    assert "MISMATCH" not in r["summary.md"] and "0 not matching expectation, 1 harness error" in r["summary.md"]
    assert "| error: setting up schema" in r["summary.md"] and "**ERROR**" in r["summary.md"]
    assert "<failure" not in r["junit.xml"] and '<error message="harness error: setting up schema' in r["junit.xml"]
    assert 'errors="1"' in r["junit.xml"]
    assert "<td class=error title='harness error: setting up schema" in r["index.html"]
    assert "<b id=mismatches>0</b>" in r["index.html"] and "<b id=errors>1</b>" in r["index.html"]
    res = json.loads(r["results.json"])["results"][0]
    assert res["verdict"] == "error" and not res["matched"] and res["error"].startswith("setting up schema")


def test_interrupted_cell_is_an_error_not_a_mismatch(pgrace, tmp_path):
    out = tmp_path / "out"
    proc = start_running([BIN, "run", "invite_claim/recommended", "--no-faults", "--budget", 60, "-P", 0.2,
                          "--out", out, "--dsn", pgrace.dsn], pgrace.env())
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "MISMATCH" not in stdout and re.search(r"  error: .*interrupted", stdout), stdout
    r = reports(out)
    assert "MISMATCH" not in r["summary.md"], r["summary.md"]
    assert re.search(r"\| error: [^|]*interrupted[^|]* \| safe \| \*\*ERROR\*\* \|", r["summary.md"]), r["summary.md"]
    assert "<failure" not in r["junit.xml"] and re.search('<error message="harness error: [^"]*interrupted', r["junit.xml"])
    assert [x["verdict"] for x in json.loads(r["results.json"])["results"] if x["error"]] == ["error"]


# ---- 7. output paths are checked first (issue #15 item 8) ------------------------------------

def cannot_create(path):
    """The errno text creating path gets (what pgrace must say), or None when it can."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    except OSError as e:
        return e.strerror
    os.unlink(path)
    return None


def unwritable_place(tmp_path):
    if UID != 0:
        d = tmp_path / "ro"
        d.mkdir(mode=0o555)
        return d / "r.json"
    return pathlib.Path("/sys/pgrace-test-r.json")      # root may write anywhere a file can be


@pytest.mark.parametrize("case", ["directory", "no-such-dir", "unwritable"])
@pytest.mark.parametrize("command", [["stress", "invite_claim", "-t", "5"], ["explore", "invite_claim"],
                                     ["run", "invite_claim/recommended", "--budget", "1"], ["payloads"]],
                         ids=["stress", "explore", "run", "payloads"])
def test_bad_json_path_is_refused_before_anything_runs(private_tmp, tmp_path, command, case):
    json_path = {"directory": tmp_path, "no-such-dir": tmp_path / "nope" / "r.json",
                 "unwritable": unwritable_place(tmp_path)}[case]
    why = "Is a directory" if case == "directory" else cannot_create(str(json_path))
    if why is None:
        pytest.skip(f"{json_path} is writable here")
    t0 = time.time()
    p = run_pgrace(*command, "--json", json_path, "--out", tmp_path / "out", env=_clean_env(private_tmp))
    assert p.returncode == 2, p.stdout + p.stderr
    assert one_error_line(p) == f"pgrace: --json {json_path}: cannot write there: {why}"
    assert time.time() - t0 < 5 and p.stdout == ""
    assert list(private_tmp.iterdir()) == [], "a server was started"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["dev-null", "under-a-file", "unwritable"])
def test_bad_out_dir_is_refused_before_anything_runs(private_tmp, tmp_path, case):
    (tmp_path / "file").write_text("x")
    out = {"dev-null": pathlib.Path("/dev/null"), "under-a-file": tmp_path / "file" / "out",
           "unwritable": unwritable_place(tmp_path).with_suffix("")}[case]
    why = "Not a directory" if case != "unwritable" else cannot_create(str(out) + ".x")
    if why is None:
        pytest.skip(f"{out} is writable here")
    p = run_pgrace("run", "invite_claim/recommended", "--budget", "1", "--out", out, env=_clean_env(private_tmp))
    assert p.returncode == 2, p.stdout + p.stderr
    assert one_error_line(p) == f"pgrace: --out {out}: cannot write the reports there: {why}"
    assert list(private_tmp.iterdir()) == [], "a server was started"


def test_run_that_cannot_connect_leaves_no_out_dir(private_tmp, tmp_path):
    out = tmp_path / "out"
    p = run_pgrace("run", "invite_claim/recommended", "--budget", "1", "--out", out,
                   "--dsn", f"host={tmp_path}/nowhere port=1", env=_clean_env(private_tmp))
    assert p.returncode == 2 and "cannot connect to the server" in one_error_line(p)
    assert not out.exists()


# ---- 8. schedule files: text only, parsed before any server (issue #15 item 9) ----------------

GOOD_SCHEDULE = (b"scenario invite_claim\nvariant proposed\nisolation read-committed\nsessions 2\n"
                 b"case double_submit\ngrants 1 2 2 2 1\nviolation none\nexplanation fine\n")

BAD_SCHEDULES = {
    "binary": (BIN.read_bytes()[:4096], r":1: control character \x7f at column 1: not a text file"),
    "escape-sequence": (GOOD_SCHEDULE.replace(b"variant proposed", b"variant \x1b[2J\x1b[31mproposed"),
                        r":2: control character \x1b at column 9: not a text file"),
    "nul-in-a-line": (GOOD_SCHEDULE.replace(b"violation none", b"violation none\0and more"),
                      ":7: a NUL byte at column 15: not a text file"),
    "long-line": (GOOD_SCHEDULE.replace(b"explanation fine", b"explanation " + b"x" * 3000),
                  ":8: line longer than 2047 bytes (3012): not a pgrace schedule"),
    "not-utf8": (GOOD_SCHEDULE.replace(b"case double_submit", b"case double\xff\xfe"),
                 r":5: byte \xff at column 12 is not UTF-8: not a text file"),
}


@pytest.mark.parametrize("name", sorted(BAD_SCHEDULES))
def test_bad_schedule_is_refused_in_one_escaped_line_before_any_server(private_tmp, tmp_path, name):
    content, message = BAD_SCHEDULES[name]
    f = tmp_path / "bad.schedule"
    f.write_bytes(content)
    t0 = time.time()
    p = subprocess.run([str(BIN), "replay", str(f)], capture_output=True, env=_clean_env(private_tmp), timeout=60)
    assert p.returncode == 2, p.stderr
    err = p.stderr.decode()                       # UTF-8, or this raises
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert all(0x20 <= ord(c) != 0x7f for c in err[:-1]), repr(err)
    assert err == f"pgrace: {f}{message}\n", err
    assert p.stdout == b"" and time.time() - t0 < 5
    assert list(private_tmp.iterdir()) == [], "a server was started before the file was parsed"


def test_good_schedule_still_replays(pgrace, tmp_path):
    f = tmp_path / "good.schedule"
    f.write_bytes(GOOD_SCHEDULE.replace(b"\n", b"\r\n"))     # CRLF too
    p = pgrace.run("replay", f, "-q")
    assert p.returncode in (0, 1), p.stderr                    # replayed: reproduced or not, never refused
    assert "good.schedule" in p.stdout


# ---- 9. --budget is a cap (issue #15 item 7) --------------------------------------------------

def test_budget_is_honoured_and_short_cells_are_marked(pgrace, tmp_path):
    out = tmp_path / "out"
    budget = 6
    t0 = time.time()
    p = pgrace.run("run", "invite_claim", "--budget", budget, "--out", out, "-q", timeout=300)
    took = time.time() - t0
    assert p.returncode in (0, 1), p.stdout + p.stderr           # a short cell may miss its race
    assert took < budget + 8, took                                # 39 cells: setup allowance
    results = json.loads((out / "results.json").read_text())["results"]
    assert len(results) == 39
    short = [r for r in results if r["budget_short"]]
    assert short, "6 s cannot give 39 cells their minimum"
    for r in results:
        if r["mode"] == "explore":
            assert r["min_trials"] == 0 and r["budget_short"] == (not r["explore"]["complete"])
        else:
            assert r["min_trials"] == (100 if r["fault"] else 300)
            assert r["budget_short"] == (r["trials"] < r["min_trials"]), r
    summary, html = (out / "summary.md").read_text(), (out / "index.html").read_text()
    assert f"**{len(short)} cell{'s' if len(short) > 1 else ''} got fewer trials than" in summary
    assert summary.count(", short: ") == len(short)
    assert f"<b id=nshort>{len(short)}</b>" in html
    row = [l for l in p.stdout.splitlines() if "(short: " in l]
    assert len(row) == len(short)


def test_budget_zero_gives_every_cell_its_minimum(pgrace, tmp_path):
    out = tmp_path / "out"
    p = pgrace.run("run", "invite_claim/recommended", "--no-faults", "--budget", 0, "--out", out, "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    results = json.loads((out / "results.json").read_text())["results"]
    assert all(not r["budget_short"] for r in results)
    assert sorted(r["trials"] for r in results if r["mode"] == "stress") == [300] * 6
    assert all(r["explore"]["complete"] for r in results if r["mode"] == "explore")


# ---- 10. schemas on an external server (issue #15 item 4) -------------------------------------

def psql(dsn, env, sql):
    p = subprocess.run(["psql", dsn, "-qAt", "-c", sql], capture_output=True, text=True, env=env, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def pgrace_schemas(dsn, env):
    return psql(dsn, env, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgrace%' ORDER BY 1")


def test_concurrent_runs_leave_no_schema(kept_server):
    dsn, env, _ = kept_server
    argv = [str(BIN), "stress", "invite_claim/recommended", "-t", "600", "-q", "--dsn", dsn]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(0.3)
    second = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for proc in (first, second):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err          # neither dropped the other's schema under it
    assert pgrace_schemas(dsn, env) == []


def test_killed_runs_schemas_are_reclaimed_by_the_next_run(kept_server):
    dsn, env, _ = kept_server
    foreign = "pgrace_invite_claim_original_4242"     # pgrace's pattern, but not made by pgrace
    psql(dsn, env, f"CREATE SCHEMA {foreign}")
    proc = running([BIN, "stress", "invite_claim/original", "-T", 60, "-P", 0.1, "--dsn", dsn], env, "trials,")
    (own,) = set(pgrace_schemas(dsn, env)) - {foreign}
    proc.kill()
    proc.wait()
    # the killed run's backends end when they see their client gone, and free its lock
    assert wait_until(lambda: psql(dsn, env, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == ["0"], 20)
    assert set(pgrace_schemas(dsn, env)) == {foreign, own}
    p = run_pgrace("stress", "invite_claim/recommended", "-t", "5", "--dsn", dsn, env=env)   # another target
    assert p.returncode == 0, p.stderr
    assert "pgrace: dropped 1 schema left by pgrace runs that are gone" in p.stderr.splitlines()
    assert pgrace_schemas(dsn, env) == [foreign]
