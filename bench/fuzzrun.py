"""One run of the interleaving fuzzer (bin/interleave_fuzzer, ASan+UBSan) for the benchmarks:
from an empty corpus, until its first violation or a time limit."""
import pathlib
import re
import statistics
import subprocess
import tempfile

from benchserver import ROOT

FUZZER = ROOT / "bin" / "interleave_fuzzer"


def fuzz_once(env, tmp, target, seed, max_s, signal=True, iso=None, sessions=None, spec=None):
    """Returns (executions to the first violation or None, libFuzzer's executions, schedules
    run per second, libFuzzer's executions per second). An execution pgrace counts is a
    schedule run; libFuzzer's count also holds the inputs too short to hold a header
    (rejected) and its repeats of an input already run (not run again).
    target: scenario/variant (a spec's: its file's stem/variant, with spec the file)."""
    work = pathlib.Path(tempfile.mkdtemp(dir=tmp))
    (work / "c").mkdir()
    e = dict(env, PGRACE_FUZZ_TARGET=target, PGRACE_FUZZ_SAVE=str(work))
    e.setdefault("ASAN_OPTIONS", "symbolize=0")     # the abort's stack is not the figure
    for key, val in (("PGRACE_FUZZ_ISOLATION", iso), ("PGRACE_FUZZ_SESSIONS", sessions), ("PGRACE_FUZZ_SPEC", spec)):
        if val:
            e[key] = str(val)
    if not signal:
        e["PGRACE_FUZZ_NO_SIGNAL"] = "1"
    p = subprocess.run([str(FUZZER), f"-seed={seed}", f"-max_total_time={max_s}", "-timeout=30",
                        "-print_final_stats=1", str(work / "c")], capture_output=True, text=True, env=e, cwd=work)
    hit = re.search(r"pgrace: violation .*, input (\d+)", p.stderr)
    units = re.search(r"stat::number_of_executed_units: (\d+)", p.stderr)
    rate = re.search(r"stat::average_exec_per_sec:\s+(\d+)", p.stderr)
    if not hit and not units:
        raise SystemExit(f"fuzzer failed on {target}: {p.stderr.strip()[-400:]}")
    ran = re.search(r"pgrace fuzz: (\d+) input\(s\) run, (\d+) repeat", p.stderr)
    per_s = int(rate.group(1)) if rate else None
    if per_s and ran and units and int(units.group(1)):
        per_s = round(per_s * int(ran.group(1)) / int(units.group(1)))
    return (int(hit.group(1)) if hit else None, int(units.group(1)) if units else None, per_s,
            int(rate.group(1)) if rate else None)


def median_to_first(env, tmp, target, seeds, max_s, **kw):
    """Median over seeds 1..seeds of the executions to the first violation, as text
    ('>N' when the median run found none within max_s: N the fewest executions of those)."""
    runs = [fuzz_once(env, tmp, target, s, max_s, **kw) for s in range(1, seeds + 1)]
    firsts = [f if f is not None else float("inf") for f, *_ in runs]
    m = statistics.median(firsts)
    if m != float("inf"):
        return f"{m:g}"
    return f">{min(u or 0 for f, u, *_ in runs if f is None)}"
