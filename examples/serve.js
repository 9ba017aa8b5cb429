// examples/serve.js — the HTTP side every example application shares, so that each app.js
// holds only its seed's code: a plain Node server on 127.0.0.1:$PORT (pgrace chooses the
// port and starts one instance per session), JSON in and out, and a clean stop on SIGTERM.
'use strict';

const http = require('node:http');

// Answer status with body as JSON.
function send(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

// The request's body, as text.
async function readText(req) {
  let text = '';
  req.setEncoding('utf8');
  for await (const chunk of req) text += chunk;
  return text;
}

// Serve handle(req, res) on $PORT once `ready` (a promise: an ORM's initialize()) resolves;
// what handle throws is a 500, as Next.js, NestJS and SvelteKit answer an uncaught exception.
// On SIGTERM: stop listening, drop the kept-alive connections, close() the database, exit 0.
function serve(handle, { ready = Promise.resolve(), close = async () => {} } = {}) {
  const server = http.createServer((req, res) => {
    handle(req, res).catch((err) => {
      process.stderr.write(`${req.url}: ${err.code ?? ''} ${String(err.message).trim().split('\n').pop()}\n`);
      if (!res.headersSent) send(res, 500, { error: 'Internal Server Error' });
    });
  });
  server.keepAliveTimeout = 120000;      // pgrace keeps one connection per instance for a whole cell
  server.headersTimeout = 121000;
  server.on('error', (err) => {          // e.g. EADDRINUSE: pgrace shows this last line
    process.stderr.write(`listen on 127.0.0.1:${process.env.PORT}: ${err.message}\n`);
    process.exit(1);
  });
  ready.then(() => server.listen(Number(process.env.PORT), '127.0.0.1'),
             (err) => { process.stderr.write(`cannot start: ${err.message}\n`); process.exit(1); });
  process.on('SIGTERM', () => {
    server.close();
    server.closeAllConnections();
    Promise.resolve().then(close).finally(() => process.exit(0));
  });
  return server;
}

module.exports = { serve, send, readText };
