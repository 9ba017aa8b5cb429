#!/usr/bin/python3
"""Fuzzer figures, measured in one run on one throwaway server.

1. Executions (schedules run) to the first violation for every race variant, read committed
   (serializable for variants that race only there), with the interleaving signal and without
   it (PGRACE_FUZZ_NO_SIGNAL=1), median over --seeds libFuzzer seeds (the input number the
   fuzzer's violation line names: libFuzzer's own count runs past it, with batched checks,
   inputs too short for a header, and repeats of an input already run).
2. Schedules run/s fuzzing every recommended variant (target >= 500), and libFuzzer's
   executions/s beside it.

Usage: bench/fuzz_bench.py [--seeds N] [--max-seconds S]
"""
import argparse
import statistics
import subprocess

from benchserver import BIN, kept_server
from fuzzrun import fuzz_once, median_to_first


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--max-seconds", type=int, default=60)
    a = ap.parse_args()
    with kept_server() as (dsn, env, tmp):
        env["PGRACE_DSN"] = dsn
        rows = [l.split() for l in subprocess.run([str(BIN), "list"], capture_output=True, text=True,
                                                  check=True).stdout.splitlines()[1:]]
        print(f"executions to the first violation (median of {a.seeds} seeds; '>N' = none within {a.max_seconds} s)")
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
            cells = [median_to_first(env, tmp, target, a.seeds, a.max_seconds, signal=signal, iso=iso)
                     for signal in (True, False)]
            print(f"  {target:40} {iso:16} {cells[0]:>12} {cells[1]:>10}")
        print("\nschedules run/s, 30 s each (ASan+UBSan build); libFuzzer's executions/s also count its inputs too short "
              "for a header and its repeats of an input already run, neither of which runs a schedule")
        env2 = dict(env, PGRACE_FUZZ_SESSIONS="2")
        rates = []
        for target in [t for t, k, *_ in rows if k == "recommended"]:
            hit, units, rate, lf_rate = fuzz_once(env2, tmp, target, 1, 30)
            rates.append(rate)
            print(f"  {target:40} 2 sessions, all levels: {rate:5d} schedules/s  {'ok' if rate >= 500 else 'MISSED'} "
                  f"(target >= 500; libFuzzer's executions/s {lf_rate}){'  A VIOLATION' if hit else ''}")
        print(f"  lowest {min(rates)} schedules/s, median {statistics.median(rates):g}")
        hit, units, rate, lf_rate = fuzz_once(env, tmp, "recommended", 1, 30)
        print(f"  every recommended variant, 2-3 sessions: {rate:5d} schedules/s, libFuzzer's executions/s "
              f"{lf_rate} (42 pools warming up){'  A VIOLATION' if hit else ''}")


if __name__ == "__main__":
    main()
