#!/usr/bin/python3
"""pgbench through `pgrace proxy` (pass-through: every statement a step through the seam,
no gate) against pgbench straight to the server: same server, same run, rounds alternated.

pgbench's TPC-B-like script, 8 clients, -M prepared, scale 8 (a branch per client, so the
server's row locks do not hide the proxy's cost). Printed: transactions/s of each side
(median of the rounds), the ratio proxy/direct (target >= 0.7) and the proxy's CPU use.

Usage: bench/proxy_bench.py [--seconds S] [--rounds N] [--clients C] [--scale K]
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
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--scale", type=int, default=8)
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
        try:
            t0 = time.time()
            pgbench(via, ["-i", "-s", str(a.scale), "-q"])          # initialised through the proxy
            print(f"pgbench -i -s {a.scale} through the proxy: {time.time() - t0:.1f} s")
            run = ["-M", "prepared", "-c", str(a.clients), "-j", "2", "-T", str(a.seconds)]
            pgbench(direct, ["-M", "prepared", "-c", str(a.clients), "-j", "2", "-T", "2"])     # warm up
            d, p, cpu = [], [], []
            for r in range(a.rounds):
                d.append(tps(pgbench(direct, run)))
                c0 = cpu_seconds(proxy.pid)
                p.append(tps(pgbench(via, run)))
                cpu.append((cpu_seconds(proxy.pid) - c0) / a.seconds)
                print(f"round {r + 1}: direct {d[-1]:.0f} tps, through the proxy {p[-1]:.0f} tps "
                      f"(ratio {p[-1] / d[-1]:.2f}, the proxy used {cpu[-1]:.2f} cores)")
        finally:
            proxy.send_signal(signal.SIGTERM)
            rc = proxy.wait(30)
        if rc != 0:
            raise SystemExit(f"pgrace proxy exited {rc}:\n{log.read_text()[-2000:]}")
        dm, pm = statistics.median(d), statistics.median(p)
        print()
        print(f"| measure ({a.clients} clients, -M prepared, scale {a.scale}, {a.rounds} x {a.seconds} s alternated) | figure |")
        print("| --- | --- |")
        print(f"| pgbench straight to the server | {dm:.0f} tps |")
        print(f"| pgbench through pgrace proxy (pass-through) | {pm:.0f} tps |")
        print(f"| ratio proxy / direct (target >= 0.7) | **{pm / dm:.2f}** |")
        print(f"| the proxy's CPU | {statistics.median(cpu):.2f} cores |")


if __name__ == "__main__":
    main()
