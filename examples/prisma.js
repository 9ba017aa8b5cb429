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

module.exports = { prismaClient };
