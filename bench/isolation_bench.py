#!/usr/bin/python3
"""PostgreSQL's isolation conformance set (/work/shared/pg-isolation, 51 specs) through
`pgrace isolation` and through PostgreSQL's own isolationtester, on the same throwaway
server in one run.

- pgrace: one `pgrace isolation specs/*.spec --expected expected/` (a fresh database per
  spec, made and dropped by pgrace).
- isolationtester: run-isolationtester.sh once per spec, the procedure the expected files
  were made with (psql makes and drops the database around isolationtester).

Both the totals (wall clock, database creation included) and the time inside the runs alone
(pgrace's per-spec seconds; isolationtester's process time, measured by the same procedure
done from here) are printed, with and without deadlock-hard (10 s of deadlock_timeout by
design), and the ratio isolationtester / pgrace. Rounds alternate which tool goes first;
medians are printed.

Usage: bench/isolation_bench.py [--rounds N]
"""
import argparse
import os
import pathlib
import re
import statistics
import subprocess
import time

from benchserver import BIN, ROOT, kept_server

DATA = pathlib.Path(os.environ.get("PGRACE_ISOLATION_DATA", "/work/shared/pg-isolation"))
SETTINGS = ("lc_messages TO 'C'", "lc_monetary TO 'C'", "lc_numeric TO 'C'", "lc_time TO 'C'",
            "bytea_output TO 'hex'", "timezone_abbreviations TO 'Default'")
SCRIPT_NOISE = re.compile(r'^NOTICE:  database "iso_[^"]*" does not exist, skipping\n', re.M)


def isolationtester():
    pgxs = subprocess.run(["pg_config", "--pgxs"], capture_output=True, text=True).stdout.strip()
    p = pathlib.Path(pgxs).parent.parent / "test" / "isolation" / "isolationtester"
    if not p.exists():
        subprocess.run(["bash", str(ROOT / "tools" / "deps.sh"), "postgresql-server-dev-15"], check=True)
    if not p.exists():
        raise SystemExit(f"no isolationtester at {p} (Debian package postgresql-server-dev-15)")
    return p


def run_pgrace(specs, dsn, env, keep):
    t0 = time.monotonic()
    p = subprocess.run([str(BIN), "isolation", *map(str, specs), "--expected", str(DATA / "expected"),
                        "--dsn", dsn, "-q"], capture_output=True, text=True, env=env)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        (keep / f"pgrace-{int(t0)}.out").write_text(p.stdout + p.stderr)
    per = {}
    for line in p.stdout.splitlines():
        m = re.match(r"^(ok|FAIL)\s+([\d.]+) s\s+(\S+)$", line)
        if m:
            per[pathlib.Path(m.group(3)).stem] = (m.group(1) == "ok", float(m.group(2)))
    if len(per) != len(specs):
        raise SystemExit("pgrace isolation did not run every spec:\n" + p.stdout + p.stderr)
    return wall, per


def run_script(specs, sock, env, keep):
    """run-isolationtester.sh per spec, as the expected files were made. The names of the
    specs whose output differed (the output kept in keep/)."""
    differ = []
    t0 = time.monotonic()
    for spec in specs:
        p = subprocess.run(["bash", str(DATA / "run-isolationtester.sh"), sock, str(spec), "pgrace"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        out = SCRIPT_NOISE.sub("", p.stdout, count=1)
        if out != (DATA / "expected" / f"{spec.stem}.out").read_text():
            differ.append(spec.stem)
            (keep / f"{spec.stem}.isolationtester.out").write_text(out)
    return time.monotonic() - t0, differ


def time_isolationtester_alone(specs, it, sock, env):
    """The script's procedure done from here, timing only the isolationtester process."""
    per = {}
    for spec in specs:
        db = "iso_" + re.sub(r"[^a-zA-Z0-9]", "_", spec.stem)
        q = ["psql", "-q", "-X", "-h", sock, "-U", "pgrace", "-d", "postgres", "-c"]
        subprocess.run(q + [f'DROP DATABASE IF EXISTS "{db}"'], capture_output=True, env=env)
        subprocess.run(q + [f'CREATE DATABASE "{db}" TEMPLATE template0'], check=True, capture_output=True, env=env)
        for s in SETTINGS:
            subprocess.run(q + [f'ALTER DATABASE "{db}" SET {s}'], check=True, capture_output=True, env=env)
        with open(spec) as stdin:
            t0 = time.monotonic()
            subprocess.run([str(it), f"host={sock} dbname={db} user=pgrace"], stdin=stdin, capture_output=True, env=env)
            per[spec.stem] = time.monotonic() - t0
        subprocess.run(q + [f'DROP DATABASE IF EXISTS "{db}"'], capture_output=True, env=env)
    return per


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()
    specs = sorted(DATA.glob("specs/*.spec"))
    it = isolationtester()
    keep = ROOT / "out" / "bench-isolation"
    keep.mkdir(parents=True, exist_ok=True)
    with kept_server() as (dsn, env, tmp):
        sock = dict(kv.split("=", 1) for kv in dsn.split())["host"]
        it_env = dict(env, PGTZ="PST8PDT", PGDATESTYLE="Postgres, MDY", LC_MESSAGES="C")
        pg_wall, it_wall, pg_run, it_run, pg_run_nd, it_run_nd = [], [], [], [], [], []
        pg_differ, it_differ = [], []
        for r in range(a.rounds):
            order = ("pgrace", "isolationtester") if r % 2 == 0 else ("isolationtester", "pgrace")
            for tool in order:
                if tool == "pgrace":
                    wall, per = run_pgrace(specs, dsn, env, keep)
                    pg_wall.append(wall)
                    pg_run.append(sum(s for _, s in per.values()))
                    pg_run_nd.append(sum(s for n, (_, s) in per.items() if n != "deadlock-hard"))
                    pg_differ += [n for n, (ok, _) in per.items() if not ok]
                else:
                    wall, differ = run_script(specs, sock, it_env, keep)
                    it_differ += differ
                    it_wall.append(wall)
                    per_it = time_isolationtester_alone(specs, it, sock, it_env)
                    it_run.append(sum(per_it.values()))
                    it_run_nd.append(sum(s for n, s in per_it.items() if n != "deadlock-hard"))
        med = statistics.median
        print(f"PostgreSQL's isolation conformance set: {len(specs)} specs, same throwaway server, "
              f"{a.rounds} round(s), medians")
        print(f"  {'':42} {'pgrace':>9} {'isolationtester':>16} {'ratio it/pgrace':>16}")
        rows = [("whole set, wall clock (databases included)", med(pg_wall), med(it_wall)),
                ("inside the runs (no database creation)", med(pg_run), med(it_run)),
                ("inside the runs, without deadlock-hard", med(pg_run_nd), med(it_run_nd))]
        for label, pg, itv in rows:
            print(f"  {label:42} {pg:8.2f}s {itv:15.2f}s {itv / pg:15.2f}x")
        n = len(specs) * a.rounds
        print(f"  identical to PostgreSQL 15's expected output: pgrace {n - len(pg_differ)} of {n}, "
              f"isolationtester {n - len(it_differ)} of {n}")
        for tool, differ in (("pgrace", pg_differ), ("isolationtester", it_differ)):
            if differ:
                print(f"  {tool} differed on: {', '.join(differ)} (outputs in {keep})")


if __name__ == "__main__":
    main()
