#!/usr/bin/env python3
"""Seed 001's recommended claim as a program: the claim and the Submission in one
transaction, the whole transaction retried on 40001/40P01; a request that finds the invite
used answers 200 with the winner's Submission.

It connects with the libpq environment pgrace gives it (PGHOST, PGPORT, PGDATABASE, PGUSER,
PGOPTIONS) and answers on its last line of stdout: STATUS [ID].
"""
import os
import time

import psycopg2
import psycopg2.errors

token = os.environ["PGRACE_KEY"]
conn = psycopg2.connect("")                      # the PG* environment


def once(cur):
    cur.execute("UPDATE invite SET used_at = now() "
                "WHERE token = %s AND used_at IS NULL AND expires_at > now() RETURNING id", (token,))
    claimed = cur.fetchone()
    if claimed:
        cur.execute("INSERT INTO submission (invite_id) VALUES (%s) RETURNING id", (claimed[0],))
        return 201, cur.fetchone()[0]
    cur.execute("SELECT i.expires_at <= now(), s.id FROM invite i LEFT JOIN submission s ON s.invite_id = i.id "
                "WHERE i.token = %s", (token,))
    row = cur.fetchone()
    if row is None:
        return 400, None
    if row[0]:
        return 410, None
    return (200, row[1]) if row[1] else (409, None)


for attempt in range(10):
    try:
        with conn:                               # one transaction: COMMIT, or ROLLBACK on error
            with conn.cursor() as cur:
                status, ident = once(cur)
        break
    except (psycopg2.errors.SerializationFailure, psycopg2.errors.DeadlockDetected):
        time.sleep(0.001 * (2 ** attempt))
else:
    status, ident = 503, None
print(status if ident is None else "%d %d" % (status, ident))
