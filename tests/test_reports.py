"""Reports people look at: index.html (opened in headless Chromium), junit.xml, summary.md."""
import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest


@pytest.fixture(scope="module")
def report(pgrace, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    p = pgrace.run("run", "invite_claim", "--budget", "0", "--out", out, "-q")   # every cell its minimum
    assert p.returncode == 0, p.stdout + p.stderr
    return out, p


def test_run_writes_all_reports(report):
    out, p = report
    for name in ("results.json", "index.html", "junit.xml", "summary.md"):
        assert (out / name).stat().st_size > 0, name
    doc = json.loads((out / "results.json").read_text())
    modes = {(r["variant"], r["isolation"], r["sessions"], r["mode"]) for r in doc["results"] if not r["fault"]}
    assert len(modes) == 3 * 3 * 3          # 3 variants x 3 levels x (stress 2, stress 8, explore 2)
    faults = {(r["variant"], r["fault"]["kind"]) for r in doc["results"] if r["fault"]}
    assert len(faults) == 3 * 4             # the fault matrix: 3 variants x 4 faults, one client
    assert all(r["sessions"] == 1 and r["trials"] == 100 for r in doc["results"] if r["fault"])
    assert all(r["trials"] == 300 for r in doc["results"] if not r["fault"] and r["mode"] == "stress")
    assert not any(r["budget_short"] for r in doc["results"])
    assert "MODE" in p.stdout and "explore" in p.stdout


def test_junit_has_one_testcase_per_cell_and_no_failures(report):
    out, _ = report
    root = ET.parse(out / "junit.xml").getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == 27 + 12
    assert root.get("failures") == "0" and not root.findall(".//failure")
    assert any("invite_claim/proposed explore read-committed c=2" in c.get("name") for c in cases)
    assert any("invite_claim/recommended under lost-commit@0.5 stress read-committed c=1" in c.get("name")
               for c in cases)


def test_summary_marks_the_seed_claims(report):
    text = (report[0] / "summary.md").read_text()
    assert "| invite_claim/proposed | stress | read-committed | 8 | race in" in text
    assert "**held** invite_claim (seed 001)" in text          # exactly one UPDATE matches
    assert "**BROKEN** invite_claim (seed 001)" in text        # duplicates get 200 with the id


def test_html_stands_alone_with_matrix_claims_and_diagrams(report):
    html = (report[0] / "index.html").read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert html.count("<tr><td class=name><a href='#invite_claim'>") == 3
    assert "BROKEN</b>" in html and "HELD</b>" in html
    assert html.count("<svg class=lane") >= 2                  # original and proposed counterexamples
    assert "explore, minimized schedule" in html
    # every lane of a diagram is drawn (self-closing SVG elements must not swallow the rest)
    assert "<line x1='" in html and "class=ll/" not in html
    assert "<b id=mismatches>0</b>" in html
    # the fault matrix: the PR's claim breaks under every fault, the recommended survives all
    fm = html[html.index("<table id=faultmatrix>"):]
    fm = fm[:fm.index("</table>")]
    rows = {r.split("</td>")[0].split(">")[-1]: r for r in fm.split("<tr><td class=name>")[1:]}
    assert rows["invite_claim / proposed"].count("broken<small>") == 4
    assert rows["invite_claim / recommended"].count("survives<small>") == 4
    assert "indeterminate" in rows["invite_claim / recommended"]
    assert "&#9889; FAULT" in html                             # the faulted step in a diagram


def chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_html_renders_in_headless_chromium(report, tmp_path):
    assert chromium(), "Debian's chromium is needed (tools/deps.sh installs it)"
    out = report[0]
    shot = tmp_path / "report.png"
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    p = subprocess.run(base + ["--window-size=1280,1800", f"--screenshot={shot}", f"file://{out / 'index.html'}"],
                       capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20000, p.stderr[-2000:]
    assert "Uncaught" not in p.stderr and ":ERROR:CONSOLE" not in p.stderr, p.stderr[-2000:]
    dom = subprocess.run(base + ["--dump-dom", f"file://{out / 'index.html'}"], capture_output=True, text=True,
                         timeout=120).stdout
    assert 'id="matrix"' in dom and "invite_claim" in dom
    shutil.copy(shot, out / "report.png")       # kept beside the report for a person to look at


def test_reports_say_which_seed_sql_fails(pgrace, tmp_path):
    """The seed's own SQL that does not run on PostgreSQL, with which SQL it was: seed 002's
    constraint (DDL) and seed 004's rollback plan, in index.html and summary.md."""
    out = tmp_path / "out"
    p = pgrace.run("run", "conversation_dedup/proposed", "nullifier_submission/proposed", "--no-faults",
                   "--budget", "3", "--out", out, "-q")
    assert p.returncode == 0, p.stdout + p.stderr
    summary = (out / "summary.md").read_text()
    assert "- **FAILS** conversation_dedup/proposed: the seed's DDL: `42601 syntax error at or near \"WHERE\"`" in summary
    assert ("- **FAILS** nullifier_submission/proposed: the seed's rollback plan: `42704 constraint "
            "\"submission_nullifier_key\" of relation \"submission\" does not exist`") in summary
    html = (out / "index.html").read_text()
    assert html.count("<h3>The seed's SQL, run as written</h3>") == 2
    assert "the seed's rollback plan is rejected by PostgreSQL: <code>42704 " in html
    assert "the seed's DDL is rejected by PostgreSQL: <code>42601 " in html
    assert "<pre>ALTER TABLE &quot;submission&quot; DROP CONSTRAINT" in html
