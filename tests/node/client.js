// A Node program (node-postgres, the extended protocol) that tests/test_proxy.py runs
// through `pgrace proxy`. It connects as libpq would (PGHOST/PGPORT/PGUSER/PGDATABASE), or
// with DATABASE_URL when that is set, and prints what it saw as one JSON line.
// MODE=fault: the proxy injects error-at at the step named boom.
'use strict';
const { Client, Pool } = require('pg');

function config() {
  return process.env.DATABASE_URL ? { connectionString: process.env.DATABASE_URL } : {};
}

async function basics(c, out) {
  const add = await c.query('SELECT $1::int + 1 AS n /* pgrace:add one */', [41]);
  out.add = add.rows[0].n;
  await c.query('CREATE TABLE IF NOT EXISTS node_t (id int PRIMARY KEY, v text)');
  await c.query('DELETE FROM node_t');
  const ins = { name: 'ins', text: 'INSERT INTO node_t VALUES ($1, $2) RETURNING id' };
  await c.query('BEGIN');
  await c.query({ ...ins, values: [1, 'a'] });
  await c.query({ ...ins, values: [2, 'b'] });
  await c.query('COMMIT');
  try {
    await c.query({ ...ins, values: [1, 'again'] });
  } catch (e) {
    out.duplicate = e.code;
    out.constraint = e.constraint;
  }
  const n = await c.query('SELECT count(*)::int AS n, max(v) AS v FROM node_t');
  out.count = n.rows[0].n;
  out.max = n.rows[0].v;
  const pool = new Pool({ ...config(), max: 4 });
  const rs = await Promise.all([...Array(8).keys()].map((i) => pool.query('SELECT $1::int AS i, pg_sleep(0.02)', [i])));
  out.pool = rs.map((r) => r.rows[0].i);
  await pool.end();
}

async function fault(c, out) {
  try {
    await c.query('SELECT $1::int AS x /* pgrace:boom */', [1]);
    out.boom = 'no error';
  } catch (e) {
    out.boom = e.code;
    out.boom_message = e.message;
  }
  const after = await c.query('SELECT $1::int AS x', [7]);
  out.after = after.rows[0].x;
  await c.query('BEGIN');
  await c.query('SELECT 1');
  try {
    await c.query('SELECT 2 /* pgrace:boom */');
  } catch (e) {
    out.boom_in_tx = e.code;
  }
  try {
    await c.query('SELECT 3');
  } catch (e) {
    out.aborted = e.code;
  }
  await c.query('ROLLBACK');
  const ok = await c.query('SELECT 4 AS x');
  out.after_rollback = ok.rows[0].x;
}

async function main() {
  const out = {};
  const c = new Client(config());
  await c.connect();
  if (process.env.MODE === 'fault') await fault(c, out);
  else await basics(c, out);
  await c.end();
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
