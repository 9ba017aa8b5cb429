// Prints the DDL TypeORM emits for entities.js, as the spec's setup holds it: runs
// synchronize once with query logging into a scratch schema (created, then dropped).
//   DATABASE_URL=postgresql://... node examples/form_submission/capture_ddl.js [--plan31]
const { DataSource } = require("typeorm");
const { Client } = require("pg");
const { entities } = require("./entities");

async function main() {
  const schema = "typeorm_ddl_" + process.pid;
  const admin = new Client({ connectionString: process.env.DATABASE_URL });
  await admin.connect();
  await admin.query(`CREATE SCHEMA ${schema}`);
  const ddl = [];
  const ds = new DataSource({
    type: "postgres",
    url: process.env.DATABASE_URL,
    schema,
    entities: Object.values(entities({ plan31: process.argv.includes("--plan31") })),
    synchronize: true,
    logging: ["query", "schema"],
    logger: {
      logQuery: (q) => { if (/^(CREATE|ALTER|DROP)\b/.test(q)) ddl.push(q + ";"); },
      logQueryError() {}, logQuerySlow() {}, logSchemaBuild() {}, logMigration() {}, log() {},
    },
  });
  try {
    await ds.initialize();
    await ds.destroy();
  } finally {
    await admin.query(`DROP SCHEMA ${schema} CASCADE`);
    await admin.end();
  }
  console.log(ddl.join("\n").split(`"${schema}".`).join(""));
}

main().catch((e) => { console.error(e); process.exit(1); });
