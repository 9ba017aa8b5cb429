#!/usr/bin/env python3
"""Seed 001's PR #15 claim as a program: `updateMany` as the claim, then the Submission,
each its own autocommit; on count 0 look the invite up: 400 missing, 410 expired, 200 with
the prior Submission, else 409 "Invite already used".

pgrace runs it once per request: the invite's token is PGRACE_KEY (also argv[1]); it
connects with DATABASE_URL (the proxy listener of its session) and answers on its last
line of stdout: STATUS [ID].
"""
import os
import sys

import psycopg2

token = os.environ["PGRACE_KEY"]
assert sys.argv[1] == token
conn = psycopg2.connect(os.environ["DATABASE_URL"])
conn.autocommit = True
cur = conn.cursor()
cur.execute("UPDATE invite SET used_at = now() "
            "WHERE token = %s AND used_at IS NULL AND expires_at > now()", (token,))
if cur.rowcount == 1:
    cur.execute("INSERT INTO submission (invite_id) SELECT id FROM invite WHERE token = %s RETURNING id", (token,))
    print(201, cur.fetchone()[0])
    sys.exit(0)
cur.execute("SELECT id, used_at IS NOT NULL, expires_at <= now() FROM invite WHERE token = %s", (token,))
row = cur.fetchone()
if row is None:
    print(400)
elif row[2]:
    print(410)
else:
    cur.execute("SELECT id FROM submission WHERE invite_id = %s ORDER BY id LIMIT 1", (row[0],))
    sub = cur.fetchone()
    print("200 %d" % sub[0] if sub else 409)
