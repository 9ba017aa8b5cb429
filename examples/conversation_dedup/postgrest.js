// A stand-in for supabase-js over node-postgres: the calls seed 002's route makes
// (.from(t).select().eq()...maybeSingle(), .insert().select().single(), .insert(), .rpc()),
// each sending what PostgREST would send to PostgreSQL for it. supabase-js talks HTTP to
// PostgREST, which cannot be installed here; this module plays both.
//
// What PostgREST 12 sends per API call (src/PostgREST/Query/Statements.hs, QueryBuilder.hs):
// one transaction of its own: BEGIN (READ ONLY for a GET); SELECT set_config(...) of the
// request's search_path and claims; ONE statement, the call as a CTE (pgrst_source) whose
// rows are aggregated into the JSON body; COMMIT, or ROLLBACK on an error or when .single()
// did not get exactly one row (406, PGRST116). Filter values are untyped parameters, a
// written row is a json parameter read by json_to_recordset. Differences from PostgREST:
//   - BEGIN takes the connection's default_transaction_isolation (pgrace's cell), as
//     PostgREST does for a role configured with that level; out of the box it sends
//     BEGIN ISOLATION LEVEL READ COMMITTED whatever the database's default.
//   - no set_config('role', ...): there are no Supabase roles (anon, authenticated) here.
//   - the column types for json_to_recordset come from `tables` (PostgREST reads its schema cache).
// The result is supabase-js's: { data, error } with error = { code, message, details, hint }
// (code the SQLSTATE or PGRST116), never a throw for a database error.
const { Pool } = require("pg");

const q = (name) => `"${name.replace(/"/g, '""')}"`;

class PostgrestClient {
  // tables: { table: { column: type } } for writes; functions: { fn: { arg: type } } for rpc.
  constructor({ connectionString, schema, tables = {}, functions = {} }) {
    this.pool = new Pool({ connectionString });
    this.pool.on("error", (e) => console.error(`postgrest pool: ${e.message}`));
    this.schema = schema;
    this.tables = tables;
    this.functions = functions;
  }
  from(table) { return new Request(this, "GET", table); }
  rpc(fn, args) { return new Request(this, "RPC", fn, args); }
  end() { return this.pool.end(); }
}

// The output columns every PostgREST statement ends with.
const RESPONSE_F = "nullif(current_setting('response.headers', true), '') AS response_headers, " +
  "nullif(current_setting('response.status', true), '') AS response_status";
const jsonBody = (single) => single ? "coalesce((json_agg(_postgrest_t)->0)::text, 'null')" : "coalesce(json_agg(_postgrest_t), '[]')";

class Request {
  constructor(client, method, target, payload) {
    Object.assign(this, { client, method, target, payload, filters: [], representation: false, singular: false, maybe: false });
  }
  select() { if (this.method !== "GET") this.representation = true; return this; }
  insert(row) { this.method = "POST"; this.payload = row; return this; }
  eq(column, value) { this.filters.push([column, value]); return this; }
  single() { this.singular = true; return this; }
  // postgrest-js: a GET asks for an array and checks the count itself; a write asks for an object
  maybeSingle() { if (this.method === "GET") this.maybe = true; else this.singular = true; return this; }
  then(resolve, reject) { return this.execute().then(resolve, reject); }

  statement() {
    const s = this.client.schema, qi = `${q(s)}.${q(this.target)}`;
    if (this.method === "GET") {
      const params = this.filters.map(([, v]) => String(v));
      const where = this.filters.map(([c], i) => `${qi}.${q(c)} = $${i + 1}`).join(" AND ");
      return [`WITH pgrst_source AS ( SELECT ${qi}.* FROM ${qi} ${where ? " WHERE  " + where : ""} ) ` +
        `SELECT null::bigint AS total_result_set, pg_catalog.count(_postgrest_t) AS page_total, ` +
        `${jsonBody(this.singular)} AS body, ${RESPONSE_F} FROM ( SELECT * FROM pgrst_source ) _postgrest_t`, params];
    }
    const types = this.method === "RPC" ? this.client.functions[this.target] : this.client.tables[this.target];
    const cols = Object.keys(this.payload).sort();
    const record = cols.map((c) => `${q(c)} ${types[c]}`).join(", ");
    const payload = "(SELECT $1::json AS json_data) pgrst_payload, " +
      "LATERAL (SELECT CASE WHEN json_typeof(pgrst_payload.json_data) = 'array' THEN pgrst_payload.json_data " +
      "ELSE json_build_array(pgrst_payload.json_data) END AS val) pgrst_uniform_json, ";
    if (this.method === "RPC") {
      const args = cols.map((c) => `${q(c)} := pgrst_body.${q(c)}`).join(", ");
      return [`WITH pgrst_source AS (SELECT pgrst_call.* FROM ${payload}` +
        `LATERAL (SELECT * FROM json_to_recordset(pgrst_uniform_json.val) AS _(${record}) LIMIT 1) pgrst_body, ` +
        `LATERAL ${qi}(${args}) pgrst_call) ` +
        `SELECT null::bigint AS total_result_set, pg_catalog.count(_postgrest_t) AS page_total, ` +
        `${jsonBody(this.singular)} AS body, ${RESPONSE_F} FROM (SELECT ${q(this.target)}.* FROM "pgrst_source" AS ${q(this.target)}) _postgrest_t`,
        [JSON.stringify(this.payload)]];
    }
    const list = cols.map(q).join(", ");
    return [`WITH pgrst_source AS (INSERT INTO ${qi}(${list}) SELECT ${cols.map((c) => `"pgrst_body".${q(c)}`).join(", ")} FROM ${payload}` +
      `LATERAL (SELECT ${list} FROM json_to_recordset(pgrst_uniform_json.val) AS _(${record}) ) pgrst_body ` +
      ` RETURNING ${this.representation ? qi + ".*" : "1"}) ` +
      `SELECT '' AS total_result_set, pg_catalog.count(_postgrest_t) AS page_total, array[]::text[] AS header, ` +
      `${this.representation ? jsonBody(this.singular) : "''"} AS body, ${RESPONSE_F} ` +
      `FROM (${this.representation ? `SELECT ${q(this.target)}.* FROM "pgrst_source" AS ${q(this.target)}` : "SELECT * FROM pgrst_source"}) _postgrest_t`,
      [JSON.stringify(this.payload)]];
  }

  async execute() {
    const conn = await this.client.pool.connect();
    let broken = false;
    try {
      await conn.query(this.method === "GET" ? "BEGIN READ ONLY" : "BEGIN");
      await conn.query("select set_config('search_path', $1, true), set_config('request.jwt.claims', $2, true), " +
        "set_config('request.method', $3, true), set_config('request.path', $4, true)",
        [q(this.client.schema), "{}", this.method === "GET" ? "GET" : "POST",
         this.method === "RPC" ? `/rpc/${this.target}` : `/${this.target}`]);
      const [sql, params] = this.statement();
      const row = (await conn.query(sql, params)).rows[0];
      const count = Number(row.page_total);
      if (this.singular && count !== 1) {
        await conn.query("ROLLBACK");
        return { data: null, error: { code: "PGRST116", message: "JSON object requested, multiple (or no) rows returned",
                                      details: `The result contains ${count} rows`, hint: null } };
      }
      await conn.query("COMMIT");
      let data = row.body === "" ? null : JSON.parse(row.body);
      if (this.maybe) {                               // postgrest-js's own check
        if (data.length > 1) return { data: null, error: { code: "PGRST116", message: "JSON object requested, multiple (or no) rows returned",
                                                           details: `Results contain ${data.length} rows`, hint: null } };
        data = data.length === 1 ? data[0] : null;
      }
      return { data, error: null };
    } catch (e) {
      if (!e.code) broken = true;                     // not a database error: drop the connection
      await conn.query("ROLLBACK").catch(() => { broken = true; });
      return { data: null, error: { code: e.code ?? "", message: e.message, details: e.detail ?? null, hint: e.hint ?? null } };
    } finally {
      conn.release(broken);
    }
  }
}

module.exports = { PostgrestClient };
