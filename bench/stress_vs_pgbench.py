#!/usr/bin/python3
"""Stress-runner throughput against pgbench on the same SQL, measured in one run.

Anchor: pgbench, 8 clients, prepared statements, running invite_claim's recommended
handler as a pgbench script: BEGIN; the claim; the Submission insert or the lookup
(\\if on the claim's result); COMMIT. Each client walks invites 1, 2, 3, ... so the 8
clients contend on the same invite roughly together, as the stress run's 8 sessions do
(without a barrier). Measured: pgrace stress invite_claim/recommended -c 8 on the same
server. Both report statements/s (BEGIN and COMMIT included, 4 per request); the ratio
pgrace/pgbench should be >= 0.8: the server, not the harness, should be the limit.
Also printed: the release skew at 8 sessions (target p99 <= 50 us).

Usage: bench/stress_vs_pgbench.py [--seconds S] [--rounds N]
"""
import argparse
import json
import pathlib
import re
import shutil
import statistics
import subprocess

from benchserver import previous_build, BIN, kept_server
SESSIONS = 8

# Each client walks invites 1, 2, 3, ...: clients drift apart and seldom wait on a lock.
WALK = r"""
\set n :n + 1
"""
# Every 8 consecutive requests (from any client) share one invite, as a stress trial's
# 8 sessions do: the same lock convoy, without a barrier. The extra nextval is not counted.
CONVOY = r"""
SELECT nextval('bench_anchor.req') / %d + 1 AS n \gset
""" % SESSIONS

HANDLER = r"""\set claimed 0
BEGIN;
UPDATE invite SET used_at = now() WHERE token = 'inv-' || :n AND used_at IS NULL AND expires_at > now() RETURNING 1 AS claimed, id AS invite_id \aset
\if :claimed
INSERT INTO submission (invite_id) VALUES (:invite_id) RETURNING id;
\else
SELECT i.used_at IS NOT NULL AS used, i.expires_at <= now() AS expired, s.id FROM invite i LEFT JOIN submission s ON s.invite_id = i.id WHERE i.token = 'inv-' || :n;
\endif
COMMIT;
"""

SETUP = """
CREATE SCHEMA IF NOT EXISTS bench_anchor;
SET search_path = bench_anchor;
DROP TABLE IF EXISTS submission, invite;
CREATE TABLE invite (id bigserial PRIMARY KEY, trial_key bigint NOT NULL UNIQUE,
  token text NOT NULL UNIQUE, expires_at timestamptz NOT NULL, used_at timestamptz);
CREATE TABLE submission (id bigserial PRIMARY KEY, invite_id bigint NOT NULL REFERENCES invite(id),
  created_at timestamptz NOT NULL DEFAULT now());
CREATE INDEX submission_invite_idx ON submission (invite_id);
DROP SEQUENCE IF EXISTS req; CREATE SEQUENCE req MINVALUE 0 START 0;
CREATE UNIQUE INDEX submission_one_per_invite ON submission (invite_id);
INSERT INTO invite (trial_key, token, expires_at)
  SELECT k, 'inv-' || k, now() + interval '1 day' FROM generate_series(1, %d) k;
ANALYZE;
"""


def dsn_parts(dsn):
    return dict(kv.split("=", 1) for kv in dsn.split())


def pgbench_bin():
    out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
    cand = pathlib.Path(out) / "pgbench"
    return str(cand) if cand.exists() else shutil.which("pgbench")


def run_pgbench(dsn, seconds, env, workdir, keys):
    parts = dsn_parts(dsn)
    invites = 400000
    subprocess.run(["psql", dsn, "-q", "-v", "ON_ERROR_STOP=1", "-c", SETUP % invites],
                   check=True, env=env, capture_output=True)
    script = workdir / "invite_claim_recommended.sql"
    script.write_text(keys + HANDLER)
    penv = dict(env, PGOPTIONS="-c search_path=bench_anchor")
    p = subprocess.run([pgbench_bin(), "-n", "-M", "prepared", "-c", str(SESSIONS), "-j", "1",
                        "-T", str(int(seconds)), "-D", "n=0", "-f", str(script),
                        "-h", parts["host"], "-p", parts["port"], "-U", parts["user"], parts["dbname"]],
                       capture_output=True, text=True, env=penv)
    if p.returncode != 0:
        raise SystemExit("pgbench failed: " + p.stderr[-2000:])
    # leave a quiet server for the next measurement (no autovacuum on the anchor's rows)
    subprocess.run(["psql", dsn, "-q", "-c", "DROP SCHEMA bench_anchor CASCADE", "-c", "CHECKPOINT"],
                   check=True, env=env, capture_output=True)
    tps = float(re.search(r"tps = ([0-9.]+) \(without initial connection time\)", p.stdout).group(1))
    tx = int(re.search(r"number of transactions actually processed: (\d+)", p.stdout).group(1))
    if tx / SESSIONS >= invites:
        raise SystemExit("pgbench ran past the prepared invites; raise `invites`")
    return tps * 4          # BEGIN, claim, insert|lookup, COMMIT


def run_pgrace(dsn, seconds, env, workdir, binary=BIN):
    out = workdir / "stress.json"
    subprocess.run([str(binary), "stress", "invite_claim/recommended", "-c", str(SESSIONS), "-T", str(seconds),
                    "-q", "--dsn", dsn, "--json", str(out)], check=True, env=env, capture_output=True)
    r = json.loads(out.read_text())["results"][0]
    assert r["verdict"] == "safe", r
    return r["statements_per_s"], r["release_skew_us"], r["release"], r["trials_per_s"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()

    prev_bin, prev = previous_build()
    with kept_server() as (dsn, env, tmp):
        anchor, convoy, ours, skews, before = [], [], [], [], []
        for i in range(a.rounds):          # alternate, so drift hits all alike
            anchor.append(run_pgbench(dsn, a.seconds, env, tmp, WALK))
            convoy.append(run_pgbench(dsn, a.seconds, env, tmp, CONVOY))
            s, skew, release, tps = run_pgrace(dsn, a.seconds, env, tmp)
            ours.append(s)
            skews.append(skew)
            if prev_bin:
                before.append(run_pgrace(dsn, a.seconds, env, tmp, prev_bin)[0])
            print(f"round {i + 1}: pgbench {anchor[-1]:7.0f} stmt/s, pgbench-convoy {convoy[-1]:7.0f} stmt/s, "
                  f"pgrace {s:7.0f} stmt/s ({tps:.0f} trials/s); "
                  f"skew p50 {skew['p50']:.1f} us p99 {skew['p99']:.1f} us ({release})")
        pa, pc, po = statistics.median(anchor), statistics.median(convoy), statistics.median(ours)
        p50 = statistics.median(s["p50"] for s in skews)
        p99 = statistics.median(s["p99"] for s in skews)
        print()
        print(f"invite_claim/recommended, {SESSIONS} sessions, {a.rounds} rounds of {a.seconds:g} s (medians)")
        print(f"  pgbench (anchor)            {pa:8.0f} statements/s")
        print(f"  pgbench, 8 per invite       {pc:8.0f} statements/s")
        print(f"  pgrace stress               {po:8.0f} statements/s")
        print(f"  ratio pgrace/pgbench        {po / pa:8.2f}   (target >= 0.80)  {'ok' if po / pa >= 0.8 else 'MISSED'}")
        print(f"  ratio pgrace/pgbench-convoy {po / pc:8.2f}   (same lock convoy as a trial)")
        if before:
            pb = statistics.median(before)
            print(f"  previous build ({prev})     {pb:8.0f} statements/s")
            print(f"  ratio this/previous build   {po / pb:8.2f}   (target >= 0.95)  {'ok' if po / pb >= 0.95 else 'MISSED'}")
        else:
            print(f"  previous build: skipped ({prev})")
        print(f"  release skew         p50 {p50:.1f} us, p99 {p99:.1f} us   (target p99 <= 50 us)  "
              f"{'ok' if p99 <= 50 else 'MISSED'}")


if __name__ == "__main__":
    main()
