"""The libFuzzer interleaving fuzzer (make fuzz-smoke): from an empty corpus it finds a known
race, writes a schedule that replays, and fuzzes the recommended variants clean."""
import os
import re
import subprocess

import pytest

from conftest import BIN

FUZZER = BIN.parent / "interleave_fuzzer"
REPLAYER = BIN.parent / "interleave_replay"


def fuzz(pgrace, tmp_path, *args, **env):
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    save = tmp_path / "save"
    save.mkdir(exist_ok=True)
    e = pgrace.env(PGRACE_DSN=pgrace.dsn, PGRACE_FUZZ_SAVE=str(save), **env)
    p = subprocess.run([str(FUZZER), *args, "-print_final_stats=1", str(corpus)], capture_output=True,
                       text=True, env=e, timeout=300, cwd=tmp_path)
    return p, save, corpus


def schemas(pgrace):
    q = "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgrace%'"
    return set(subprocess.run(["psql", pgrace.dsn, "-qAt", "-c", q], capture_output=True, text=True,
                              env=pgrace.env(), check=True).stdout.split())


def test_fuzzer_finds_a_known_race_from_an_empty_corpus(pgrace, tmp_path):
    before = schemas(pgrace)
    p, save, _ = fuzz(pgrace, tmp_path, "-max_total_time=90", "-timeout=30",
                      PGRACE_FUZZ_TARGET="invite_claim/proposed", PGRACE_FUZZ_ISOLATION="read-committed")
    assert "Extra Counters" in p.stderr, "the interleaving signal must reach libFuzzer"
    assert 'pgrace: violation of "exactly one 201; every duplicate gets 200' in p.stderr, p.stderr[-3000:]
    assert "why:" in p.stderr
    # checked in batches: the violating input is the one being run (libFuzzer's own crash
    # path) or an earlier one of its batch (saved by pgrace, exit with libFuzzer's code)
    assert p.returncode == 77, p.stderr[-3000:]
    assert "deadly signal" in p.stderr or "was checked in a batch" in p.stderr
    crashes = list(tmp_path.glob("crash-*"))
    assert len(crashes) == 1
    assert schemas(pgrace) == before, "the fuzzer drops its schemas when it stops"
    schedules = list(save.glob("*.schedule"))
    assert len(schedules) == 1
    r = pgrace.run("replay", schedules[0], "-q")
    assert r.returncode == 0 and "reproduced" in r.stdout, r.stdout + r.stderr
    # the crashing input replays with the plain (gcc) main, no libFuzzer
    e = pgrace.env(PGRACE_DSN=pgrace.dsn, PGRACE_FUZZ_TARGET="invite_claim/proposed",
                   PGRACE_FUZZ_ISOLATION="read-committed", PGRACE_FUZZ_SAVE=str(tmp_path))
    r = subprocess.run([str(REPLAYER), str(crashes[0])], capture_output=True, text=True, env=e, timeout=120)
    assert r.returncode == 1 and "replayed 1 input(s), 1 broke an invariant" in r.stdout, r.stdout + r.stderr


def test_recommended_variants_fuzz_clean(pgrace, tmp_path):
    p, save, corpus = fuzz(pgrace, tmp_path, "-runs=1500", "-timeout=30", PGRACE_FUZZ_TARGET="recommended")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "pgrace: violation" not in p.stderr and not list(save.glob("*.schedule"))
    runs = int(re.search(r"stat::number_of_executed_units: (\d+)", p.stderr).group(1))
    assert runs >= 1500
    # and its corpus replays clean through the plain main
    e = pgrace.env(PGRACE_DSN=pgrace.dsn, PGRACE_FUZZ_TARGET="recommended")
    r = subprocess.run([str(REPLAYER), str(corpus)], capture_output=True, text=True, env=e, timeout=300)
    assert r.returncode == 0 and "0 broke an invariant" in r.stdout, r.stdout + r.stderr


def test_dead_server_is_checked_at_initialize_not_a_crash(pgrace, tmp_path):
    e = pgrace.env(PGRACE_DSN="host=/nonexistent port=1 dbname=x")
    p = subprocess.run([str(FUZZER), "-runs=10"], capture_output=True, text=True, env=e, timeout=60, cwd=tmp_path)
    assert p.returncode == 2 and "pgrace fuzz: cannot connect to the server" in p.stderr
    assert not list(tmp_path.glob("crash-*"))


def test_every_input_violating_in_a_batch_is_attributed_to_itself(pgrace, tmp_path):
    """A batch of 256: the violation is found after its input ran (most likely not the last
    one run); the crash file saved is that input, and it replays to a violation alone."""
    p, _, _ = fuzz(pgrace, tmp_path, "-max_total_time=90", "-timeout=30", "-seed=3",
                   PGRACE_FUZZ_TARGET="message_sequence/original", PGRACE_FUZZ_ISOLATION="read-committed",
                   PGRACE_FUZZ_BATCH="256")
    assert p.returncode == 77 and "pgrace: violation" in p.stderr, p.stderr[-3000:]
    crashes = list(tmp_path.glob("crash-*"))
    assert len(crashes) == 1
    # whichever path saved it, the saved file is the one the fuzzer names
    saved = re.search(r"pgrace: input \d+ was checked in a batch .*: written to (\S+) ", p.stderr)
    if saved:
        assert crashes[0].name.startswith("crash-pgrace-") and saved.group(1).endswith(crashes[0].name)
    else:
        assert "deadly signal" in p.stderr and not crashes[0].name.startswith("crash-pgrace-")
    e = pgrace.env(PGRACE_DSN=pgrace.dsn, PGRACE_FUZZ_TARGET="message_sequence/original",
                   PGRACE_FUZZ_ISOLATION="read-committed", PGRACE_FUZZ_SAVE=str(tmp_path))
    r = subprocess.run([str(REPLAYER), str(crashes[0])], capture_output=True, text=True, env=e, timeout=120)
    assert r.returncode == 1 and "replayed 1 input(s), 1 broke an invariant" in r.stdout, r.stdout + r.stderr


def test_a_check_made_before_an_input_runs_blames_an_earlier_input(pgrace, tmp_path):
    """Batches of 2 over invite_claim's 3 cases give each case 2 trials per prepared batch.
    Inputs: case 0 serial, case 1 serial (checked: a full batch), case 0 racing, case 0
    serial. The 4th finds its case's trials used up, so the racing 3rd is checked before the
    4th runs. It must be named as an earlier input: taken for the input being run, libFuzzer
    saved the 4th as the crash, which did not replay (CI, stop 22)."""
    serial0, serial1 = bytes([0, 0, 0, 0] + [0] * 16), bytes([0, 0, 0, 1] + [0] * 16)
    racing0 = bytes.fromhex("00000000d08f5dc7512447e3404300026b6e5455")    # S1 claims, S2 looks, S1 creates
    files = []
    for i, b in enumerate([serial0, serial1, racing0, serial0]):
        files.append(tmp_path / f"in{i + 1}")
        files[-1].write_bytes(b)
    e = pgrace.env(PGRACE_DSN=pgrace.dsn, PGRACE_FUZZ_TARGET="invite_claim/proposed", PGRACE_FUZZ_SESSIONS="2",
                   PGRACE_FUZZ_ISOLATION="read-committed", PGRACE_FUZZ_SAVE=str(tmp_path), PGRACE_FUZZ_BATCH="2")
    r = subprocess.run([str(REPLAYER), *map(str, files)], capture_output=True, text=True, env=e, timeout=120)
    assert "checked in batches of 2" in r.stderr, r.stderr
    assert r.returncode == 1 and "replayed 4 input(s), 1 broke an invariant" in r.stdout, r.stdout + r.stderr
    assert re.findall(r"pgrace: violation of .*, input (\d+)", r.stderr) == ["3"], r.stderr
    assert "pgrace: input 3 was checked in a batch with the inputs after it" in r.stderr, r.stderr


def test_an_input_already_run_is_not_run_again(pgrace, tmp_path):
    """The same bytes are the same schedule: of a seed corpus of three files, two of them
    equal, two schedules run, however often libFuzzer executes them; with
    PGRACE_FUZZ_RUN_REPEATS=1 every execution runs one."""
    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a").write_bytes(bytes([0, 0, 0, 0, 1, 0, 1, 0, 1, 0]))
    (corpus / "b").write_bytes(bytes([0, 0, 0, 0, 1, 0, 1, 0, 1, 0]))
    (corpus / "d").write_bytes(bytes([0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0]))
    ran = {}
    for repeats in ("0", "1"):
        e = pgrace.env(PGRACE_DSN=pgrace.dsn, PGRACE_FUZZ_TARGET="nullifier_submission/recommended",
                       PGRACE_FUZZ_SESSIONS="2", PGRACE_FUZZ_SAVE=str(tmp_path), PGRACE_FUZZ_RUN_REPEATS=repeats)
        p = subprocess.run([str(FUZZER), "-runs=0", "-print_final_stats=1", str(corpus)], capture_output=True,
                           text=True, env=e, timeout=120, cwd=tmp_path)
        assert p.returncode == 0, p.stderr[-3000:]
        m = re.search(r"pgrace fuzz: (\d+) input\(s\) run, (\d+) repeat\(s\) of an input already run not run again",
                      p.stderr)
        assert m, p.stderr[-3000:]
        ran[repeats] = (int(m.group(1)), int(m.group(2)))
    assert ran["0"][0] == 2 and ran["0"][1] >= 1, ran
    assert ran["1"][0] >= 3 and ran["1"][1] == 0, ran


@pytest.mark.parametrize("batch", ["0", "257", "x"])
def test_bad_batch_size_exits_2(pgrace, tmp_path, batch):
    e = pgrace.env(PGRACE_DSN=pgrace.dsn, PGRACE_FUZZ_BATCH=batch)
    p = subprocess.run([str(FUZZER), "-runs=1"], capture_output=True, text=True, env=e, timeout=60, cwd=tmp_path)
    assert p.returncode == 2 and "PGRACE_FUZZ_BATCH must be 1..256" in p.stderr, p.stderr


def test_unknown_fuzz_target_exits_2(pgrace, tmp_path):
    e = pgrace.env(PGRACE_DSN=pgrace.dsn, PGRACE_FUZZ_TARGET="nope/none")
    p = subprocess.run([str(FUZZER), "-runs=1"], capture_output=True, text=True, env=e, timeout=60, cwd=tmp_path)
    assert p.returncode == 2 and "names no target" in p.stderr


def test_parsers_fuzzer_runs_clean(tmp_path):
    """Schedule files, DSNs, isolation and scenario names: 200k inputs, no crash, leak or UB."""
    corpus = tmp_path / "c"
    corpus.mkdir()
    for f in (BIN.parent.parent / "fuzz" / "corpus" / "parsers").iterdir():
        (corpus / f.name).write_bytes(f.read_bytes())
    p = subprocess.run([str(BIN.parent / "parsers_fuzzer"), f"-dict={BIN.parent.parent / 'fuzz' / 'parsers.dict'}",
                        "-runs=200000", "-print_final_stats=1", str(corpus)], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "stat::number_of_executed_units: 200000" in p.stderr
