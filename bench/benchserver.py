"""The server every benchmark measures on: a throwaway PostgreSQL started by pgrace itself."""
import contextlib
import os
import pathlib
import shutil
import subprocess
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
BIN = ROOT / "bin" / "pgrace"


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
