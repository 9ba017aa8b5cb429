// Seed 003, "Fix message sequence race condition" (plan 09-06): the socket handler's
// sendMessage (src/server/socket/handlers/message.ts) in its own stack, drizzle-orm 0.45 on
// node-postgres, behind an HTTP POST instead of a socket event.
//
//   POST /VARIANT/messages   X-User-Id: AUTHOR (the socket's authenticated user)
//        {"targetType": "channel" | "dm", "targetId": ID, "content": TEXT, "clientMessageId": TEXT}
//   201 {"message": {..., "sequence"}}: the socket's ack; 404 no such channel (recommended);
//   500 anything uncaught (the handler's error callback).
//
//   original     SELECT max(sequence) then INSERT max + 1: two autocommitted statements
//   proposed     the plan exactly: one INSERT whose sequence is the sql`(SELECT COALESCE(MAX(...), 0) + 1 ...)`
//                subquery, in the plan's loop `retries = 3 ... catch (error.code === '23505' && retries > 1)`.
//                The partial unique indexes are the variant's setup.
//   recommended  a counter per channel / conversation, bumped by UPDATE ... RETURNING in the
//                same transaction as the INSERT (the row lock orders the senders); a resend
//                (same author, same clientMessageId) answers the stored message; the
//                transaction is run again on 40001/40P01.
//
// drizzle-orm 0.44 and later throw a DrizzleQueryError for a failed query, with the pg error
// as its `cause`: `error.code` is undefined. The plan's catch tests error.code === '23505',
// so with this drizzle its retry never runs: the first 23505 is thrown (500). That is
// reproduced as written; the recommended form reads error.cause.code.
const { Pool } = require("pg");
const { drizzle } = require("drizzle-orm/node-postgres");
const { sql, eq, and, max } = require("drizzle-orm");
const { messages, channelsCounted, conversationsCounted, messagesWithClientId } = require("./schema");
const { serve, send, readText } = require("../serve");

const pool = new Pool({ connectionString: process.env.DATABASE_URL });
pool.on("error", (e) => console.error(`pool: ${e.message}`));
const db = drizzle(pool, { logger: process.env.DRIZZLE_LOGGING === "1" });

class NotFound extends Error {}

// ---------------------------------------------------------------- original

async function sendOriginal(userId, { targetType, targetId, content }) {
  // Get next sequence number
  const condition = targetType === "channel"
    ? eq(messages.channelId, targetId)
    : eq(messages.conversationId, targetId);

  const [maxSeq] = await db
    .select({ maxSequence: max(messages.sequence) })
    .from(messages)
    .where(condition);

  const sequence = (maxSeq?.maxSequence ?? 0) + 1;

  // Insert message
  const [newMessage] = await db
    .insert(messages)
    .values({
      content,
      authorId: userId,
      channelId: targetType === "channel" ? targetId : null,
      conversationId: targetType === "dm" ? targetId : null,
      sequence,
    })
    .returning();
  return newMessage;
}

// ---------------------------------------------------------------- proposed (plan 09-06)

async function sendProposed(userId, { targetType, targetId, content }) {
  // Wrap insert in retry loop for constraint violations
  let retries = 3;
  let newMessage;
  while (retries > 0) {
    try {
      const [result] = await db
        .insert(messages)
        .values({
          content,
          authorId: userId,
          channelId: targetType === "channel" ? targetId : null,
          conversationId: targetType === "dm" ? targetId : null,
          sequence: sql`(
            SELECT COALESCE(MAX(${messages.sequence}), 0) + 1
            FROM ${messages}
            WHERE ${targetType === "channel"
              ? sql`${messages.channelId} = ${targetId}`
              : sql`${messages.conversationId} = ${targetId}`}
          )`,
        })
        .returning();
      newMessage = result;
      break;
    } catch (error) {
      if (error.code === "23505" && retries > 1) { // unique_violation
        retries--;
        continue;
      }
      throw error;
    }
  }

  if (!newMessage) {
    throw new Error("Failed to insert message after retries");
  }
  return newMessage;
}

// ---------------------------------------------------------------- recommended

const RETRYABLE = new Set(["40001", "40P01"]);     // serialization failure, deadlock

async function sendRecommended(userId, { targetType, targetId, content, clientMessageId }) {
  const counter = targetType === "channel" ? channelsCounted : conversationsCounted;
  const target = targetType === "channel" ? messagesWithClientId.channelId : messagesWithClientId.conversationId;
  // Under repeatable read / serializable a concurrent bump fails with 40001; with N senders
  // at most N - 1 attempts of one send fail.
  for (let attempt = 1; attempt <= 100; attempt++) {
    try {
      return await db.transaction(async (tx) => {
        const [sent] = await tx.select().from(messagesWithClientId)
          .where(and(eq(messagesWithClientId.authorId, userId), eq(messagesWithClientId.clientMsgId, clientMessageId)));
        if (sent) return sent;                        // a resend: the stored message
        // NULL until the first send after the migration: seeded from max(sequence)
        const [next] = await tx.update(counter)
          .set({ lastSequence: sql`COALESCE(${counter.lastSequence}, (SELECT COALESCE(MAX(${messagesWithClientId.sequence}), 0) FROM ${messagesWithClientId} WHERE ${target} = ${targetId})) + 1` })
          .where(eq(counter.id, targetId))
          .returning({ sequence: counter.lastSequence });
        if (!next) throw new NotFound();
        const [newMessage] = await tx.insert(messagesWithClientId).values({
          content,
          authorId: userId,
          channelId: targetType === "channel" ? targetId : null,
          conversationId: targetType === "dm" ? targetId : null,
          sequence: next.sequence,
          clientMsgId: clientMessageId,
        }).returning();
        return newMessage;
      });
    } catch (error) {
      const pgError = error.cause ?? error;
      if (RETRYABLE.has(pgError.code)) continue;
      // the same message sent twice at once: the other copy is stored, look again
      if (pgError.code === "23505" && pgError.constraint === "messages_client_msg_idx") continue;
      throw error;
    }
  }
  throw Object.assign(new Error("Gave up retrying"), { status: 503 });
}

const VARIANTS = { original: sendOriginal, proposed: sendProposed, recommended: sendRecommended };

// ---------------------------------------------------------------- the server

async function handle(req, res) {
  const m = /^\/(\w+)\/messages$/.exec(req.url);
  const sendMessage = m && req.method === "POST" ? VARIANTS[m[1]] : undefined;
  if (!sendMessage) return send(res, 404, { error: "Not found" });
  const text = await readText(req);
  const userId = Number(req.headers["x-user-id"]);
  if (!userId) return send(res, 401, { error: "Unauthorized" });
  try {
    const message = await sendMessage(userId, JSON.parse(text));
    send(res, 201, { message });
  } catch (error) {
    if (error instanceof NotFound) return send(res, 404, { error: "Channel not found" });
    const pgError = error.cause ?? error;
    console.error(`${req.url}: ${pgError.code ?? ""} ${pgError.message}`);
    send(res, error.status ?? 500, { error: "Failed to send message" });
  }
}

serve(handle, { close: () => pool.end() });
