"""The server every benchmark measures on: a throwaway PostgreSQL started by pgrace itself."""
import contextlib
import os
import pathlib
import shutil
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / "bin" / "pgrace"


def previous_build():
    """pgrace built from an earlier commit, aside (out/bench-base/REV), for the benchmarks'
    same-run ratio against the previous build. REV: $PGRACE_BENCH_BASE, else HEAD~1.
    Returns (binary path, the commit), or (None, why) when it cannot be built."""
    rev = os.environ.get("PGRACE_BENCH_BASE", "HEAD~1")
    p = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], capture_output=True, text=True)
    if p.returncode != 0:
        return None, f"no commit {rev}"
    commit = p.stdout.strip()
    tree = ROOT / "out" / "bench-base" / commit
    binary = tree / "bin" / "pgrace"
    if not binary.exists():
        if not tree.exists():
            tree.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), commit],
                           capture_output=True, check=True)
        b = subprocess.run(["make", "-C", str(tree), "-j2", "bin/pgrace"], capture_output=True, text=True)
        if b.returncode != 0:
            return None, f"building {commit} failed: {b.stderr.strip().splitlines()[-1:]}"
    return binary, commit


@contextlib.contextmanager
def kept_server():
    """`pgrace server start` in a private TMPDIR; yields (dsn, env, tmpdir), stops it after."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="pgrace-bench-"))
    os.chmod(tmp, 0o755)        # as root the server runs as 'nobody', which must reach it
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["TMPDIR"] = str(tmp)
    dsn = subprocess.run([str(BIN), "server", "start", "-q"], capture_output=True, text=True, env=env,
                         check=True).stdout.strip()
    try:
        yield dsn, env, tmp
    finally:
        subprocess.run([str(BIN), "server", "stop", "-q"], env=env)
        shutil.rmtree(tmp, ignore_errors=True)
