// Seed 002, "Implement database-level deduplication for conversation creation": the route
// POST /api/messages/conversations in its own stack, Supabase, behind a plain http server.
// supabase-js needs PostgREST, which cannot be installed here: postgrest.js stands in for
// both and sends, over node-postgres, the SQL PostgREST sends for each call (see its header).
//
//   POST /VARIANT/api/messages/conversations   X-User-Id: USER (the session's user)
//        {"context_type": "agency_inquiry", "context_id": AGENCY, "initial_message": TEXT}
//   201 {"data": conversation} created; 200 {"data": conversation} it existed; 500 {"error"}
//
//   original     the POST as the seed describes it today: no server-side check, insert the
//                conversation, then its initial message, 201
//   proposed     the seed's API implementation as written: STEP 1 .maybeSingle() -> 200;
//                STEP 2 insert; 23505 -> STEP 3 re-select .single() -> 200; STEP 4 the
//                initial message; 201. The seed's constraint does not run on PostgreSQL
//                (ALTER TABLE ... UNIQUE (...) WHERE ...: 42601), so the variant's setup is
//                the partial unique index with the same name, columns and WHERE.
//   recommended  one transaction, i.e. one supabase.rpc() to a plpgsql function (the spec's
//                setup): INSERT ... ON CONFLICT DO NOTHING RETURNING id; a row -> the initial
//                message in the same transaction, 201; none -> the existing one, 200. The
//                call is made again on 40001/40P01.
const { PostgrestClient } = require("./postgrest");
const { serve, send, readText } = require("../serve");

const supabase = new PostgrestClient({
  connectionString: process.env.DATABASE_URL,
  schema: process.env.PGRACE_SCHEMA ?? "public",
  // the column and argument types PostgREST would read from its schema cache
  tables: {
    conversations: { context_type: "text", context_id: "bigint", created_by: "text" },
    messages: { conversation_id: "bigint", sender_id: "text", content: "text" },
  },
  functions: {
    create_agency_conversation: { p_context_id: "bigint", p_created_by: "text", p_content: "text" },
  },
});

// Next.js's res.status(...).json(...), as far as the route uses it.
function response(res) {
  return { status(code) { return { json(body) { send(res, code, body); } }; } };
}

// ---------------------------------------------------------------- original

async function createConversationOriginal(req, res, { agencyId, userId, content }) {
  try {
    const { data: conversation, error } = await supabase
      .from("conversations")
      .insert({ context_type: "agency_inquiry", context_id: agencyId, created_by: userId })
      .select()
      .single();
    if (error) throw error;
    const { error: messageError } = await supabase
      .from("messages")
      .insert({ conversation_id: conversation.id, sender_id: userId, content });
    if (messageError) throw messageError;
    return res.status(201).json({ data: conversation });
  } catch (error) {
    return res.status(500).json({ error: "Failed to create conversation" });
  }
}

// ---------------------------------------------------------------- proposed (issue 007)

async function createConversationProposed(req, res, { agencyId, userId, content }) {
  // STEP 1: Check if conversation already exists
  const { data: existing } = await supabase
    .from("conversations")
    .select("*")
    .eq("context_type", "agency_inquiry")
    .eq("context_id", agencyId)
    .eq("created_by", userId)
    .maybeSingle();

  if (existing) {
    // Return existing conversation (idempotent behavior)
    return res.status(200).json({ data: existing });
  }

  // STEP 2: Try to create new conversation
  try {
    const { data: conversation, error } = await supabase
      .from("conversations")
      .insert({ context_type: "agency_inquiry", context_id: agencyId, created_by: userId })
      .select()
      .single();

    if (error) {
      // STEP 3: Handle race condition (unique constraint violation)
      if (error.code === "23505") {
        // Another concurrent request created it - fetch and return
        const { data: raceConv, error: raceError } = await supabase
          .from("conversations")
          .select("*")
          .eq("context_type", "agency_inquiry")
          .eq("context_id", agencyId)
          .eq("created_by", userId)
          .single();

        if (raceError || !raceConv) {
          console.error("Race condition recovery failed:", { agencyId, userId, error: raceError });
          return res.status(500).json({ error: "Failed to retrieve conversation after concurrent creation" });
        }
        return res.status(200).json({ data: raceConv });
      }
      throw error;
    }

    // STEP 4: Create initial message...
    const { error: messageError } = await supabase
      .from("messages")
      .insert({ conversation_id: conversation.id, sender_id: userId, content });
    if (messageError) throw messageError;
    return res.status(201).json({ data: conversation });
  } catch (error) {
    return res.status(500).json({ error: "Failed to create conversation" });
  }
}

// ---------------------------------------------------------------- recommended

const RETRYABLE = new Set(["40001", "40P01"]);     // serialization failure, deadlock

async function createConversationRecommended(req, res, { agencyId, userId, content }) {
  try {
    for (let attempt = 1; attempt <= 10; attempt++) {
      const { data, error } = await supabase
        .rpc("create_agency_conversation", { p_context_id: agencyId, p_created_by: userId, p_content: content })
        .single();
      if (error && RETRYABLE.has(error.code)) continue;
      if (error) throw error;
      const { created, ...conversation } = data;
      return res.status(created ? 201 : 200).json({ data: conversation });
    }
    return res.status(503).json({ error: "Gave up retrying" });
  } catch (error) {
    return res.status(500).json({ error: "Failed to create conversation" });
  }
}

const VARIANTS = {
  original: createConversationOriginal,
  proposed: createConversationProposed,
  recommended: createConversationRecommended,
};

// ---------------------------------------------------------------- the server

async function handle(req, res) {
  const m = /^\/(\w+)\/api\/messages\/conversations$/.exec(req.url);
  const route = m && req.method === "POST" ? VARIANTS[m[1]] : undefined;
  if (!route) return send(res, 404, { error: "Not found" });
  const text = await readText(req);
  const body = JSON.parse(text);
  const userId = req.headers["x-user-id"];            // stands in for supabase.auth.getUser()
  if (!userId) return send(res, 401, { error: "Unauthorized" });
  await route(req, response(res), { agencyId: body.context_id, userId, content: body.initial_message });
}

serve(handle, { close: () => supabase.end() });
