"""A spec against the same pattern in C, one run, same server (issue #12's speed targets):
  - stress: trials/s of specs/invite_claim_spec.spec against scenarios/invite_claim.c, each
    variant at 8 sessions; ratio spec/C (target >= 0.8);
  - explore: schedules/s of the spec's recommended variant, random, 2 sessions, 2000
    schedules (target >= 500), next to the C scenario's.
"""
import argparse
import json
import statistics
import subprocess

from benchserver import BIN, ROOT, kept_server

SPEC = ROOT / "specs" / "invite_claim_spec.spec"


def run(args, env, tmp):
    out = tmp / "b.json"
    subprocess.run([str(BIN), *args, "-q", "--json", str(out)], env=env, capture_output=True, check=False)
    return {r["variant"]: r for r in json.loads(out.read_text())["results"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    with kept_server() as (dsn, env, tmp):
        print(f"stress, 8 sessions, read committed, {a.rounds} rounds of {a.seconds:g} s (medians), trials/s")
        ratios = []
        for variant in ("original", "proposed", "recommended"):
            c, s = [], []
            for _ in range(a.rounds):           # alternate, so drift hits both alike
                c.append(run(["stress", f"invite_claim/{variant}", "-c", "8", "-T", str(a.seconds), "--dsn", dsn],
                             env, tmp)[variant]["trials_per_s"])
                s.append(run(["stress", f"{SPEC}/{variant}", "-c", "8", "-T", str(a.seconds), "--dsn", dsn],
                             env, tmp)[variant]["trials_per_s"])
            mc, ms = statistics.median(c), statistics.median(s)
            ratios.append(ms / mc)
            print(f"  {variant:12} C {mc:7.0f}   spec {ms:7.0f}   ratio {ms / mc:5.2f}  "
                  f"{'ok' if ms / mc >= 0.8 else 'MISSED'} (target >= 0.80)")
        print("\nexplore, random, 2 sessions, 2000 schedules of the recommended variant")
        for name, target in (("C", "invite_claim/recommended"), ("spec", f"{SPEC}/recommended")):
            r = run(["explore", target, "-c", "2", "--strategy", "random", "--max-schedules", "2000", "--dsn", dsn],
                    env, tmp)["recommended"]
            rate = r["schedules"] / r["seconds"]
            note = f"  {'ok' if rate >= 500 else 'MISSED'} (target >= 500)" if name == "spec" else ""
            print(f"  {name:5} {rate:7.0f} schedules/s{note}")


if __name__ == "__main__":
    main()
