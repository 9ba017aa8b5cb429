#!/usr/bin/python3
"""Fuzzer figures, measured in one run on one throwaway server.

1. Executions to the first crash for every race variant, read committed (serializable for
   variants that race only there), with the interleaving signal and without it
   (PGRACE_FUZZ_NO_SIGNAL=1), median over --seeds libFuzzer seeds.
2. Executions/s fuzzing every recommended variant (target >= 500).

Usage: bench/fuzz_bench.py [--seeds N] [--max-seconds S]
"""
import argparse
import pathlib
import re
import statistics
import subprocess
import tempfile

from benchserver import BIN, ROOT, kept_server
FUZZER = ROOT / "bin" / "interleave_fuzzer"


def run(env, tmp, target, iso, seed, signal, max_s):
    work = pathlib.Path(tempfile.mkdtemp(dir=tmp))
    (work / "c").mkdir()
    e = dict(env, PGRACE_FUZZ_TARGET=target, PGRACE_FUZZ_SAVE=str(work))
    if iso:
        e["PGRACE_FUZZ_ISOLATION"] = iso
    if not signal:
        e["PGRACE_FUZZ_NO_SIGNAL"] = "1"
    p = subprocess.run([str(FUZZER), f"-seed={seed}", f"-max_total_time={max_s}", "-timeout=30",
                        "-print_final_stats=1", str(work / "c")], capture_output=True, text=True, env=e, cwd=work)
    units = int(re.search(r"stat::number_of_executed_units: (\d+)", p.stderr).group(1))
    rate = int(re.search(r"stat::average_exec_per_sec:\s+(\d+)", p.stderr).group(1))
    return ("pgrace: violation" in p.stderr), units, rate


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--max-seconds", type=int, default=60)
    a = ap.parse_args()
    with kept_server() as (dsn, env, tmp):
        env["PGRACE_DSN"] = dsn
        rows = [l.split() for l in subprocess.run([str(BIN), "list"], capture_output=True, text=True,
                                                  check=True).stdout.splitlines()[1:]]
        print(f"executions to the first crash (median of {a.seeds} seeds; '>N' = none within {a.max_seconds} s)")
        print(f"  {'target':40} {'isolation':16} {'with signal':>12} {'without':>10}")
        for target, kind, expect, *_ in rows:
            if kind == "recommended":
                continue
            levels = expect.split("/")
            # the fuzzer runs 2 or 3 sessions: a race that needs more (race(c>=4)) is not its to find
            racing = [i for i, l in enumerate(levels) if l == "race" or l in ("race(c>=2)", "race(c>=3)")]
            if not racing:
                continue
            iso = ("read-committed", "repeatable-read", "serializable")[racing[0]]
            cells = []
            for signal in (True, False):
                found = [run(env, tmp, target, iso, s + 1, signal, a.max_seconds) for s in range(a.seeds)]
                units = [u if hit else float("inf") for hit, u, _ in found]
                m = statistics.median(units)
                cells.append(f"{int(m)}" if m != float("inf") else f">{max(u for _, u, _ in found)}")
            print(f"  {target:40} {iso:16} {cells[0]:>12} {cells[1]:>10}")
        print("\nexecutions/s, 30 s each (ASan+UBSan build)")
        env2 = dict(env, PGRACE_FUZZ_SESSIONS="2")
        for target in [t for t, k, *_ in rows if k == "recommended"]:
            hit, units, rate = run(env2, tmp, target, None, 1, True, 30)
            print(f"  {target:40} 2 sessions, all levels: {rate:5d} exec/s  {'ok' if rate >= 500 else 'MISSED'} "
                  f"(target >= 500){'  A VIOLATION' if hit else ''}")
        hit, units, rate = run(env, tmp, "recommended", None, 1, True, 30)
        print(f"  every recommended variant, 2-3 sessions: {rate:5d} exec/s (42 pools warming up)"
              f"{'  A VIOLATION' if hit else ''}")


if __name__ == "__main__":
    main()
