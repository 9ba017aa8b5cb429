// examples/prisma.js — a Prisma client as the Prisma examples make it: the pg driver adapter
// on DATABASE_URL (pgrace's proxy listener), the tables in PGRACE_SCHEMA (Prisma qualifies
// every table name with a schema), and PRISMA_LOG_QUERIES=1 to print what Prisma sends.
'use strict';

const { PrismaPg } = require('@prisma/adapter-pg');

function prismaClient(PrismaClient) {
  const adapter = new PrismaPg({ connectionString: process.env.DATABASE_URL },
                               { schema: process.env.PGRACE_SCHEMA });
  const logQueries = Boolean(process.env.PRISMA_LOG_QUERIES);
  const prisma = new PrismaClient({ adapter, log: logQueries ? [{ emit: 'event', level: 'query' }] : [] });
  if (logQueries) prisma.$on('query', (e) => process.stderr.write(`prisma:query ${e.query} ${e.params}\n`));
  return prisma;
}

// Prisma reports 40001 as P2034; 40P01 reaches us as the driver's own code.
function isRetryable(err) {
  const cause = err?.meta?.driverAdapterError?.cause ?? err?.cause;
  return err?.code === 'P2034' || cause?.originalCode === '40001' || cause?.originalCode === '40P01';
}

// Run attempt() again on a serialization failure or a deadlock, at most `attempts` times,
// with a short random pause; then what giveUp() returns or throws.
async function withRetry(attempt, giveUp, attempts = 10) {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      if (!isRetryable(err)) throw err;
      if (i === attempts) return giveUp();
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * i));
    }
  }
}

module.exports = { prismaClient, withRetry };
