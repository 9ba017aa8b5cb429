#!/usr/bin/python3
"""pgbench through `pgrace proxy` (pass-through: every statement a step through the seam,
no gate) against pgbench straight to the server: same server, same run, rounds alternated.

pgbench's TPC-B-like script, 8 clients, -M prepared, at two scales: 8 (a branch per client:
the clients seldom wait on each other) and 1 (one branch row that every transaction updates:
a lock convoy, where each extra hop a statement takes lengthens the time the lock is held).
Printed: transactions/s of each side (median of the rounds), the ratio proxy/direct (target
>= 0.7) and the proxy's CPU use.

Usage: bench/proxy_bench.py [--seconds S] [--rounds N] [--clients C] [--scales K,...]
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import time

from benchserver import BIN, kept_server


def dsn_parts(dsn):
    return dict(kv.split("=", 1) for kv in dsn.split())


def pgbench(env, args):
    p = subprocess.run(["pgbench", *args], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"pgbench failed: {p.stderr.strip()[-500:]}")
    return p.stdout


def tps(out):
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if failed and int(failed.group(1)) != 0:
        raise SystemExit(f"pgbench reported failed transactions:\n{out}")
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--scales", default="8,1")
    a = ap.parse_args()
    with kept_server() as (dsn, env, tmp):
        parts = dsn_parts(dsn)
        direct = dict(env, PGHOST=parts["host"], PGPORT=parts["port"], PGUSER=parts["user"], PGDATABASE=parts["dbname"])
        log = tmp / "proxy.err"
        with open(log, "w") as errf:
            proxy = subprocess.Popen([str(BIN), "proxy", "--dsn", dsn], stdout=subprocess.DEVNULL, stderr=errf, env=env)
        deadline = time.time() + 30
        while "PGPORT=" not in log.read_text():
            if proxy.poll() is not None or time.time() > deadline:
                raise SystemExit(f"pgrace proxy did not start:\n{log.read_text()}")
            time.sleep(0.05)
        m = re.search(r"PGHOST=(\S+) PGPORT=(\d+)", log.read_text())
        via = dict(direct, PGHOST=m.group(1), PGPORT=m.group(2))
        rows = []
        try:
            for scale in [int(x) for x in a.scales.split(",")]:
                t0 = time.time()
                pgbench(via, ["-i", "-s", str(scale), "-q"])          # initialised through the proxy
                print(f"pgbench -i -s {scale} through the proxy: {time.time() - t0:.1f} s")
                run = ["-M", "prepared", "-c", str(a.clients), "-j", "2", "-T", str(a.seconds)]
                pgbench(direct, ["-M", "prepared", "-c", str(a.clients), "-j", "2", "-T", "2"])     # warm up
                d, p, cpu = [], [], []
                for r in range(a.rounds):
                    d.append(tps(pgbench(direct, run)))
                    c0 = cpu_seconds(proxy.pid)
                    p.append(tps(pgbench(via, run)))
                    cpu.append((cpu_seconds(proxy.pid) - c0) / a.seconds)
                    print(f"scale {scale} round {r + 1}: direct {d[-1]:.0f} tps, through the proxy {p[-1]:.0f} tps "
                          f"(ratio {p[-1] / d[-1]:.2f}, the proxy used {cpu[-1]:.2f} cores)")
                ratios = [x / y for x, y in zip(p, d)]
                rows.append((scale, statistics.median(d), statistics.median(p), statistics.median(ratios),
                             min(ratios), max(ratios), statistics.median(cpu)))
        finally:
            proxy.send_signal(signal.SIGTERM)
            rc = proxy.wait(30)
        if rc != 0:
            raise SystemExit(f"pgrace proxy exited {rc}:\n{log.read_text()[-2000:]}")
        print()
        print(f"{a.clients} clients, -M prepared, {a.rounds} rounds of {a.seconds} s alternated, medians "
              "(the ratio: the median of each round's proxy/direct, and its range):")
        print("| scale | pgbench straight to the server | through pgrace proxy (pass-through) | ratio (target >= 0.7) | proxy CPU |")
        print("| --- | --- | --- | --- | --- |")
        for scale, dm, pm, rm, lo, hi, c in rows:
            print(f"| {scale} | {dm:.0f} tps | {pm:.0f} tps | **{rm:.2f}** ({lo:.2f}-{hi:.2f}) | {c:.2f} cores |")
        print(f"(load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")

if __name__ == "__main__":
    main()
