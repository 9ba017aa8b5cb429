"""pytest driver for pgrace: runs the real binary against a real PostgreSQL.

One server for the whole test session (`pgrace server start`, in a private TMPDIR);
tests that are about the throwaway server start their own through pgrace itself.
"""
import json
import os
import signal
import subprocess
import tempfile
import time
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = pathlib.Path(os.environ.get("PGRACE_BIN", ROOT / "bin" / "pgrace"))


def _clean_env(tmpdir):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["TMPDIR"] = str(tmpdir)
    return env


# The recommended variants' long cells at 8 sessions: 2000 trials in `make test`, the 5000
# they were first measured with in `make soak` (PGRACE_SOAK=1), which make test's 20 minutes
# do not hold.
SOAK = os.environ.get("PGRACE_SOAK") == "1"
RECOMMENDED_TRIALS = 5000 if SOAK else 2000


def make_tmpdir():
    # As root the server runs as 'nobody', which must be able to reach the directory.
    d = tempfile.mkdtemp(prefix="pgrace-test-")
    os.chmod(d, 0o755)
    return pathlib.Path(d)


class Pgrace:
    def __init__(self, binary, dsn, tmpdir):
        self.binary = str(binary)
        self.dsn = dsn
        self.tmpdir = tmpdir

    def env(self, **extra):
        env = _clean_env(self.tmpdir)
        env.update(extra)
        return env

    def run(self, *args, dsn=True, timeout=600, env=None, check_json=None):
        argv = [self.binary, *map(str, args)]
        if dsn and self.dsn:
            argv += ["--dsn", self.dsn]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=env or self.env())

    def cell(self, target, iso, sessions, trials, tmp_path):
        """One stress cell of every variant of target: results by variant, each one checked to
        have run as asked and to match its expectation."""
        doc, _ = self.stress_json(target, "-c", sessions, "-t", trials, "-i", iso, tmp_path=tmp_path)
        assert doc["error"] is None
        res = {r["variant"]: r for r in doc["results"]}
        for r in res.values():
            assert r["trials"] == trials and r["sessions"] == sessions and r["isolation"] == iso
            assert r["matched"], (r["variant"], r["verdict"], r["invariants"])
        return res

    def stress_json(self, target, *args, tmp_path, expect_rc=0, binary=None):
        out = tmp_path / "r.json"
        p = self.run("stress", target, "-q", "--json", out, *args)
        assert p.returncode == expect_rc, f"rc={p.returncode}\n{p.stdout}\n{p.stderr}"
        return json.loads(out.read_text()), p


@pytest.fixture(scope="session")
def server_tmp():
    d = make_tmpdir()
    yield d
    subprocess.run(["rm", "-rf", str(d)])


@pytest.fixture(scope="session")
def pgrace(server_tmp):
    env = _clean_env(server_tmp)
    p = subprocess.run([str(BIN), "server", "start", "-q"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    dsn = p.stdout.strip()
    yield Pgrace(BIN, dsn, server_tmp)
    subprocess.run([str(BIN), "server", "stop", "-q"], env=env, timeout=60)


@pytest.fixture
def private_tmp():
    d = make_tmpdir()
    yield d
    subprocess.run(["rm", "-rf", str(d)])


def postgres_processes_under(path):
    """PIDs of processes whose command line mentions path (a leftover server)."""
    pids = []
    for p in pathlib.Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(path) in cmd and "postgres" in cmd:
            pids.append(int(p.name))
    return pids


def start_running(argv, env):
    """Start pgrace (with -P progress on stderr) and return it once trials are running."""
    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.time() + 60
    buf = ""
    while time.time() < deadline and "trials," not in buf:
        buf += os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
    assert "trials," in buf, buf
    return proc


def stop_server_now(private_tmp):
    """Immediate shutdown (SIGQUIT) of the server `pgrace server start` left in private_tmp."""
    state = (private_tmp / f"pgrace-{os.geteuid()}" / "server.state").read_text()
    pid = int([l for l in state.splitlines() if l.startswith("pid=")][0][4:])
    os.kill(pid, signal.SIGQUIT)           # backends die at once
