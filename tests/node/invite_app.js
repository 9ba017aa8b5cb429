// A small HTTP application for pgrace's own tests of the HTTP door (tests/test_http.py):
// seed 001's invite claim as PR #15 merged it and as we recommend it, written with
// node-postgres, plus ways to misbehave (MISBEHAVE=...) so the tests can check that an
// application that never listens, crashes, hangs or answers garbage is a harness error.
// The seed's own stack (Prisma) is in examples/invite_claim/.
'use strict';
const http = require('http');
const { Pool } = require('pg');

const misbehave = process.env.MISBEHAVE || '';
if (misbehave === 'exit-at-start') { console.error('cannot start: missing config'); process.exit(3); }
if (misbehave === 'no-listen') { setInterval(() => {}, 1000); return; }

const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
// a connection the server (or pgrace's kill-backend fault) ended while idle: the pool drops it
pool.on('error', (e) => console.error('idle connection lost:', e.message));

async function pr15(token) {
  // updateMany as the claim, then create, each its own autocommit (PR #15)
  const claim = await pool.query(
    'UPDATE invite SET used_at = now() WHERE token = $1 AND used_at IS NULL AND expires_at > now()', [token]);
  if (claim.rowCount === 1) {
    const sub = await pool.query(
      'INSERT INTO submission (invite_id) SELECT id FROM invite WHERE token = $1 RETURNING id', [token]);
    return [201, { submission: { id: Number(sub.rows[0].id) } }];
  }
  const inv = await pool.query('SELECT id, expires_at <= now() AS expired FROM invite WHERE token = $1', [token]);
  if (inv.rowCount === 0) return [400, { error: 'invalid invite' }];
  if (inv.rows[0].expired) return [410, { error: 'expired' }];
  const prior = await pool.query('SELECT id FROM submission WHERE invite_id = $1 ORDER BY id LIMIT 1', [inv.rows[0].id]);
  if (prior.rowCount === 1) return [200, { submission: { id: Number(prior.rows[0].id) } }];
  return [409, { error: 'invite already used' }];
}

async function recommended(token) {
  // the claim and the Submission in one transaction, retried on 40001/40P01
  for (let attempt = 0; ; attempt++) {
    const c = await pool.connect();
    // the connection may die while checked out (pgrace's kill-backend fault): without a
    // listener node-postgres throws the 'error' event and the process exits
    const lost = (e) => console.error('connection lost in a transaction:', e.message);
    c.on('error', lost);
    try {
      await c.query('BEGIN');
      const claim = await c.query(
        'UPDATE invite SET used_at = now() WHERE token = $1 AND used_at IS NULL AND expires_at > now() RETURNING id', [token]);
      let answer;
      if (claim.rowCount === 1) {
        const sub = await c.query('INSERT INTO submission (invite_id) VALUES ($1) RETURNING id', [claim.rows[0].id]);
        answer = [201, { submission: { id: Number(sub.rows[0].id) } }];
      } else {
        const inv = await c.query('SELECT id, expires_at <= now() AS expired FROM invite WHERE token = $1', [token]);
        if (inv.rowCount === 0) answer = [400, { error: 'invalid invite' }];
        else if (inv.rows[0].expired) answer = [410, { error: 'expired' }];
        else {
          const prior = await c.query('SELECT id FROM submission WHERE invite_id = $1 ORDER BY id LIMIT 1', [inv.rows[0].id]);
          answer = prior.rowCount ? [200, { submission: { id: Number(prior.rows[0].id) } }] : [409, { error: 'used' }];
        }
      }
      await c.query('COMMIT');
      return answer;
    } catch (e) {
      await c.query('ROLLBACK').catch(() => {});
      if ((e.code === '40001' || e.code === '40P01') && attempt < 10) continue;
      throw e;
    } finally {
      c.off('error', lost);
      c.release();
    }
  }
}

const routes = { '/pr15/claim': pr15, '/recommended/claim': recommended };

const server = http.createServer((req, res) => {
  let body = '';
  req.on('data', (d) => { body += d; });
  req.on('end', async () => {
    if (misbehave === 'crash') { console.error('segfault-ish: crashing on purpose'); process.kill(process.pid, 'SIGSEGV'); }
    if (misbehave === 'hang') return;
    if (misbehave === 'garbage') { res.socket.end('this is not HTTP\r\n\r\n'); return; }
    const handler = routes[req.url];
    if (!handler) { res.writeHead(404); res.end(); return; }
    try {
      const { token } = JSON.parse(body);
      const [status, out] = await handler(String(token));
      res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify(out));
    } catch (e) {
      res.writeHead(500, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: String(e.message) }));
    }
  });
});
server.keepAliveTimeout = 120000;
server.headersTimeout = 121000;
if (process.env.QUERY_AT_START) {
  // as an ORM's initialize() does: statements before the first request (none of a request's)
  pool.query('SELECT version()').then(() => server.listen(Number(process.env.PORT), '127.0.0.1'),
                                      (e) => { console.error(e.message); process.exit(1); });
} else {
  server.listen(Number(process.env.PORT), '127.0.0.1');
}
process.on('SIGTERM', () => { server.close(); pool.end().finally(() => process.exit(0)); });
