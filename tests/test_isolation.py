"""`pgrace isolation`: PostgreSQL's own isolation suite as the proof. Every spec of
/work/shared/pg-isolation runs through `pgrace isolation --expected` on the test session's
server and must print exactly what PostgreSQL 15's isolationtester printed, except for the
specs in KNOWN_DIFFERENCES (each with its reason; README "Spec files and `pgrace isolation`").
pgrace's own edge specs (tests/isolation/) are held to isolationtester's output too, and,
where isolationtester is installed, compared with it live on the same server."""
import os
import pathlib
import re
import subprocess

import pytest

from conftest import BIN

ROOT = pathlib.Path(__file__).resolve().parent.parent
PG = pathlib.Path("/work/shared/pg-isolation")
EDGE = ROOT / "tests" / "isolation"
REPORTS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")

# spec name -> why its output may differ from PostgreSQL 15's expected file. Empty: all 51
# are identical (measured in every run; see README).
KNOWN_DIFFERENCES = {}


def isolationtester():
    pgxs = subprocess.run(["pg_config", "--pgxs"], capture_output=True, text=True).stdout.strip()
    p = pathlib.Path(pgxs).parent.parent / "test" / "isolation" / "isolationtester"
    return p if p.exists() else None


def results(stdout):
    """{spec stem: 'ok' | 'FAIL'} from the one line per spec --expected prints."""
    out = {}
    for line in stdout.splitlines():
        m = re.match(r"^(ok|FAIL)\s+\S+ s\s+(\S+)$", line)
        if m:
            out[pathlib.Path(m.group(2)).stem] = m.group(1)
    return out


@pytest.mark.skipif(not PG.exists(), reason="no conformance data")
def test_postgresql_isolation_suite_output_is_identical(pgrace):
    specs = sorted(PG.glob("specs/*.spec"))
    assert len(specs) == 51
    p = pgrace.run("isolation", *specs, "--expected", PG / "expected", timeout=600)
    got = results(p.stdout)
    assert len(got) == 51, p.stdout + p.stderr
    differ = {name for name, r in got.items() if r == "FAIL"}
    assert differ == set(KNOWN_DIFFERENCES), p.stdout
    identical = 51 - len(differ)
    assert f"isolation: {identical} of 51 specs identical to their expected output" in p.stdout
    assert p.returncode == (1 if differ else 0), p.stderr
    # every test database is gone
    q = subprocess.run(["psql", "-X", "-At", "-d", pgrace.dsn, "-c",
                        "SELECT count(*) FROM pg_database WHERE datname LIKE 'pgrace_iso_%'"],
                       capture_output=True, text=True, timeout=60)
    assert q.stdout.strip() == "0", q.stdout + q.stderr


def test_edge_specs_match_isolationtester(pgrace):
    specs = sorted(EDGE.glob("*.spec"))
    p = pgrace.run("isolation", *specs, "--expected", EDGE / "expected", timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"isolation: {len(specs)} of {len(specs)} specs identical" in p.stdout


@pytest.mark.skipif(isolationtester() is None, reason="isolationtester (postgresql-server-dev-15) not installed")
def test_edge_specs_against_live_isolationtester(pgrace, tmp_path):
    """The same specs through PostgreSQL's isolationtester and pgrace, same server, same
    procedure: byte-identical output (stdout and stderr together)."""
    conn = dict(kv.split("=", 1) for kv in pgrace.dsn.split())
    env = pgrace.env(PGTZ="PST8PDT", PGDATESTYLE="Postgres, MDY", LC_MESSAGES="C")
    for spec in sorted(EDGE.glob("*.spec")):
        db = "pgrace_it_" + spec.stem.replace("-", "_")
        admin = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", pgrace.dsn, "-c"]
        subprocess.run(admin + [f'DROP DATABASE IF EXISTS "{db}"'], check=True, capture_output=True, env=env)
        subprocess.run(admin + [f'CREATE DATABASE "{db}" TEMPLATE template0'], check=True, capture_output=True, env=env)
        for s in ("lc_messages TO 'C'", "lc_monetary TO 'C'", "lc_numeric TO 'C'", "lc_time TO 'C'",
                  "bytea_output TO 'hex'", "timezone_abbreviations TO 'Default'"):
            subprocess.run(admin + [f'ALTER DATABASE "{db}" SET {s}'], check=True, capture_output=True, env=env)
        with open(spec) as stdin:
            it = subprocess.run([str(isolationtester()), f"host={conn['host']} port={conn['port']} user={conn['user']} dbname={db}"],
                                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, timeout=300)
        subprocess.run(admin + [f'DROP DATABASE "{db}"'], check=True, capture_output=True, env=env)
        ours = subprocess.run([str(BIN), "isolation", str(spec), "--dsn", pgrace.dsn], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, env=pgrace.env(), timeout=300)
        assert ours.stdout == it.stdout, spec
        assert ours.returncode == it.returncode, spec


def test_without_expected_prints_isolationtesters_streams(pgrace):
    spec = EDGE / "edge-format.spec"
    p = pgrace.run("isolation", spec)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "unused step name: also_unused\nunused step name: unused2\n"
    expected = (EDGE / "expected" / "edge-format.out").read_text()
    assert p.stdout == expected.replace(p.stderr, "", 1)
    # where isolationtester exits 1 (a setup failed), so does pgrace, having printed the same
    p = pgrace.run("isolation", EDGE / "edge-setup-fails.spec")
    assert p.returncode == 1
    assert p.stderr.startswith("unused step name: s1b\nsetup failed: ERROR:  relation \"no_such_table\" does not exist")


def test_a_difference_prints_a_unified_diff_and_exits_1(pgrace, tmp_path):
    spec = EDGE / "edge-teardown-fails.spec"
    wrong = tmp_path / "wrong.out"
    wrong.write_text((EDGE / "expected" / "edge-teardown-fails.out").read_text().replace("(1 row)", "(2 rows)", 1))
    p = pgrace.run("isolation", spec, "--expected", wrong)
    assert p.returncode == 1, p.stdout + p.stderr
    assert f"--- {wrong}\n+++ pgrace isolation {spec}\n" in p.stdout
    assert "\n-(2 rows)\n+(1 row)\n" in p.stdout
    assert "isolation: 0 of 1 specs identical to their expected output" in p.stdout


def test_throwaway_server_and_asan_build(private_tmp):
    """No --dsn: a throwaway server, removed after; the ASan+UBSan build runs blocker
    annotations, notices and the deadlock detector without a report."""
    env = {"TMPDIR": str(private_tmp), "PATH": "/usr/bin:/bin",
           "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1", "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
    specs = [*sorted(EDGE.glob("*.spec"))]
    expected = EDGE / "expected"
    binary = BIN.parent / "pgrace-asan"
    p = subprocess.run([str(binary), "isolation", *map(str, specs), "--expected", str(expected), "-q"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert not any(r in p.stderr for r in REPORTS), p.stderr[-4000:]
    assert p.returncode == 0, p.stdout + p.stderr
    if PG.exists():
        pg = [PG / "specs" / f"{n}.spec" for n in ("deadlock-soft-2", "deadlock-simple", "eval-plan-qual", "nowait")]
        p = subprocess.run([str(binary), "isolation", *map(str, pg), "--expected", str(PG / "expected"), "-q"],
                           capture_output=True, text=True, env=env, timeout=600)
        assert not any(r in p.stderr for r in REPORTS), p.stderr[-4000:]
        assert p.returncode == 0, p.stdout + p.stderr
    assert not [d for d in private_tmp.iterdir() if d.name.startswith("pgrace.")], "the throwaway server is removed"
