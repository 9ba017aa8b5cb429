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
5. Partial-order reduction: for every target, 2 sessions, every level, exhaustive, the
   schedules explored with DPOR against today's sleep sets in the same run, and the
   distinct Mazurkiewicz traces (--reduction none enumerates every interleaving; run with
   --traces, it takes minutes).
6. Depth: races that need 3 and 4 sessions (bench/specs/), schedules and seconds to the first
   violation for exhaustive with DPOR, exhaustive with sleep sets alone, random and PCT, and
   executions to it for the fuzzer (ASan+UBSan) with its interleaving signal and without; and
   every seed variant exhaustive at 3 sessions with DPOR (the whole space, seconds each).

Usage: bench/explore_bench.py [--isolationtester-rounds N] [--only SECTIONS] [--traces]
"""
import argparse
import json
import pathlib
import re
import statistics
import subprocess
import time

from benchserver import BIN, ROOT, kept_server, previous_build
from fuzzrun import median_to_first

LEVELS = ("read-committed", "repeatable-read", "serializable")
# (spec, variant, sessions, level): races that need a third or a fourth session
DEPTH = [     # spec, variant, sessions, level, the fuzzer's seeds, random's and pct's schedules at most
    ("bench/specs/coupon_limit2.spec", "proposed", 3, "read-committed", 60, 500),
    ("bench/specs/coupon_limit2.spec", "original", 3, "read-committed", 60, 500),
    ("bench/specs/readonly_anomaly.spec", "original", 3, "repeatable-read", 60, 500),
    ("bench/specs/coupon_limit3.spec", "proposed", 4, "read-committed", 60, 500),
    ("bench/specs/readonly_anomaly_deep.spec", "original", 3, "repeatable-read", 20, 5000),
]

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


def explore(args, env, tmp):
    """One variant's result (the first in the file)."""
    return pgrace_json(["explore", *args, "-P", "0"], env, tmp)["results"][0]


def por_counts(dsn, env, tmp, traces):
    print("\npartial-order reduction, 2 sessions, exhaustive: schedules with DPOR / with sleep sets alone"
          + (" / distinct Mazurkiewicz traces (every interleaving run)" if traces else ""))
    print(f"  {'target':44} {'read committed':>22} {'repeatable read':>22} {'serializable':>22}")
    same = True
    totals = [0, 0]
    for target, kind, expect in targets() + spec_targets():
        cells = []
        for iso in LEVELS:
            d = explore([target, "-c", "2", "-i", iso, "--dsn", dsn], env, tmp)
            sl = explore([target, "-c", "2", "-i", iso, "--reduction", "sleep", "--dsn", dsn], env, tmp)
            same &= d["verdict"] == sl["verdict"]
            totals[0] += d["schedules"]
            totals[1] += sl["schedules"]
            cell = f"{d['schedules']}/{sl['schedules']}"
            if traces:
                n = explore([target, "-c", "2", "-i", iso, "--reduction", "none", "--dsn", dsn], env, tmp)
                cell += f"/{n['explore']['traces']}"
                same &= n["verdict"] == d["verdict"]
            if d["verdict"] != sl["verdict"]:
                cell += " DIFFERS"
            cells.append(cell)
        name = target.replace(str(ROOT) + "/", "")
        print(f"  {name:44} {cells[0]:>22} {cells[1]:>22} {cells[2]:>22}")
    print(f"  total: {totals[0]} schedules with DPOR, {totals[1]} with sleep sets; verdicts "
          + ("identical in every cell" if same else "DIFFER (see above)"))


def spec_targets():
    out = []
    for spec in sorted((ROOT / "specs").glob("*.spec")):
        doc = subprocess.run([str(BIN), "list", str(spec)], capture_output=True, text=True).stdout
        for line in doc.splitlines()[1:]:
            f = line.split()
            if f:
                out.append((f"{spec}/{f[0].split('/')[-1]}", f[1], f[2]))
    return out


def depth(dsn, env, tmp):
    print("\ndepth: races that need 3 and 4 sessions; schedules to the first violation (seconds to it, at the "
          "run's rate); random and pct: median of 5 seeds, 500 schedules at most (5000 for the deep anomaly); "
          "the fuzzer: executions to the first violation, median of 60 libFuzzer seeds (15 move it by a third; "
          "20 for the deep anomaly), 60 s at most each")
    print(f"  {'target':40} {'c':>1} {'level':15} {'dpor':>16} {'sleep sets':>18} {'random':>16} {'pct d=3':>16}"
          f" {'fuzz+signal':>11} {'fuzz':>6}")
    for spec, variant, c, iso, fuzz_seeds, most in DEPTH:
        target = f"{spec}/{variant}"
        base = [str(ROOT / target), "-c", str(c), "-i", iso, "--dsn", dsn]
        cells = []
        for args in (["--reduction", "dpor", "--max-schedules", "2000"], ["--reduction", "sleep", "--max-schedules", "2000"]):
            r = explore(base + args, env, tmp)
            fv = r["explore"]["first_violation"]
            sec = r["seconds"] * fv / r["schedules"] if fv else r["seconds"]
            cells.append(f"{fv} ({sec:.2f} s)" if fv else f">{r['schedules']} ({sec:.0f} s)")
        bound = ""
        for strat in ("random", "pct"):
            fvs, secs = [], []
            for seed in range(1, 6):
                extra = ["--depth", "3"] if strat == "pct" else []
                r = explore(base + ["--strategy", strat, "--seed", str(seed), "--max-schedules", str(most)] + extra, env, tmp)
                fv = r["explore"]["first_violation"] or float("inf")
                fvs.append(fv)
                secs.append(r["seconds"] * fv / r["schedules"] if fv != float("inf") else float("inf"))
                if strat == "pct":
                    bound = r["explore"]["pct_bound"]
            m, ms = statistics.median(fvs), statistics.median(secs)
            cells.append(f"{m:g} ({ms:.2f} s)" if m != float("inf") else f">{most}")
        fenv = dict(env, PGRACE_DSN=dsn)
        name = f"{pathlib.Path(spec).stem}/{variant}"
        for signal in (True, False):
            cells.append(median_to_first(fenv, tmp, name, fuzz_seeds, 60, signal=signal, iso=iso, sessions=c,
                                         spec=ROOT / spec))
        print(f"  {target:40} {c:1d} {iso:15} {cells[0]:>16} {cells[1]:>18} {cells[2]:>16} {cells[3]:>16}"
              f" {cells[4]:>11} {cells[5]:>6}   pct bound {bound:.2g}/schedule")
    print("\nthe 3-session specs' whole space, every variant, exhaustive with DPOR")
    for spec in sorted({d[0] for d in DEPTH if d[2] == 3}):
        c = 3
        iso = [d[3] for d in DEPTH if d[0] == spec][0]
        doc = pgrace_json(["explore", str(ROOT / spec), "-c", str(c), "-i", iso, "--dsn", dsn, "-P", "0"], env, tmp)
        for r in doc["results"]:
            print(f"  {spec + '/' + r['variant']:52} {c} sessions {iso:15} {r['schedules']:6d} schedules "
                  f"{r['seconds']:6.2f} s  {r['verdict']}")


def seeds_at_3(dsn, env, tmp):
    print("\nevery seed variant, 3 sessions, read committed, exhaustive with DPOR: the whole space (target < 30 s)")
    for target, kind, expect in targets():
        r = explore([target, "-c", "3", "--dsn", dsn], env, tmp)
        e = r["explore"]
        ok = e["complete"] and r["seconds"] < 30
        print(f"  {target:40} {r['schedules']:7d} schedules {r['seconds']:7.2f} s  {r['verdict']:5} "
              f"{'ok' if ok else 'MISSED'}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--isolationtester-rounds", type=int, default=20)
    ap.add_argument("--only", default="classic,por,depth,seeds3",
                    help="comma-separated sections: classic (1-4) por (5) depth seeds3 (6)")
    ap.add_argument("--traces", action="store_true", help="also count the Mazurkiewicz traces (every interleaving)")
    a = ap.parse_args()
    only = set(a.only.split(","))
    with kept_server() as (dsn, env, tmp):
        if "por" in only:
            por_counts(dsn, env, tmp, a.traces)
        if "depth" in only:
            depth(dsn, env, tmp)
        if "seeds3" in only:
            seeds_at_3(dsn, env, tmp)
        if "classic" not in only:
            return
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
