// The Prisma CLI's configuration for examples/ (generate.sh, and `prisma migrate diff` to
// capture each spec's DDL). The JS schema engine through the pg driver adapter: the CLI then
// needs no engine binary, which cannot be downloaded here. PRISMA_SCHEMA_FILE names the
// schema so that commands without --schema (migrate diff) still see engineType "client".
const { defineConfig } = require('prisma/config');
const { PrismaPg } = require('@prisma/adapter-pg');

module.exports = defineConfig({
  experimental: { adapter: true },
  engine: 'js',
  ...(process.env.PRISMA_SCHEMA_FILE ? { schema: process.env.PRISMA_SCHEMA_FILE } : {}),
  adapter: async () => new PrismaPg({ connectionString: process.env.DATABASE_URL }),
});
