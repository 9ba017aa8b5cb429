// The live chat's two entities that seed 000 touches, as TypeORM EntitySchemas (plain JS:
// decorators would need a transpiler). Column names are snake_case, as the plan's
// @Index(..., { where: "form_request_message_id IS NOT NULL" }) shows they are.
//
// entities({ plan31 }) gives the schema before the plan (a plain index for the lookup) or
// with Plan 3.1's partial unique index. The app never synchronizes: the spec's setup holds
// the DDL TypeORM emits for these (capture_ddl.js prints it).
const { EntitySchema } = require("typeorm");

function entities({ plan31 = false } = {}) {
  const Message = new EntitySchema({
    name: "Message",
    tableName: "message",
    columns: {
      id: { type: "bigint", primary: true, generated: "increment" },
      conversationId: { name: "conversation_id", type: "bigint" },
      contentType: { name: "content_type", type: "text" },      // form_request | form_submission
      // '{}' as jsonb_build_object(): a spec's SQL block ends at its first '}'
      metadata: { type: "jsonb", default: () => "jsonb_build_object()" },
      fromCustomer: { name: "from_customer", type: "boolean", default: false },
      createdAt: { name: "created_at", type: "timestamptz", createDate: true },
    },
    indices: [{ name: "message_conversation_idx", columns: ["conversationId"] }],
  });

  const ActionSubmission = new EntitySchema({
    name: "ActionSubmission",
    tableName: "action_submission",
    columns: {
      id: { type: "bigint", primary: true, generated: "increment" },
      conversationId: { name: "conversation_id", type: "bigint" },
      templateId: { name: "template_id", type: "bigint" },
      visitorId: { name: "visitor_id", type: "bigint", nullable: true },
      creatorId: { name: "creator_id", type: "text", nullable: true },
      formRequestMessageId: { name: "form_request_message_id", type: "bigint", nullable: true },
      data: { type: "jsonb" },
      createdAt: { name: "created_at", type: "timestamptz", createDate: true },
    },
    relations: {
      formRequestMessage: {
        type: "many-to-one",
        target: "Message",
        joinColumn: { name: "form_request_message_id" },
        nullable: true,
      },
    },
    indices: [
      { name: "action_submission_conversation_idx", columns: ["conversationId"] },
      plan31
        ? // Plan 3.1: @Index(["formRequestMessageId"], { unique: true, where: "form_request_message_id IS NOT NULL" })
          { name: "action_submission_form_request_unique", columns: ["formRequestMessageId"], unique: true,
            where: "form_request_message_id IS NOT NULL" }
        : { name: "action_submission_form_request_idx", columns: ["formRequestMessageId"] },
    ],
  });

  return { Message, ActionSubmission };
}

module.exports = { entities };
