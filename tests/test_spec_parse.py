"""Spec files (harness/spec_parse.c): PostgreSQL's specs parse as they are, pgrace's items
parse into the tree spec.h describes, and bad input is one line FILE:LINE:COL naming what is
wrong, before any server starts. The trees are read through bin/spec_dump (JSON)."""
import csv
import json
import os
import pathlib
import subprocess

import pytest

from conftest import BIN, _clean_env

DUMP = BIN.parent / "spec_dump"
PG = pathlib.Path("/work/shared/pg-isolation")
ROOT = pathlib.Path(__file__).resolve().parent.parent


def dump(path):
    p = subprocess.run([str(DUMP), str(path)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def dump_text(tmp_path, text, name="t.spec"):
    f = tmp_path / name
    f.write_bytes(text.encode() if isinstance(text, str) else text)
    return dump(f)


def parse_error(tmp_path, text, name="e.spec"):
    f = tmp_path / name
    f.write_bytes(text.encode() if isinstance(text, str) else text)
    p = subprocess.run([str(DUMP), str(f)], capture_output=True, timeout=30)
    assert p.returncode == 2, p.stdout
    err = p.stderr.decode()
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    assert not any(ord(c) < 0x20 for c in err[:-1]), repr(err)       # never a raw control byte
    return err[:-1].replace(str(f), "FILE")


def manifest():
    with open(PG / "MANIFEST.tsv") as f:
        return {r["name"]: r for r in csv.DictReader(f, delimiter="\t")}


@pytest.mark.skipif(not PG.exists(), reason="no conformance data")
def test_every_postgresql_spec_parses_with_its_manifest_counts():
    rows = manifest()
    specs = sorted(PG.glob("specs/*.spec"))
    assert len(specs) == 51
    for spec in specs:
        t = dump(spec)
        m = rows[spec.stem]
        assert len(t["sessions"]) == int(m["sessions"]), spec
        assert sum(len(s["steps"]) for s in t["sessions"]) == int(m["steps"]), spec
        perms = "all" if not t["permutations"] else str(len(t["permutations"]))
        assert perms == m["permutations"], spec
        blockers = any(ps["blockers"] for pm in t["permutations"] for ps in pm["steps"])
        assert blockers == (m["blocking_markers"] == "yes"), spec
        for pm in t["permutations"]:
            for ps in pm["steps"]:
                step = t["sessions"][ps["session"]]["steps"][ps["step"]]
                assert step["name"] == ps["name"] and step["used"]


def test_isolationtester_trimming_quotes_comments_and_blockers(tmp_path):
    t = dump_text(tmp_path, (
        "# a comment { not a block }\n"
        "setup { CREATE TABLE t (a int); }\n"
        "setup\n{\n  INSERT INTO t VALUES (1);\n}\n"
        "teardown { DROP TABLE t; }\n"
        'session "s ""1"""   # comment after a name\n'
        "setup { BEGIN; }\n"
        'step "a""b" {\t SELECT 1;  \n  }\n'
        "step s1b{COMMIT;}\n"
        "session s2\n"
        "step s2a { SELECT '#not a comment' }\n"
        "step s2b { SELECT 2 }\n"
        'permutation "a""b"(s2a notices 0, *) s2a s1b\n'
        "permutation s2a(s1b) s1b\n"))
    assert t["setups"] == ["CREATE TABLE t (a int);", "\n  INSERT INTO t VALUES (1);\n"]
    assert t["teardown"] == "DROP TABLE t;"
    s1, s2 = t["sessions"]
    assert s1["name"] == 's "1"' and s1["setup"] == "BEGIN;"
    # leading blanks after '{' and trailing ones before '}' go; the newline before them stays
    assert s1["steps"][0] == {"name": 'a"b', "sql": "SELECT 1;  \n", "pos": [10, 6], "session": 0, "used": True}
    assert s1["steps"][1]["sql"] == "COMMIT;"
    assert s2["steps"][0]["sql"] == "SELECT '#not a comment'"
    assert not s2["steps"][1]["used"]
    p1, p2 = t["permutations"]
    b = p1["steps"][0]["blockers"]
    assert b[0] == {"step": "s2a", "notices": 0, "by_notices": True, "session": 1, "index": 0}
    assert b[1] == {"step": None, "notices": 0, "by_notices": False, "session": -1, "index": -1}
    assert p2["steps"][0]["blockers"] == [{"step": "s1b", "notices": 0, "by_notices": False, "session": 0, "index": 1}]
    assert [ps["name"] for ps in p1["steps"]] == ['a"b', "s2a", "s1b"]


def test_braced_session_and_pgrace_words_as_names(tmp_path):
    t = dump_text(tmp_path, (
        "session s1 {\n  setup { BEGIN; }\n  step case { SELECT 1 }\n  step trial { SELECT 2 }\n"
        "  teardown { COMMIT; }\n}\n"
        "permutation case trial\n"))
    assert [s["name"] for s in t["sessions"][0]["steps"]] == ["case", "trial"]
    assert [ps["name"] for ps in t["permutations"][0]["steps"]] == ["case", "trial"]
    assert t["sessions"][0]["teardown"] == "COMMIT;"


PGRACE_SPEC = """
# invite_claim, as a spec
setup {
  CREATE TABLE invite (id bigserial PRIMARY KEY, token text UNIQUE, used_at timestamptz);
  CREATE TABLE submission (id bigserial PRIMARY KEY, invite_id bigint NOT NULL);
}
trial { INSERT INTO invite (token) VALUES ('inv-' || :key); }

variant original {
  step find { SELECT id, used_at IS NOT NULL AS used FROM invite WHERE token = 'inv-' || :key }
    if rows = 0 -> 400
    if used -> 409
  step mark { UPDATE invite SET used_at = now() WHERE id = :find.id }
  step create { INSERT INTO submission (invite_id) VALUES (:find.id) RETURNING id }
    -> 201 id id
}
variant proposed kind proposed {
  step claim { UPDATE invite SET used_at = now() WHERE token = 'inv-' || :key AND used_at IS NULL RETURNING id }
    if rows = 0 -> goto lookup
    if error 40P01 -> retry
    if error -> retry 3
  step create { INSERT INTO submission (invite_id) VALUES (:claim.id) RETURNING id } -> 201 id id
  step lookup { SELECT s.id, i.used_at FROM invite i LEFT JOIN submission s ON s.invite_id = i.id }
    if not id -> 409
    if id != 0 -> 200 id id
    if used_at = "never" -> next
    if "rows" >= -5 -> next
}
variant recommended { step one { SELECT 1 } }
case double_submit weight 8
case missing weight 1 { }
case retry sends 2 weight 1
invariant "exactly one Submission per invite" { SELECT invite_id FROM submission GROUP BY 1 HAVING count(*) > 1 }
invariant "answers" statuses 200 201 409
invariant "one 201" exactly one 201
invariant "same submission" same id
expect original race
expect proposed race at read-committed at serializable sessions 8 case double_submit
expect recommended safe
case late
"""


def test_pgrace_items_into_the_tree(tmp_path):
    t = dump_text(tmp_path, PGRACE_SPEC, name="Invite-Claim.v2.spec")
    assert t["name"] == "invite_claim_v2"
    assert t["trial"] == "INSERT INTO invite (token) VALUES ('inv-' || :key);"
    assert [(v["name"], v["kind"], v["kind_given"]) for v in t["variants"]] == [
        ("original", "original", False), ("proposed", "proposed", True), ("recommended", "recommended", False)]
    find = t["variants"][0]["steps"][0]
    assert find["rules"][0] | {"pos": None} == {"cond": "rows", "op": "=", "number": 0, "outcome": "status",
                                                 "status": 400, "id": None, "column": None, "pos": None}
    assert find["rules"][1]["cond"] == "true" and find["rules"][1]["column"] == "used"
    create = t["variants"][0]["steps"][2]["rules"][0]
    assert create["cond"] == "always" and create["status"] == 201 and create["id"] == "id"
    claim, _, lookup = t["variants"][1]["steps"]
    assert claim["rules"][0]["outcome"] == "goto" and claim["rules"][0]["target_step"] == 2
    assert claim["rules"][1] | {"pos": None} == {"cond": "error", "value": "40P01", "outcome": "retry",
                                                  "attempts": 10, "column": None, "pos": None}
    assert claim["rules"][2]["value"] is None and claim["rules"][2]["attempts"] == 3
    r = lookup["rules"]
    assert (r[0]["cond"], r[0]["column"], r[0]["status"]) == ("false", "id", 409)
    assert (r[1]["cond"], r[1]["op"], r[1]["numeric"], r[1]["number"], r[1]["value"]) == ("compare", "!=", True, 0, "0")
    assert (r[2]["op"], r[2]["numeric"], r[2]["value"], r[2]["outcome"]) == ("=", False, "never", "next")
    assert (r[3]["column"], r[3]["op"], r[3]["number"]) == ("rows", ">=", -5)
    assert t["cases"] == [
        {"name": "double_submit", "weight": 8, "sends": 1, "trial": None},
        {"name": "missing", "weight": 1, "sends": 1, "trial": ""},
        {"name": "retry", "weight": 1, "sends": 2, "trial": None},
        {"name": "late", "weight": 1, "sends": 1, "trial": None}]
    assert [(i["name"], i["kind"], i["statuses"]) for i in t["invariants"]] == [
        ("exactly one Submission per invite", "sql", []), ("answers", "statuses", [200, 201, 409]),
        ("one 201", "exactly_one", [201]), ("same submission", "same_id", [])]
    assert t["expects"] == [
        {"variant": "original", "verdict": "race", "levels": [], "sessions": 0, "case": None},
        {"variant": "proposed", "verdict": "race", "levels": ["read-committed", "serializable"], "sessions": 8,
         "case": "double_submit"},
        {"variant": "recommended", "verdict": "safe", "levels": [], "sessions": 0, "case": None}]


def test_ambiguities_resolve_as_documented(tmp_path):
    # an expect's trailing `case X` is the expect's when X is a declared case, else a new case item
    t = dump_text(tmp_path, "variant v { step a { x } }\ncase c1\nexpect v race case c1\nexpect v safe\ncase c2\n")
    assert [x["case"] for x in t["expects"]] == ["c1", None] and [c["name"] for c in t["cases"]] == ["c1", "c2"]
    # a permutation ends at an item word unless a step of that name was declared
    t = dump_text(tmp_path, "session s\nstep a { x }\nstep b { y }\npermutation a b\ncase c1\n")
    assert [ps["name"] for ps in t["permutations"][0]["steps"]] == ["a", "b"] and t["cases"][0]["name"] == "c1"


def test_names_and_hash(tmp_path):
    body = "session s\nstep a { x }\n"
    t = dump_text(tmp_path, body, name="Ünïcode-and spaces.SPEC.spec")
    assert t["name"] == "__n__code_and_spaces_spec"
    t = dump_text(tmp_path, body, name="x" * 40 + ".spec")
    assert t["name"] == "x" * 32
    data = body.encode()
    h = 1469598103934665603
    for b in data:
        h = ((h ^ b) * 1099511628211) % 2**64
    assert t["hash"] == f"{h:016x}"


ERRORS = [
    ("session s1\nstep a { x }\npermutation a b\n", "FILE:3:15: unknown step 'b' in the permutation"),
    ("session s1\nstep a { x }\nsession s1\nstep b { y }\n", "FILE:3:9: duplicate session name 's1' (first at line 1)"),
    ("session s1\nstep a { x }\nsession s2\nstep a { y }\n", "FILE:4:6: duplicate step name 'a' (first at line 2)"),
    ("variant v { step a { x } }\nvariant v { step a { x } }\n", "FILE:2:9: duplicate variant name 'v' (first at line 1)"),
    ("case c1\ncase c1 weight 2\n", "FILE:2:6: duplicate case name 'c1' (first at line 1)"),
    ('invariant "i" same id\ninvariant "i" same id\n', 'FILE:2:11: duplicate invariant "i" (first at line 1)'),
    ("variant v { step a { x } step a { y } }\n", "FILE:1:31: duplicate step name 'a' in variant v (first at line 1)"),
    ("variant v {\n step a { SELECT 1 } if rows = 0 -> goto nowhere\n}\n", "FILE:2:42: goto 'nowhere': variant v has no such step"),
    ("variant v { step a { x } if rows = 0 -> 700 }\n", "FILE:1:41: bad number '700': an HTTP status must be an integer in 100..599"),
    ("case c weight 0\n", "FILE:1:15: bad number '0': weight must be an integer in 1..1000000"),
    ("case c sends 1x\n", "FILE:1:14: bad number '1x': sends must be an integer in 1..100"),
    ("session s1\nstep a { x }\nsession s2\nstep b { y }\npermutation a(b notices 99999999999) b\n",
     "FILE:5:25: bad number '99999999999': notices must be an integer in 0..2147483647"),
    ("variant v { step a { x } if rows > 99999999999999999999 -> 200 }\n",
     "FILE:1:36: bad number '99999999999999999999': rows must be an integer in 0..9223372036854775807"),
    ("session s1\nstep a { x }\nstep b { y", "FILE:3:8: unterminated SQL block (no '}' after this '{')"),
    ('session "s1\nstep a { x }\n', "FILE:1:9: unterminated quoted name"),
    ('session "s1', "FILE:1:9: unterminated quoted name"),
    ("session s1\nstep a { x \x01 }\n", "FILE:2:12: a byte that is not text (0x01): a spec file is UTF-8 text without control characters"),
    (b"session s1\nstep a { \xc3\x28 }\n", "FILE:2:10: invalid UTF-8 (byte 0xc3): a spec file is UTF-8 text"),
    ("session s1\x1b[31m\n", "FILE:1:11: a byte that is not text (0x1b): a spec file is UTF-8 text without control characters"),
    (b"session s1\nstep \0a { x }\n", "FILE:2:6: a byte that is not text (0x00): a spec file is UTF-8 text without control characters"),
    ('session "a\tb"\nstep a { x }\nsession "a\tb"\nstep b { y }\n', "FILE:3:9: duplicate session name 'a\\x09b' (first at line 1)"),
    ("session s1\nstep a { x }\npermutation a(a)\n", "FILE:3:15: step 'a' cannot block on 'a': a step of its own session"),
    ("session s1\nstep a { x }\nsession s2\nstep b { y }\npermutation a(b)\n",
     "FILE:5:15: blocking step 'b' of step 'a' is not in this permutation"),
    ("session s1\nstep setup { x }\n", "FILE:2:6: expected a step name, got the reserved word 'setup' (quote it to use it as a name)"),
    ("step a { x }\n", "FILE:1:1: expected setup, teardown, session, permutation, trial, variant, client, http, app, model, case, invariant or expect, got 'step'"),
    ("session s1\nstep a { x }\npermutation\n", "FILE:4:1: expected a step name after 'permutation', got end of file"),
    ("setup { x }\nteardown { y }\nteardown { z }\n", "FILE:3:1: a second teardown block (a spec has at most one)"),
    ("trial { x }\ntrial { y }\n", "FILE:2:1: a second trial block (a spec has at most one)"),
    ("session s1 step a { x } ? \n", "FILE:1:25: unexpected character '?'"),
    ("session s1\n", "FILE:2:1: session s1 needs at least one step, got end of file"),
    ("session s { step a { x }\n", "FILE:2:1: expected '}' to close the session, got end of file"),
    ("invariant noquote same id\n", "FILE:1:11: expected the invariant's name, \"quoted\", got 'noquote'"),
    ('session s1\nstep "" { x }\n', "FILE:2:6: empty quoted name"),
    ("variant V { step a { x } }\n", "FILE:1:9: variant name 'V': 1 to 20 of a-z, 0-9 and _"),
    ("variant v { step a { x } if error 4x001 -> 500 }\n",
     "FILE:1:35: bad SQLSTATE '4x001': five characters of 0-9 and A-Z (or none: any error)"),
    ("variant v { step a { x } if rows 1 -> 500 }\n", "FILE:1:34: expected a comparison (= != < > <= >=) after 'rows', got '1'"),
    ("variant v { step a { x } if ok 200 }\n", "FILE:1:32: expected '->' after the condition, got '200'"),
    ("variant v { step a { x } -> maybe }\n",
     "FILE:1:29: expected an outcome (an HTTP status, next, goto STEP or retry), got 'maybe'"),
    ("expect nosuch race\n", "FILE:1:8: expect names no variant of this spec: 'nosuch'"),
    ("variant v { step a { x } }\nexpect v race at read-uncommitted\n",
     "FILE:2:18: unknown isolation level 'read-uncommitted' (read-committed, repeatable-read, serializable)"),
    ("variant v { step a { x } }\nexpect v sometimes\n", "FILE:2:10: expected race or safe, got 'sometimes'"),
    ("http v { POST no-slash }\n", "FILE:1:8: http 'v': the request line 'POST no-slash' is not `METHOD /path` (e.g. POST /invites/:key/claim)"),
    ("http v {\n  POST /x\n  not a header\n}\n", "FILE:1:8: http 'v': 'not a header' is not a header `Name: value` (a blank line comes before the body)"),
    ("http v {\n  POST /x\n  Content-Length: 3\n}\n", "FILE:1:8: http 'v': pgrace writes the Content-Length header itself"),
    ("http v {\n  POST /x\n\n  {\"a\": 1\n", "FILE:1:8: unterminated request block (no '}' matching this '{')"),
    ("http v { }\n", "FILE:1:8: http 'v': an empty request (write `METHOD /path`)"),
    ("http v id 3 { GET /x }\n", "FILE:1:11: expected the id's path in the JSON answer (`id submission.id`, `id \"items.0.id\"`), got '3'"),
    ("http v\n", "FILE:2:1: expected 'id', 'setup' or a request block '{ METHOD /path ... }', got end of file"),
    ("app { }\n", "FILE:1:5: app: an empty command"),
    ("app { a }\napp { b }\n", "FILE:2:1: a second app block (a spec has at most one)"),
    ("model a\nmodel b\n", "FILE:2:1: a second model item (a spec models at most one scenario)"),
]


def test_http_items_into_the_tree(tmp_path):
    t = dump_text(tmp_path, """model invite_claim
app { node app.js --port "$PORT" }
http claim kind proposed id "submission.0.id" setup { CREATE INDEX i ON t (k); } {
  POST /invites/:key/claim HTTP/1.1
  Content-Type: application/json; charset=utf-8
  X-Session:   :session

  {"token": ":key", "nested": {"brace": "}"}, "list": [1, {"a": 2}]}
}
{ DELETE /invites/:key }
""")
    assert t["model"] == "invite_claim" and t["app"] == 'node app.js --port "$PORT"'
    v = t["variants"][0]
    assert v["name"] == "claim" and v["kind"] == "proposed" and v["steps"] == []
    assert v["id_path"] == "submission.0.id" and v["setup"] == "CREATE INDEX i ON t (k);"
    r0, r1 = v["requests"]
    assert (r0["method"], r0["path"]) == ("POST", "/invites/:key/claim")
    assert r0["headers"] == ["Content-Type: application/json; charset=utf-8", "X-Session:   :session"]
    assert r0["body"] == '{"token": ":key", "nested": {"brace": "}"}, "list": [1, {"a": 2}]}'
    assert (r1["method"], r1["path"], r1["headers"], r1["body"]) == ("DELETE", "/invites/:key", [], None)


@pytest.mark.parametrize("text,message", ERRORS)
def test_bad_input_is_one_line_with_its_position(tmp_path, text, message):
    assert parse_error(tmp_path, text) == message


def test_long_and_hostile_names_are_cut_and_escaped(tmp_path):
    err = parse_error(tmp_path, "session s\nstep a { x }\npermutation " + "\u00e9" * 100 + "\n")
    assert err.startswith("FILE:3:13: unknown step '" + "\u00e9" * 24 + "...'")
    f = tmp_path / "a\x1bb.spec"
    f.write_text("session s\n")
    p = subprocess.run([str(DUMP), str(f)], capture_output=True, timeout=30)
    assert p.returncode == 2 and b"\x1b" not in p.stderr and b"a\\x1bb.spec:2:1:" in p.stderr


def test_isolation_bad_input_exits_2_before_any_server(tmp_path, private_tmp):
    good = tmp_path / "good.spec"
    good.write_text("session s\nstep a { SELECT 1 }\n")
    bad = tmp_path / "bad.spec"
    bad.write_text("session s\nstep a { SELECT 1 }\npermutation a nope\n")
    env = _clean_env(private_tmp)
    for argv, message in [
        ([good, bad], f"pgrace: {bad}:3:15: unknown step 'nope' in the permutation\n"),
        ([good, tmp_path / "missing.spec"], f"pgrace: {tmp_path}/missing.spec: cannot read: No such file or directory\n"),
        ([good, good, "--expected", good], "pgrace: --expected names one file but 2 specs were given (give a directory of NAME.out)\n"),
        ([good, "--expected", tmp_path], f"pgrace: expected output of {good}: cannot read {tmp_path}/good.out: No such file or directory\n"),
        ([], "pgrace: isolation needs at least one spec FILE (see 'pgrace --help')\n"),
    ]:
        p = subprocess.run([str(BIN), "isolation", *map(str, argv)], capture_output=True, text=True, env=env, timeout=60)
        assert (p.returncode, p.stdout, p.stderr) == (2, "", message)
    assert not list(private_tmp.iterdir()), "no server may start for bad input"
    nosession = tmp_path / "nosession.spec"
    nosession.write_text("variant v { step a { x } }\n")
    p = subprocess.run([str(BIN), "isolation", str(nosession)], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and "no session" in p.stderr and p.stderr.count("\n") == 1
    huge = tmp_path / "huge.spec"
    huge.write_text("".join(f"session s{i}\nstep a{i}x {{ x }}\nstep a{i}y {{ x }}\nstep a{i}z {{ x }}\n" for i in range(6)))
    p = subprocess.run([str(BIN), "isolation", str(huge)], capture_output=True, text=True, env=env, timeout=60)
    assert p.returncode == 2 and "lists no permutation and its steps have more than 100000" in p.stderr
    assert not list(private_tmp.iterdir())
