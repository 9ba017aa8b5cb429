"""What the tests of the seeds' own stacks (test_examples_*.py) share: running pgrace on an
example's spec and reading its results, and the stress cell every variant is held to."""
import json
import subprocess

from conftest import ROOT

EXAMPLES = ROOT / "examples"


def require_examples(package):
    """`make test` installs examples/ (npm ci, generate.sh); a missing one is a failure, not a skip."""
    assert (EXAMPLES / "node_modules" / package).is_dir(), \
        "examples/node_modules missing: `make test` installs it (cd examples && npm ci)"


def run(pgrace, mode, target, *args, tmp_path, expect_rc=0):
    """pgrace MODE TARGET ARGS with --json; the results by variant (no harness error)."""
    out = tmp_path / f"{mode}.json"
    p = subprocess.run([pgrace.binary, mode, target, "-q", "--json", str(out), *map(str, args),
                        "--dsn", pgrace.dsn], capture_output=True, text=True, timeout=300,
                       env=pgrace.env(), cwd=ROOT)
    assert p.returncode == expect_rc, f"rc={p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    doc = json.loads(out.read_text())
    assert doc["error"] is None
    return {r["variant"]: r for r in doc["results"]}


def stress8(pgrace, target, trials, tmp_path):
    """Every variant at 8 sessions, read committed, each matching its expected verdict."""
    res = run(pgrace, "stress", target, "-c", 8, "-t", trials, tmp_path=tmp_path)
    for r in res.values():
        assert r["trials"] == trials and r["sessions"] == 8 and r["isolation"] == "read-committed", r
        assert r["matched"], (r["variant"], r["verdict"], r["invariants"], r["statuses"])
    return res
