#!/usr/bin/python3
"""The HTTP door against its anchors, one run, same server.

1. Last-byte sync: the spread of N requests' final bytes (the send side: every session
   writes its request but the last byte, then one thread writes every last byte) and of
   their first statements' arrival at the proxy (the arrival side), p50 and p99, at 8 and
   20 sessions, next to stress's release skew for the same pattern in-process. Target:
   p99 <= 1 ms (the single-packet attack's median over the internet is about 1 ms).
2. Trials/s over HTTP for seed 001's application against the same pattern in-process (the C
   scenario invite_claim), 8 sessions, the recommended form: the ratio printed. An HTTP
   trial starts 8 requests through 8 application instances, each of which sends its
   statements through pgrace's proxy, so the ratio is the cost of the whole real stack.

The application: examples/invite_claim (Prisma) when it is installed, else
tests/node/invite_claim_http.spec's node-postgres app; --spec chooses.

Usage: bench/http_bench.py [--trials N] [--spec FILE.spec] [--variant NAME]
"""
import argparse
import json
import pathlib
import subprocess
import tempfile

from benchserver import BIN, ROOT, kept_server

EXAMPLE = ROOT / "examples" / "invite_claim" / "invite_claim.spec"
FALLBACK = ROOT / "tests" / "node" / "invite_claim_http.spec"


def run_json(env, dsn, *args):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        p = subprocess.run([str(BIN), *map(str, args), "--dsn", dsn, "-q", "--json", f.name], capture_output=True,
                           text=True, env=env, cwd=ROOT)
        if p.returncode not in (0, 1):
            raise SystemExit(f"pgrace {' '.join(map(str, args))} failed: {p.stderr.strip()[-800:]}")
        return json.loads(pathlib.Path(f.name).read_text())["results"][0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=300)
    ap.add_argument("--spec", default=str(EXAMPLE if (ROOT / "examples" / "node_modules").exists() and EXAMPLE.exists()
                                           else FALLBACK))
    ap.add_argument("--variant", default="recommended")
    a = ap.parse_args()
    spec = pathlib.Path(a.spec).resolve().relative_to(ROOT)
    with kept_server() as (dsn, env, _tmp):
        print(f"HTTP door, {spec}/{a.variant}, {a.trials} trials per row (same server, one run)\n")
        print(f"{'sessions':>8}  {'last-byte spread p50/p99 us':>28}  {'arrival skew p50/p99 us':>24}  "
              f"{'in-process release skew p50/p99 us':>35}")
        for c in (8, 20):
            h = run_json(env, dsn, "http", f"{spec}/{a.variant}", "-c", c, "-t", a.trials)
            ip = run_json(env, dsn, "stress", f"invite_claim/{a.variant}", "-c", c, "-t", a.trials * 10)
            sp, sk, rs = h["http_spread_us"], h["release_skew_us"], ip["release_skew_us"]
            ok = "ok" if sp["p99"] <= 1000 else "OVER 1 ms"
            print(f"{c:>8}  {sp['p50']:>12.1f} / {sp['p99']:<10.1f} {ok:<4}  {sk['p50']:>10.1f} / {sk['p99']:<11.1f}"
                  f"  {rs['p50']:>16.1f} / {rs['p99']:<16.1f}")
        print()
        h = run_json(env, dsn, "http", f"{spec}/{a.variant}", "-c", 8, "-t", a.trials)
        ip = run_json(env, dsn, "stress", f"invite_claim/{a.variant}", "-c", 8, "-t", a.trials * 10)
        print(f"trials/s at 8 sessions: HTTP (the application) {h['trials_per_s']:.1f}, in-process (C) "
              f"{ip['trials_per_s']:.1f}: ratio HTTP/in-process {h['trials_per_s'] / ip['trials_per_s']:.3f}")
        print(f"verdicts: HTTP {h['verdict']} ({h['violations']} of {h['trials']}), in-process {ip['verdict']} "
              f"({ip['violations']} of {ip['trials']})")


if __name__ == "__main__":
    main()
