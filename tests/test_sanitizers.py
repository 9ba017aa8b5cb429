"""The same runs under ASan+UBSan and TSan builds: no reports, same verdicts."""
import subprocess

import pytest

from conftest import BIN

REPORTS = ("AddressSanitizer", "ThreadSanitizer", "LeakSanitizer", "runtime error:")


@pytest.mark.parametrize("build", ["pgrace-asan", "pgrace-tsan"])
def test_sanitizer_build_runs_clean(pgrace, build):
    binary = BIN.parent / build
    env = pgrace.env(ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
                     UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
                     TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1")
    p = subprocess.run([str(binary), "stress", "invite_claim", "-c", "4", "-t", "150", "-q",
                        "--dsn", pgrace.dsn], capture_output=True, text=True, env=env, timeout=600)
    assert not any(r in p.stderr for r in REPORTS), p.stderr[-4000:]
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("(expected race)") == 2 and p.stdout.count("(expected safe)") == 1


def test_sanitizer_throwaway_server_and_bad_input(private_tmp):
    binary = BIN.parent / "pgrace-asan"
    env = {"TMPDIR": str(private_tmp), "PATH": "/usr/bin:/bin"}
    p = subprocess.run([str(binary), "stress", "invite_claim/recommended", "-c", "2", "-t", "30", "-q"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0 and not any(r in p.stderr for r in REPORTS), p.stderr[-4000:]
    p = subprocess.run([str(binary), "stress", "invite_claim", "--dsn", "nonsense"],
                       capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and not any(r in p.stderr for r in REPORTS), p.stderr


@pytest.mark.parametrize("build", ["pgrace-asan", "pgrace-tsan"])
@pytest.mark.parametrize("fault", ["timeout-retry@0.5", "kill-backend@0.5", "error-at@0.5", "lost-commit@0.5"])
def test_sanitizer_builds_under_faults(pgrace, build, fault):
    """Faults take connections away and reconnect sessions while the coordinator (and, in
    explore, the monitor) reads their state: no sanitizer report, the recommended survives."""
    binary = BIN.parent / build
    env = pgrace.env(ASAN_OPTIONS="detect_leaks=1:abort_on_error=1",
                     UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
                     TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1")
    for args in (["stress", "invite_claim/recommended", "-c", "2", "-t", "40"],
                 ["explore", "invite_claim/recommended", "-c", "2", "--max-schedules", "30"]):
        p = subprocess.run([str(binary), *args, "--fault", fault, "-q", "--dsn", pgrace.dsn],
                           capture_output=True, text=True, env=env, timeout=600)
        assert not any(r in p.stderr for r in REPORTS), p.stderr[-4000:]
        assert p.returncode == 0, p.stdout + p.stderr
        assert "(expected safe)" in p.stdout and "fault " in p.stdout
