#!/usr/bin/env python3
"""Programs that misbehave, for tests/test_client.py: argv[1] says how (pgrace appends KEY
SESSION CASE after it)."""
import os
import signal
import sys
import time

mode = sys.argv[1]
if mode == "hang_before":                 # never connects, never exits
    time.sleep(3600)
if mode == "noconnect":                   # answers without touching the database
    print("201 1")
    sys.exit(0)
import psycopg2                           # noqa: E402

conn = psycopg2.connect(os.environ["DATABASE_URL"])
conn.autocommit = True
cur = conn.cursor()
cur.execute("INSERT INTO hit (key, session) VALUES (%s, %s) RETURNING id",
            (os.environ["PGRACE_KEY"], int(os.environ["PGRACE_SESSION"])))
ident = cur.fetchone()[0]
if mode == "hang":                        # one statement, then nothing
    time.sleep(3600)
elif mode == "crash":
    os.kill(os.getpid(), signal.SIGSEGV)
elif mode == "garbage":                   # not an answer line: the exit status decides (0: 200)
    sys.stdout.buffer.write(b"\x00\xff\xfe garbage 201 \x1b[31m\nnot an answer: 20x\n")
elif mode == "garbage_fail":              # ... nonzero: 500
    print("Traceback (most recent call last): oops")
    sys.exit(3)
elif mode == "answer":
    print("log line before the answer")
    print("201 %d" % ident)
