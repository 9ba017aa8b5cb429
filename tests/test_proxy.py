"""pgrace proxy: the wire door, with real clients (psql, pgbench, psycopg2, node-postgres),
passwords relayed, hostile clients, and faults at the wire as a client sees them."""
import json
import os
import pathlib
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time

import psycopg2
import psycopg2.errors
import pytest

from conftest import BIN, ROOT, stop_server_now

NODE_DIR = ROOT / "tests" / "node"


class Proxy:
    """`pgrace proxy` running in the background; stderr (where to connect, the trace) in a file."""

    def __init__(self, pgrace, tmp, *args, dsn=None, env=None):
        self.log = tmp / f"proxy-{time.monotonic_ns()}.err"
        self.dsn = dsn or pgrace.dsn
        argv = [pgrace.binary, "proxy", "--trace", *map(str, args), "--dsn", self.dsn]
        self.errf = open(self.log, "w")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.errf, env=env or pgrace.env())
        deadline = time.time() + 60
        while time.time() < deadline and "DATABASE_URL=" not in self.text():
            assert self.proc.poll() is None, self.text()
            time.sleep(0.05)
        m = re.search(r"PGHOST=(\S+) PGPORT=(\d+)", self.text())
        assert m, self.text()
        self.host, self.port = m.group(1), int(m.group(2))
        self.url = re.search(r"DATABASE_URL=(\S+)", self.text()).group(1)

    def text(self):
        return self.log.read_text()

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "DATABASE_URL"}
        env.update(PGHOST=self.host, PGPORT=str(self.port), PGUSER="pgrace", PGDATABASE="postgres")
        env.update(extra)
        return env

    def connect(self, **kw):
        args = dict(host=self.host, port=self.port, user="pgrace", dbname="postgres", application_name="pgrace-test")
        args.update(kw)
        return psycopg2.connect(**args)

    def wait_for(self, pattern, seconds=10):
        """The trace once it holds pattern (steps are traced just after their answer is relayed)."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            text = self.text()
            if re.search(pattern, text, re.M):
                return text
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in the proxy's output:\n{self.text()[-3000:]}")

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(30)
        finally:
            self.errf.close()
        return rc


@pytest.fixture(scope="module")
def proxy(pgrace, tmp_path_factory):
    px = Proxy(pgrace, tmp_path_factory.mktemp("proxy"))
    yield px
    assert px.stop() == 0, px.text()[-3000:]
    assert not pathlib.Path(px.host).exists(), "the socket directory was left behind"


def admin(pgrace):
    c = psycopg2.connect(pgrace.dsn)
    c.autocommit = True
    return c


def backends(pgrace, app):
    with admin(pgrace) as c, c.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app,))
        return cur.fetchone()[0]


def wait_no_backends(pgrace, app, seconds=15):
    deadline = time.time() + seconds
    while time.time() < deadline:
        n = backends(pgrace, app)
        if n == 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"{n} server connections of {app} still open after {seconds} s")


# ---- a client that speaks the protocol by hand ----

def msg(t, body=b""):
    return t + struct.pack("!I", len(body) + 4) + body


def startup_packet(user="pgrace", db="postgres", app="pgrace-raw"):
    body = struct.pack("!I", 196608)
    for k, v in (("user", user), ("database", db), ("application_name", app)):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


class Raw:
    def __init__(self, proxy, tcp=False):
        if tcp:
            self.s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        else:
            self.s = socket.socket(socket.AF_UNIX)
            self.s.settimeout(10)
            self.s.connect(f"{proxy.host}/.s.PGSQL.{proxy.port}")
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def read(self, until=b"Z", count=1):
        """Messages up to the count-th message of a type in until; (messages, closed)."""
        out, seen = [], 0
        while True:
            while len(self.buf) >= 5:
                n = struct.unpack("!I", self.buf[1:5])[0]
                if len(self.buf) < 1 + n:
                    break
                m = (self.buf[:1], self.buf[5:1 + n])
                self.buf = self.buf[1 + n:]
                out.append(m)
                if m[0] in until:
                    seen += 1
                    if seen == count:
                        return out, False
            try:
                chunk = self.s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                chunk = b""
            if not chunk:
                return out, True
            self.buf += chunk

    def login(self):
        self.send(startup_packet())
        msgs, closed = self.read()
        assert not closed and msgs[-1] == (b"Z", b"I"), msgs
        return msgs

    def close(self):
        self.s.close()


def error_fields(body):
    return {f[:1]: f[1:].decode() for f in body.split(b"\0") if f}


def expect_error_then_close(raw, code):
    msgs, closed = raw.read(until=b"")
    errors = [error_fields(b) for t, b in msgs if t == b"E"]
    assert errors and errors[0][b"C"] == code and errors[0][b"S"] == "FATAL", msgs
    assert closed


# ---- real clients ----

def test_psql_steps_and_trace(proxy):
    p = subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1",
                        "-c", "SELECT 40 + 2 AS answer",
                        "-c", "/* pgrace:count invites */ SELECT count(*) FROM pg_class WHERE relname = 'nope'"],
                       capture_output=True, text=True, env=proxy.env(), timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["42", "0"]
    proxy.wait_for(r"^S\d+ +SELECT +00000 rows=1 ")
    proxy.wait_for(r"^S\d+ +count invites +00000 rows=1 ")


def test_psql_errors_and_copy_both_ways(proxy):
    e = proxy.env()
    setup = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-c",
                            "DROP TABLE IF EXISTS copy_t; CREATE TABLE copy_t (id int PRIMARY KEY, v text)"],
                           capture_output=True, text=True, env=e, timeout=60)
    assert setup.returncode == 0, setup.stderr
    rows = "".join(f"{i}\tv{i}\n" for i in range(1, 1001))
    p = subprocess.run(["psql", "-X", "-v", "ON_ERROR_STOP=1", "-c", "COPY copy_t FROM STDIN"], input=rows,
                       capture_output=True, text=True, env=e, timeout=60)
    assert p.returncode == 0 and "COPY 1000" in p.stdout, p.stderr
    p = subprocess.run(["psql", "-X", "-c", "COPY copy_t TO STDOUT"], capture_output=True, text=True, env=e, timeout=60)
    assert p.returncode == 0 and p.stdout == rows
    p = subprocess.run(["psql", "-X", "-c", "INSERT INTO copy_t VALUES (1, 'again')"], capture_output=True, text=True,
                       env=e, timeout=60)
    assert p.returncode == 1 and "copy_t_pkey" in p.stderr
    proxy.wait_for(r"COPY copy_t +00000 rows=1000 ")
    proxy.wait_for(r"INSERT INTO copy_t +23505 rows=0 .*\(constraint copy_t_pkey\)")


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_through_the_proxy(proxy, mode):
    e = proxy.env()
    if mode == "simple":          # its own tables, initialised through the proxy (COPY included)
        p = subprocess.run(["pgbench", "-i", "-s", "1", "-q"], capture_output=True, text=True, env=e, timeout=120)
        assert p.returncode == 0, p.stderr
    p = subprocess.run(["pgbench", "-M", mode, "-c", "4", "-j", "2", "-T", "2"], capture_output=True, text=True,
                       env=e, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    done = int(re.search(r"number of transactions actually processed: (\d+)", p.stdout).group(1))
    assert done > 50, p.stdout
    assert "number of failed transactions: 0 " in p.stdout, p.stdout


def test_psycopg2_queries_errors_notices_notify_cancel(proxy):
    c = proxy.connect()
    c.autocommit = True
    cur = c.cursor()
    cur.execute("SELECT %s::int * 2, %s::text", (21, "it's"))
    assert cur.fetchone() == (42, "it's")
    cur.execute("DROP TABLE IF EXISTS py_t; CREATE TABLE py_t (id int PRIMARY KEY)")
    c.autocommit = False
    cur.execute("INSERT INTO py_t VALUES (1)")
    c.commit()
    with pytest.raises(psycopg2.errors.UniqueViolation) as e:
        cur.execute("INSERT INTO py_t VALUES (1)")
    assert e.value.pgcode == "23505" and e.value.diag.constraint_name == "py_t_pkey"
    c.rollback()
    c.autocommit = True
    cur.execute("DO $$BEGIN RAISE NOTICE 'hello %', 7; END$$")
    assert any("hello 7" in n for n in c.notices)
    cur.execute("SET application_name = 'pgrace-renamed'")
    assert c.get_parameter_status("application_name") == "pgrace-renamed"
    # NOTIFY from another connection reaches a listener between its statements
    other = proxy.connect()
    other.autocommit = True
    cur.execute("LISTEN pgrace_ch")
    other.cursor().execute("NOTIFY pgrace_ch, 'payload 1'")
    assert select.select([c], [], [], 5)[0]
    c.poll()
    assert [n.payload for n in c.notifies] == ["payload 1"]
    # a cancel request through the proxy reaches the right backend
    timer = threading.Timer(0.5, c.cancel)
    timer.start()
    t0 = time.time()
    with pytest.raises(psycopg2.errors.QueryCanceled):
        cur.execute("SELECT pg_sleep(20)")
    assert time.time() - t0 < 5
    cur.execute("SELECT 1")                     # the connection goes on
    assert cur.fetchone() == (1,)
    # a named (server-side) cursor: DECLARE and FETCH as steps
    c.autocommit = False
    named = c.cursor("pgrace_cursor")
    named.itersize = 10
    named.execute("SELECT g FROM generate_series(1, 35) g")
    assert [r[0] for r in named] == list(range(1, 36))
    c.commit()
    other.close()
    c.close()


def test_psycopg2_over_tcp_and_the_database_url(proxy):
    c = psycopg2.connect(proxy.url, application_name="pgrace-test")
    with c.cursor() as cur:
        cur.execute("SELECT inet_client_addr() IS NULL")   # the proxy reaches the server by its unix socket
        assert cur.fetchone() == (True,)
    c.close()


def node_client(proxy, **env):
    assert (NODE_DIR / "node_modules" / "pg").is_dir(), "run `npm ci --prefix tests/node` (make test does)"
    p = subprocess.run(["node", str(NODE_DIR / "client.js")], capture_output=True, text=True,
                       env=proxy.env(**env), timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_node_postgres_through_the_proxy(proxy):
    for extra in ({}, {"DATABASE_URL": proxy.url}):
        out = node_client(proxy, **extra)
        assert out["add"] == 42
        assert out["duplicate"] == "23505" and out["constraint"] == "node_t_pkey"
        assert out["count"] == 2 and out["max"] == "b"
        assert out["pool"] == list(range(8))
    proxy.wait_for(r"^S\d+ +add one +00000 rows=1 ")


def test_pipelined_batches_come_back_in_order(proxy):
    raw = Raw(proxy)
    raw.login()
    raw.send(msg(b"Q", b"SELECT 1\0") + msg(b"Q", b"SELECT 2; SELECT 3\0"))
    msgs, closed = raw.read(count=2)
    assert not closed
    assert [b[-1:] for t, b in msgs if t == b"D"] == [b"1", b"2", b"3"]
    # extended: two batches, each Parse/Bind/Execute/Sync, sent at once
    def batch(v):
        return (msg(b"P", b"\0SELECT $1::int\0\0\0") + msg(b"B", b"\0\0\0\0\0\1" + struct.pack("!I", len(v)) + v + b"\0\0")
                + msg(b"E", b"\0\0\0\0\0") + msg(b"S"))
    raw.send(batch(b"10") + batch(b"20"))
    msgs, closed = raw.read(count=2)
    assert not closed
    assert [b[-2:] for t, b in msgs if t == b"D"] == [b"10", b"20"]
    # copy data sent right behind its COPY, before the server asked for it
    raw.send(msg(b"Q", b"DROP TABLE IF EXISTS pipe_t; CREATE TABLE pipe_t (v int)\0"))
    assert not raw.read()[1]
    raw.send(msg(b"Q", b"COPY pipe_t FROM STDIN\0") + msg(b"d", b"1\n2\n") + msg(b"d", b"3\n") + msg(b"c")
             + msg(b"Q", b"SELECT sum(v) FROM pipe_t\0"))
    msgs, closed = raw.read(count=2)
    assert not closed and (b"C", b"COPY 3\0") in msgs and [b[-1:] for t, b in msgs if t == b"D"] == [b"6"], msgs
    # a flushed batch: Parse, Describe, Flush, then the rest after its answer
    raw.send(msg(b"P", b"\0SELECT 7\0\0\0") + msg(b"D", b"S\0") + msg(b"H"))
    msgs, closed = raw.read(until=b"T")
    assert not closed and [t for t, b in msgs] == [b"1", b"t", b"T"], msgs
    raw.send(msg(b"B", b"\0\0\0\0\0\0\0\0") + msg(b"E", b"\0\0\0\0\0") + msg(b"S"))
    msgs, closed = raw.read()
    assert not closed and [t for t, b in msgs] == [b"2", b"D", b"C", b"Z"], msgs
    raw.send(msg(b"X"))
    assert raw.read(until=b"")[1]
    raw.close()


# ---- passwords: relayed, never seen ----

def test_password_methods_relayed_and_never_shown(pgrace, proxy):
    secret = "s3cret-Pgrace-" + str(os.getpid())
    roles = [("pgrace_scram", "scram-sha-256", "scram-sha-256"), ("pgrace_md5", "md5", "md5"),
             ("pgrace_clear", "password", "scram-sha-256")]
    a = admin(pgrace)
    with a.cursor() as cur:
        for role, _, enc in roles:
            cur.execute(f"DROP ROLE IF EXISTS {role}")
            cur.execute(f"SET password_encryption = '{enc}'")
            cur.execute(f"CREATE ROLE {role} LOGIN PASSWORD %s", (secret,))
        cur.execute("SHOW hba_file")
        hba = pathlib.Path(cur.fetchone()[0])
    lines = [f"local all {role} {method}\n" for role, method, _ in roles]
    text = hba.read_text()
    if lines[0] not in text:
        hba.write_text("".join(lines) + text)
    with a.cursor() as cur:
        cur.execute("SELECT pg_reload_conf()")
    a.close()
    time.sleep(0.5)
    for role, method, _ in roles:
        with pytest.raises(psycopg2.OperationalError) as e:
            proxy.connect(user=role, password="wrong")
        assert "password authentication failed" in str(e.value), (method, str(e.value))
        with pytest.raises(psycopg2.OperationalError):
            proxy.connect(user=role)             # no password: the server asks for one
        for via in ("unix", "tcp"):
            c = proxy.connect(user=role, password=secret) if via == "unix" else \
                psycopg2.connect(proxy.url.replace("pgrace@", f"{role}@"), password=secret)
            with c.cursor() as cur:
                cur.execute("SELECT current_user")
                assert cur.fetchone() == (role,), (method, via)
            c.close()
    p = subprocess.run(["psql", "-X", "-At", "-c", "SELECT current_user"], capture_output=True, text=True,
                       env=proxy.env(PGUSER="pgrace_scram", PGPASSWORD=secret), timeout=60)
    assert p.returncode == 0 and p.stdout.strip() == "pgrace_scram", p.stderr
    proxy.wait_for(r"^S\d+ +SELECT +00000 rows=1 ")
    time.sleep(0.2)
    assert secret not in proxy.text()


# ---- hostile clients ----

def test_hostile_clients_get_an_error_or_a_close(pgrace, proxy):
    good = proxy.connect(application_name="pgrace-good")
    good.autocommit = True

    def still_good():
        with good.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)

    cases = [
        ("garbage startup", b"\x00\x00\x00\x03hello", "08P01"),
        ("startup length 2^31", struct.pack("!I", 2 ** 31) + b"\x00\x03\x00\x00", "08P01"),
        ("protocol 2.0", struct.pack("!II", 8, 2 << 16), "0A000"),
        ("startup without its terminator", struct.pack("!II", 13, 196608) + b"user\0", "08P01"),
    ]
    for name, data, code in cases:
        raw = Raw(proxy)
        raw.send(data)
        expect_error_then_close(raw, code)
        raw.close()
        still_good()
    after_login = [
        ("message length 2^31", b"Q" + struct.pack("!I", 2 ** 31) + b"SELECT 1", "08P01"),
        ("message length 3", b"Q" + struct.pack("!I", 3), "08P01"),
        ("unknown message type", msg(b"?", b"x"), "08P01"),
        ("password message after login", msg(b"p", b"secret\0"), "08P01"),
        ("query without its NUL", msg(b"Q", b"SELECT 1"), "08P01"),
        ("bind with a negative count", msg(b"B", b"\0\0\xff\xff"), "08P01"),
        ("sync with a body", msg(b"S", b"x"), "08P01"),
    ]
    for name, data, code in after_login:
        raw = Raw(proxy)
        raw.login()
        raw.send(data)
        expect_error_then_close(raw, code)
        raw.close()
        still_good()
    # truncated messages and clients that leave: a close, nothing left behind
    leavers = [
        lambda r: r.send(startup_packet()[:7]),
        lambda r: (r.login(), r.send(b"Q\x00\x00\x01\x00SELECT")),
        lambda r: (r.login(), r.send(b"Q" + struct.pack("!I", 2 ** 30) + b"SELECT")),   # 1 GiB announced
        lambda r: (r.login(), r.send(msg(b"Q", b"SELECT pg_sleep(1)\0"))),               # mid-statement
        lambda r: (r.login(), r.send(msg(b"P", b"\0SELECT 1\0\0\0") + msg(b"H"))),      # mid-batch
    ]
    for leave in leavers:
        raw = Raw(proxy)
        leave(raw)
        time.sleep(0.05)
        raw.close()
        still_good()
    # a truncated message on a client that stays is waited for, and the rest completes it
    raw = Raw(proxy)
    raw.login()
    q = msg(b"Q", b"SELECT 5\0")
    raw.send(q[:4])
    time.sleep(0.2)
    raw.send(q[4:])
    msgs, closed = raw.read()
    assert not closed and [b[-1:] for t, b in msgs if t == b"D"] == [b"5"]
    raw.close()
    wait_no_backends(pgrace, "pgrace-raw")
    still_good()
    good.close()
    assert proxy.proc.poll() is None
    assert "ERROR: AddressSanitizer" not in proxy.text()


def test_ssl_and_gssenc_requests_answered_no(proxy):
    raw = Raw(proxy, tcp=True)
    raw.send(struct.pack("!II", 8, 80877104))
    assert raw.s.recv(1) == b"N"
    raw.send(struct.pack("!II", 8, 80877103))
    assert raw.s.recv(1) == b"N"
    raw.login()
    raw.close()
    for mode in ("prefer", "allow", "disable"):
        c = psycopg2.connect(proxy.url, sslmode=mode, application_name="pgrace-test")
        c.close()
    with pytest.raises(psycopg2.OperationalError) as e:
        psycopg2.connect(proxy.url, sslmode="require")
    assert "SSL" in str(e.value)


def test_a_cancel_for_a_backend_that_is_not_ours_is_ignored(proxy):
    raw = Raw(proxy)
    raw.send(struct.pack("!IIii", 16, 80877102, 1, 2))
    assert raw.read(until=b"")[1]
    raw.close()


# ---- faults at the wire, as psycopg2 and node-postgres see them ----

@pytest.fixture
def fault_proxy(pgrace, tmp_path):
    started = []

    def start(fault):
        px = Proxy(pgrace, tmp_path, "--fault", fault, "--seed", "7")
        started.append(px)
        return px
    yield start
    for px in started:
        assert px.stop() == 0, px.text()[-2000:]


def test_fault_kill_backend_seen_by_psycopg2(pgrace, fault_proxy):
    px = fault_proxy("kill-backend@1")
    c = px.connect(application_name="pgrace-kill")
    c.autocommit = True
    cur = c.cursor()
    cur.execute("SELECT pg_backend_pid()")             # a connection's first step is never killed
    pid = cur.fetchone()[0]
    with pytest.raises(psycopg2.OperationalError) as e:
        cur.execute("SELECT 2")
    # what psycopg2 says of a backend terminated between two statements, proxy or not
    assert str(e.value).startswith("server closed the connection unexpectedly"), str(e.value)
    assert c.closed
    with admin(pgrace) as a, a.cursor() as acur:
        acur.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))
        assert acur.fetchone() == (0,)
    wait_no_backends(pgrace, "pgrace-kill")
    px.wait_for(r"^S1 +SELECT +08006 rows=0 .*backend terminated before this step \(fault kill-backend\)")


def test_fault_error_at_seen_by_psycopg2_and_node(pgrace, fault_proxy):
    px = fault_proxy("error-at:boom@1")
    c = px.connect()
    c.autocommit = True
    cur = c.cursor()
    cur.execute("DROP TABLE IF EXISTS fault_t; CREATE TABLE fault_t (id int)")
    with pytest.raises(psycopg2.errors.RaiseException) as e:
        cur.execute("SELECT 1 /* pgrace:boom */")
    assert e.value.pgcode == "P0001" and "injected error at step 'boom' (fault error-at)" in str(e.value)
    cur.execute("SELECT 2")
    assert cur.fetchone() == (2,)
    c.autocommit = False                              # inside a transaction: it is aborted, as by a real error
    cur.execute("INSERT INTO fault_t VALUES (1)")
    with pytest.raises(psycopg2.errors.RaiseException):
        cur.execute("/* pgrace:boom */ INSERT INTO fault_t VALUES (2)")
    with pytest.raises(psycopg2.errors.InFailedSqlTransaction):
        cur.execute("SELECT 3")
    c.rollback()
    cur.execute("SELECT count(*) FROM fault_t")
    assert cur.fetchone() == (0,)
    c.close()
    # a flushed batch whose rest is sent at once: the error as for a failed Parse, then its Sync's answer
    raw = Raw(px)
    raw.login()
    raw.send(msg(b"P", b"\0SELECT 1 /* pgrace:boom */\0\0\0") + msg(b"D", b"S\0") + msg(b"H")
             + msg(b"B", b"\0\0\0\0\0\0\0\0") + msg(b"E", b"\0\0\0\0\0") + msg(b"S"))
    msgs, closed = raw.read()
    assert not closed and [t for t, b in msgs] == [b"E", b"Z"], msgs
    assert error_fields(msgs[0][1])[b"C"] == "P0001" and msgs[1][1] == b"I"
    raw.send(msg(b"Q", b"SELECT 8\0"))
    msgs, closed = raw.read()
    assert not closed and [b[-1:] for t, b in msgs if t == b"D"] == [b"8"]
    raw.close()
    out = node_client(px, MODE="fault")               # the extended protocol
    assert out == {"boom": "P0001", "boom_message": "injected error at step 'boom' (fault error-at)", "after": 7,
                   "boom_in_tx": "P0001", "aborted": "25P02", "after_rollback": 4}, out


def test_fault_timeout_the_statement_runs_the_answer_is_lost(pgrace, fault_proxy):
    a = admin(pgrace)
    with a.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS lost_t; CREATE TABLE lost_t (id int)")
    px = fault_proxy("timeout-retry@1")
    c = px.connect(application_name="pgrace-lost")
    c.autocommit = True
    with pytest.raises(psycopg2.OperationalError) as e:
        c.cursor().execute("INSERT INTO lost_t VALUES (1)")
    assert "closed the connection unexpectedly" in str(e.value)
    with a.cursor() as cur:
        cur.execute("SELECT count(*) FROM lost_t")
        assert cur.fetchone() == (1,)
    a.close()
    wait_no_backends(pgrace, "pgrace-lost")
    px.wait_for(r"INSERT INTO lost_t +08006 .*ran 00000, answer lost \(fault timeout-retry\)")


def test_fault_lost_commit_before_or_after(pgrace, fault_proxy):
    """A commit whose connection drops: half the time before it reaches the server (nothing
    stored), half after it committed (stored); the client cannot tell which."""
    a = admin(pgrace)
    with a.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS lostc_t; CREATE TABLE lostc_t (id int)")
    px = fault_proxy("lost-commit@1")
    for i in range(12):
        c = px.connect(application_name="pgrace-lostc")
        if i % 2:
            c.autocommit = True              # an autocommitted write is a commit
        with pytest.raises(psycopg2.OperationalError) as e:
            c.cursor().execute("INSERT INTO lostc_t VALUES (%s)", (i,))
            c.commit()
        assert "closed the connection unexpectedly" in str(e.value)
        c.close()
    with a.cursor() as cur:
        cur.execute("SELECT count(*) FROM lostc_t")
        stored = cur.fetchone()[0]
    a.close()
    wait_no_backends(pgrace, "pgrace-lostc")
    px.wait_for(r"^S12 ")
    time.sleep(0.2)
    text = px.text()
    steps = r"^S\d+ +(?:INSERT INTO lostc_t|COMMIT) +08006 .*"
    after = len(re.findall(steps + r"answer lost \(fault lost-commit\)", text, re.M))
    before = len(re.findall(steps + r"connection lost before the commit arrived", text, re.M))
    assert after + before == 12 and after == stored and 0 < stored < 12, (after, before, stored, text)


# ---- the command ----

def test_proxy_command_line_errors_exit_2(pgrace, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    for args, want in [
        (["--port", "0"], "--port must be an integer in 1..65535, got '0'"),
        (["--port", "x"], "--port must be an integer in 1..65535, got 'x'"),
        (["extra"], "proxy takes no arguments"),
        (["--socket-dir", str(f)], "is not a directory"),
        (["--fault", "nope"], "bad fault 'nope'"),
        (["--dsn", "host=/nonexistent port=1"], "cannot connect"),
    ]:
        p = pgrace.run("proxy", *args, dsn="--dsn" not in args, timeout=60)
        assert p.returncode == 2, (args, p.stderr)
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and want in lines[0], (args, p.stderr)
    assert "proxy" in pgrace.run("--help").stdout


def test_a_port_in_use_is_refused(pgrace, proxy):
    p = pgrace.run("proxy", "--port", proxy.port, timeout=60)
    assert p.returncode == 2 and "in use" in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_given_socket_dir_and_port(pgrace, tmp_path):
    d = tmp_path / "sock"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    px = Proxy(pgrace, tmp_path, "--socket-dir", d, "--port", port)
    assert (px.host, px.port) == (str(d), port)
    assert (d.stat().st_mode & 0o777) == 0o700
    c = px.connect()
    c.close()
    assert px.stop(signal.SIGINT) == 0
    assert not d.exists()


def test_stopping_closes_every_server_connection(pgrace, tmp_path):
    px = Proxy(pgrace, tmp_path)
    conns = [px.connect(application_name="pgrace-stop") for _ in range(5)]
    busy = px.connect(application_name="pgrace-stop")
    threading.Thread(target=lambda: pytest.raises(Exception, busy.cursor().execute, "SELECT pg_sleep(2)"),
                     daemon=True).start()
    time.sleep(0.3)
    assert backends(pgrace, "pgrace-stop") == 6
    assert px.stop() == 0
    assert "6 connections" in px.text()
    wait_no_backends(pgrace, "pgrace-stop")
    for c in conns:
        with pytest.raises(psycopg2.OperationalError):
            c.cursor().execute("SELECT 1")


def test_the_server_dying_is_a_harness_error(private_tmp):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["TMPDIR"] = str(private_tmp)
    p = subprocess.run([str(BIN), "server", "start", "-q"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    dsn = p.stdout.strip()

    class Owner:
        binary = str(BIN)

        def env(self):
            return env
    try:
        px = Proxy(Owner(), private_tmp, dsn=dsn, env=env)
        c = px.connect()
        c.autocommit = True
        c.cursor().execute("SELECT 1")
        stop_server_now(private_tmp)
        assert px.proc.wait(30) == 2, px.text()
        assert "pgrace: proxy: the server is gone" in px.text()
        px.errf.close()
    finally:
        subprocess.run([str(BIN), "server", "stop", "-q"], env=env, timeout=60)


def test_listeners_bound_to_sessions(pgrace, tmp_path):
    """-c 2: listener i is session Si; a session runs one statement at a time, whichever of its
    connections sends it; another session is not held up."""
    px = Proxy(pgrace, tmp_path, "-c", "2")
    ports = dict((int(s), int(p)) for s, p in re.findall(r"session S(\d): PGPORT=(\d+)", px.text()))
    assert ports[1] == px.port and ports[2] not in (px.port, 0), px.text()
    a1, b1 = px.connect(), px.connect()
    s2 = px.connect(port=ports[2])
    for c in (a1, b1, s2):
        c.autocommit = True
    done = {}

    def sleeper():
        with a1.cursor() as cur:
            cur.execute("SELECT pg_sleep(1) /* pgrace:sleep */")
        done["sleep"] = time.time()
    t = threading.Thread(target=sleeper)
    t.start()
    time.sleep(0.3)
    t0 = time.time()
    with s2.cursor() as cur:                 # session 2 goes on at once
        cur.execute("SELECT 2 /* pgrace:other session */")
    assert "sleep" not in done
    with b1.cursor() as cur:                 # session 1's second connection waits for its turn
        cur.execute("SELECT 1 /* pgrace:same session */")
    assert time.time() - t0 >= 0.4
    t.join()
    for c in (a1, b1, s2):
        c.close()
    assert px.stop() == 0
    trace = px.text()
    assert re.search(r"^S1 +sleep +00000", trace, re.M) and re.search(r"^S1 +same session +00000", trace, re.M)
    assert re.search(r"^S2 +other session +00000", trace, re.M), trace
    assert trace.index("other session") < trace.index("S1   sleep") < trace.index("same session")


def test_two_connections_of_one_session_never_hang(pgrace, tmp_path):
    """A holds a row lock, B (the same session) waits for it inside its statement, and A's
    COMMIT waits for the session: after 10 s A is closed (55P03), its lock goes, B finishes."""
    with admin(pgrace) as a, a.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS bound_t; CREATE TABLE bound_t (id int PRIMARY KEY, n int); "
                    "INSERT INTO bound_t VALUES (1, 0)")
    px = Proxy(pgrace, tmp_path, "-c", "1")
    a1, b1 = px.connect(), px.connect()
    b1.autocommit = True
    ca = a1.cursor()
    ca.execute("UPDATE bound_t SET n = n + 1 WHERE id = 1")      # a1's transaction holds the row
    result = {}

    def waiter():
        with b1.cursor() as cur:
            cur.execute("UPDATE bound_t SET n = n + 10 WHERE id = 1")
            result["b"] = cur.rowcount
    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)
    t0 = time.time()
    with pytest.raises(psycopg2.OperationalError) as e:
        a1.commit()
    assert 9 < time.time() - t0 < 20
    assert re.search(r"^S1 +connection 1 closed: session S1 was busy with another connection's statement for 10 s",
                     px.text(), re.M), px.text()
    t.join(10)
    assert result == {"b": 1}
    with admin(pgrace) as a, a.cursor() as cur:
        cur.execute("SELECT n FROM bound_t")
        assert cur.fetchone() == (10,)                        # a1's update rolled back
    b1.close()
    assert px.stop() == 0


def test_wire_fuzzer_runs_clean(tmp_path):
    """The protocol layer (wire.c) under ASan+UBSan: 200k inputs from the seed corpus, no crash."""
    fuzzer = BIN.parent / "wire_fuzzer"
    assert fuzzer.exists(), "make fuzzers builds bin/wire_fuzzer"
    corpus = tmp_path / "c"
    corpus.mkdir()
    for f in (ROOT / "fuzz" / "corpus" / "wire").iterdir():
        (corpus / f.name).write_bytes(f.read_bytes())
    p = subprocess.run([str(fuzzer), f"-dict={ROOT / 'fuzz' / 'wire.dict'}", "-max_len=8192", "-runs=200000",
                        "-print_final_stats=1", str(corpus)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "stat::number_of_executed_units: 200000" in p.stderr
