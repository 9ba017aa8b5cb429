// src/db/schema/message.ts of seed 003, as far as the pattern needs it, in drizzle-orm's
// pg-core (plain JS). The seed's other columns and indexes (parent_id for threads,
// search_content with its gin index) are left out: no statement here touches them.
// drizzle-kit is not installed here; the spec's setup is the DDL these tables map to,
// written by hand in drizzle-kit's format.
const { pgTable, bigint, bigserial, integer, text, timestamp, index, uniqueIndex, check } = require("drizzle-orm/pg-core");
const { sql } = require("drizzle-orm");

const channels = pgTable("channels", {
  id: bigint("id", { mode: "number" }).primaryKey(),
  name: text("name").notNull(),
});

const conversations = pgTable("conversations", {
  id: bigint("id", { mode: "number" }).primaryKey(),
});

const messageColumns = () => ({
  id: bigserial("id", { mode: "number" }).primaryKey(),
  content: text("content").notNull(),
  authorId: bigint("author_id", { mode: "number" }).notNull(),
  channelId: bigint("channel_id", { mode: "number" }).references(() => channels.id),
  conversationId: bigint("conversation_id", { mode: "number" }).references(() => conversations.id),
  sequence: integer("sequence").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).defaultNow().notNull(),
});

// The table after plan 09-06, task 1: the index array with the two partial unique indexes.
const messages = pgTable("messages", messageColumns(), (table) => [
  index("messages_channel_seq_idx").on(table.channelId, table.sequence),
  index("messages_conversation_seq_idx").on(table.conversationId, table.sequence),
  index("messages_author_idx").on(table.authorId),
  // Add unique indexes for sequence integrity
  uniqueIndex("messages_channel_seq_unique_idx").on(table.channelId, table.sequence).where(sql`${table.channelId} IS NOT NULL`),
  uniqueIndex("messages_conversation_seq_unique_idx").on(table.conversationId, table.sequence).where(sql`${table.conversationId} IS NOT NULL`),
  // a message belongs to a channel or to a conversation
  check("messages_one_target", sql`(${table.channelId} IS NULL) <> (${table.conversationId} IS NULL)`),
]);

// The recommended form's migration: a counter per channel / conversation, and the client's
// id for a message, unique per author, so a resend finds the stored message.
const channelsCounted = pgTable("channels", {
  id: bigint("id", { mode: "number" }).primaryKey(),
  name: text("name").notNull(),
  lastSequence: integer("last_sequence"),              // NULL: not counted yet
});

const conversationsCounted = pgTable("conversations", {
  id: bigint("id", { mode: "number" }).primaryKey(),
  lastSequence: integer("last_sequence"),
});

const messagesWithClientId = pgTable("messages", { ...messageColumns(), clientMsgId: text("client_msg_id") }, (table) => [
  uniqueIndex("messages_client_msg_idx").on(table.authorId, table.clientMsgId),
]);

module.exports = { channels, conversations, messages, channelsCounted, conversationsCounted, messagesWithClientId };
