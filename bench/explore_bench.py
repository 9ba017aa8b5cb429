#!/usr/bin/python3
"""Explorer figures, measured in one run on one throwaway server.

1. For every race variant: schedules to the first violation, exhaustive, 2 sessions
   (target <= 50).
2. For every recommended variant: the whole 2-session space explored, 0 violations,
   and how long it took (target < 5 s each).
3. Schedules/s on 2-session scenarios, random strategy, 2000 schedules of each
   recommended variant (no minimization runs in the way) (target >= 500).
4. The peer: PostgreSQL's isolationtester runs every permutation of invite_claim's
   original statements (static SQL: it cannot branch like a handler). Both run on the
   same server, and both figures are interleavings per second.

Usage: bench/explore_bench.py [--isolationtester-rounds N]
"""
import argparse
import json
import pathlib
import re
import statistics
import subprocess
import time

from benchserver import BIN, kept_server, previous_build

SPEC = """
setup {
  CREATE TABLE invite (id bigserial PRIMARY KEY, token text NOT NULL UNIQUE,
                       expires_at timestamptz NOT NULL, used_at timestamptz);
  CREATE TABLE submission (id bigserial PRIMARY KEY, invite_id bigint NOT NULL REFERENCES invite(id));
  INSERT INTO invite (token, expires_at) VALUES ('inv-1', now() + interval '1 day');
}
teardown { DROP TABLE submission, invite; }
"""
for s in ("s1", "s2"):
    SPEC += f"""
session {s}
step {s}find   {{ SELECT id, used_at IS NOT NULL AS used, expires_at <= now() AS expired FROM invite WHERE token = 'inv-1'; }}
step {s}mark   {{ UPDATE invite SET used_at = now() WHERE token = 'inv-1'; }}
step {s}create {{ INSERT INTO submission (invite_id) SELECT id FROM invite WHERE token = 'inv-1' RETURNING id; }}
"""


def isolationtester():
    pgxs = subprocess.run(["pg_config", "--pgxs"], capture_output=True, text=True).stdout.strip()
    p = pathlib.Path(pgxs).parent.parent / "test" / "isolation" / "isolationtester"
    return str(p) if p.exists() else None


def pgrace_json(args, env, tmp, binary=BIN):
    out = tmp / "x.json"
    subprocess.run([str(binary), *args, "-q", "--json", str(out)], env=env, capture_output=True, text=True)
    return json.loads(out.read_text())


def targets():
    out = subprocess.run([str(BIN), "list"], capture_output=True, text=True, check=True).stdout
    rows = [l.split() for l in out.splitlines()[1:]]
    return [(r[0], r[1], r[2]) for r in rows]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--isolationtester-rounds", type=int, default=20)
    a = ap.parse_args()
    with kept_server() as (dsn, env, tmp):
        print("exhaustive, 2 sessions, read committed")
        print(f"  {'target':40} {'schedules':>9} {'first violation':>15} {'seconds':>8}  verdict")
        for target, kind, expect in targets():
            doc = pgrace_json(["explore", target, "-c", "2", "--dsn", dsn], env, tmp)
            r = doc["results"][0]
            e = r["explore"]
            fv = e["first_violation"] or "-"
            note = ""
            if r["verdict"] == "race":
                note = "ok (<= 50)" if e["first_violation"] <= 50 else "MISSED (> 50)"
            elif kind == "recommended":
                note = "ok (< 5 s)" if e["complete"] and r["seconds"] < 5 else "MISSED"
            print(f"  {target:40} {r['schedules']:9d} {str(fv):>15} {r['seconds']:8.2f}  {r['verdict']:5} "
                  f"{'complete' if e['complete'] else 'capped'}  {note}")
        prev_bin, prev = previous_build()
        print("\nrandom, 2 sessions, 2000 schedules of each recommended variant"
              + (f"; the previous build ({prev}) in the same run" if prev_bin else f" (previous build skipped: {prev})"))
        ours, before = [], []
        for target, kind, expect in targets():
            if kind != "recommended":
                continue
            args = ["explore", target, "-c", "2", "--strategy", "random", "--max-schedules", "2000", "--dsn", dsn]
            r = pgrace_json(args, env, tmp)["results"][0]
            rate = r["schedules"] / r["seconds"]
            ours.append(rate)
            line = f"  {target:40} {rate:8.0f} schedules/s  {'ok' if rate >= 500 else 'MISSED'} (target >= 500)"
            if prev_bin:
                rp = pgrace_json(args, env, tmp, prev_bin)["results"][0]
                before.append(rp["schedules"] / rp["seconds"])
                line += f"   previous {before[-1]:6.0f}/s, ratio {rate / before[-1]:.2f}"
            print(line)
        if before:
            ratio = statistics.median(o / b for o, b in zip(ours, before))
            print(f"  median ratio this/previous build {ratio:.2f}  (target >= 0.95)  {'ok' if ratio >= 0.95 else 'MISSED'}")

        it = isolationtester()
        if it:
            spec = tmp / "invite_claim_original.spec"
            spec.write_text(SPEC)
            parts = dict(kv.split("=", 1) for kv in dsn.split())
            conninfo = f"host={parts['host']} port={parts['port']} user={parts['user']} dbname={parts['dbname']}"
            t0 = time.monotonic()
            perms = 0
            for _ in range(a.isolationtester_rounds):
                p = subprocess.run([it, conninfo], stdin=spec.open(), capture_output=True, text=True, env=env)
                perms += len(re.findall(r"^starting permutation", p.stdout, re.M))
            it_rate = perms / (time.monotonic() - t0)
            doc = pgrace_json(["explore", "invite_claim/original", "-c", "2", "--strategy", "random",
                               "--max-schedules", "2000", "--dsn", dsn], env, tmp)
            r = doc["results"][0]
            print("\npeer: the same statements, 2 sessions")
            print(f"  isolationtester  {perms} permutations of 3+3 static steps in {a.isolationtester_rounds} runs: "
                  f"{it_rate:7.0f} interleavings/s")
            print(f"  pgrace explore   invite_claim/original, random, 2000 schedules:          "
                  f"{r['schedules'] / r['seconds']:7.0f} interleavings/s")
        else:
            print("\nisolationtester not installed (postgresql-server-dev-15): peer comparison skipped")


if __name__ == "__main__":
    main()
