// Seed 000, "Plan 3.1: Enforce Submission Integrity": ActionsService.submitFormAsVisitor in
// its own stack, TypeORM 1.1 on node-postgres, behind a plain http server instead of NestJS.
//
//   POST /VARIANT/actions/submit  {"conversationId", "formRequestMessageId", "visitorId", "data"}
//   201 {"id", ...}: the submission; 400 no such form request; 409 already submitted;
//   500 anything uncaught (Nest's default exception filter); 503 the recommended form gave up.
//
// The seed never shows submitFormAsVisitor's body; it says it runs in manager.transaction and
// wraps manager.save(submission). The body here is scenarios/form_submission.c's model of it:
// find the form request, look for a submission answering it, save the submission, save a
// form_submission message, mark the form request submitted. The seed's manager.save(entity)
// is manager.save(Entity, entity) here: an EntitySchema's rows are plain objects, so TypeORM
// needs the target named; it sends the same statements. The variants:
//   original          that transaction, no unique index (the spec's setup: a plain index)
//   proposed          Plan 3.1: the partial unique index (variant setup) and the catch of
//                     23505 around manager.save(submission) -> ConflictException (409)
//   proposed_nocheck  the same plan on a service that does not look for a submission first
//   recommended       the index is the check: INSERT ... ON CONFLICT DO NOTHING RETURNING id
//                     (TypeORM's orIgnore), no row -> 409; the whole transaction retried on
//                     40001/40P01
//
// What TypeORM sends for one submit (TYPEORM_LOGGING=1 prints it): START TRANSACTION;
// findOne -> SELECT ... FROM "message" WHERE id = $1 LIMIT 1; findOne -> SELECT ... FROM
// "action_submission" WHERE form_request_message_id = $1 LIMIT 1; save(new) -> INSERT ...
// RETURNING "id", "created_at"; save(new message) -> INSERT ... RETURNING; save(loaded form
// request) -> SELECT it again by id, then UPDATE "message" SET "metadata" = $1 WHERE id = $2
// (only the changed column); COMMIT. A throw in the callback -> ROLLBACK.
const { DataSource } = require("typeorm");
const { entities } = require("./entities");
const { serve, send, readText } = require("../serve");

const { Message, ActionSubmission } = entities();
const dataSource = new DataSource({
  type: "postgres",
  url: process.env.DATABASE_URL,        // its options put us in the variant's schema and level
  entities: [Message, ActionSubmission],
  synchronize: false,                   // the spec's setup holds the DDL
  logging: process.env.TYPEORM_LOGGING === "1" ? ["query", "error"] : false,
});

// NestJS's exceptions, as far as the service uses them.
class HttpException extends Error {
  constructor(status, message) { super(message); this.status = status; }
}
const BadRequestException = (m) => new HttpException(400, m);
const ConflictException = (m) => new HttpException(409, m);

// ---------------------------------------------------------------- the service's steps

async function findFormRequest(manager, dto) {
  const formRequest = await manager.findOne(Message, { where: { id: dto.formRequestMessageId } });
  if (!formRequest || formRequest.contentType !== "form_request") throw BadRequestException("Form request not found");
  return formRequest;
}

async function rejectIfAlreadySubmitted(manager, dto) {
  const existing = await manager.findOne(ActionSubmission, { where: { formRequestMessageId: dto.formRequestMessageId } });
  if (existing) throw ConflictException("This form has already been submitted");
}

function newSubmission(manager, dto, formRequest) {
  return manager.create(ActionSubmission, {
    conversationId: dto.conversationId,
    templateId: formRequest.metadata.templateId,
    visitorId: dto.visitorId,
    formRequestMessageId: dto.formRequestMessageId,
    data: dto.data,
  });
}

// The form_submission message and the form request's "Submitted" badge.
async function recordSubmission(manager, dto, formRequest, submissionId) {
  await manager.save(Message, manager.create(Message, {
    conversationId: dto.conversationId,
    contentType: "form_submission",
    metadata: { formRequestMessageId: dto.formRequestMessageId, submissionId, data: dto.data },
    fromCustomer: true,
  }));
  formRequest.metadata = { ...formRequest.metadata, submissionId, submittedAt: new Date().toISOString() };
  await manager.save(Message, formRequest);
}

// ---------------------------------------------------------------- original

async function submitOriginal(dto) {
  return dataSource.manager.transaction(async (manager) => {
    const formRequest = await findFormRequest(manager, dto);
    await rejectIfAlreadySubmitted(manager, dto);
    const submission = newSubmission(manager, dto, formRequest);
    await manager.save(ActionSubmission, submission);
    await recordSubmission(manager, dto, formRequest, submission.id);
    return submission;
  });
}

// ---------------------------------------------------------------- proposed (Plan 3.1)

// The plan's task 2: wrap manager.save(submission); 23505 -> ConflictException, rethrow the rest.
async function saveSubmissionPlan31(manager, submission) {
  try {
    await manager.save(ActionSubmission, submission);
  } catch (error) {
    if (error.code === "23505") throw ConflictException("This form has already been submitted");
    throw error;
  }
}

async function submitProposed(dto) {
  return dataSource.manager.transaction(async (manager) => {
    const formRequest = await findFormRequest(manager, dto);
    await rejectIfAlreadySubmitted(manager, dto);
    const submission = newSubmission(manager, dto, formRequest);
    await saveSubmissionPlan31(manager, submission);
    await recordSubmission(manager, dto, formRequest, submission.id);
    return submission;
  });
}

// The same plan on a service that does not look for an existing submission first.
async function submitProposedNocheck(dto) {
  return dataSource.manager.transaction(async (manager) => {
    const formRequest = await findFormRequest(manager, dto);
    const submission = newSubmission(manager, dto, formRequest);
    await saveSubmissionPlan31(manager, submission);
    await recordSubmission(manager, dto, formRequest, submission.id);
    return submission;
  });
}

// ---------------------------------------------------------------- recommended

const RETRYABLE = new Set(["40001", "40P01"]);     // serialization failure, deadlock

async function submitRecommended(dto) {
  for (let attempt = 1; attempt <= 10; attempt++) {
    try {
      return await dataSource.manager.transaction(async (manager) => {
        const formRequest = await findFormRequest(manager, dto);
        const submission = newSubmission(manager, dto, formRequest);
        // The unique index is the check; no SELECT before it (under serializable that
        // SELECT's predicate lock makes neighbouring form requests abort each other).
        const inserted = await manager.createQueryBuilder()
          .insert().into(ActionSubmission).values(submission).orIgnore().returning(["id"]).execute();
        if (inserted.raw.length === 0) throw ConflictException("This form has already been submitted");
        submission.id = inserted.raw[0].id;
        await recordSubmission(manager, dto, formRequest, submission.id);
        return submission;
      });
    } catch (error) {
      if (!RETRYABLE.has(error.code)) throw error;
    }
  }
  throw new HttpException(503, "Gave up retrying");
}

const VARIANTS = {
  original: submitOriginal,
  proposed: submitProposed,
  proposed_nocheck: submitProposedNocheck,
  recommended: submitRecommended,
};

// ---------------------------------------------------------------- the server

async function handle(req, res) {
  const m = /^\/(\w+)\/actions\/submit$/.exec(req.url);
  const submit = m && req.method === "POST" ? VARIANTS[m[1]] : undefined;
  if (!submit) return send(res, 404, { statusCode: 404, message: "Not Found" });
  const text = await readText(req);
  try {
    const submission = await submit(JSON.parse(text));
    send(res, 201, { id: Number(submission.id), formRequestMessageId: Number(submission.formRequestMessageId) });
  } catch (error) {
    if (error instanceof HttpException) return send(res, error.status, { statusCode: error.status, message: error.message });
    console.error(`${req.url}: ${error.code ?? ""} ${error.message}`);
    send(res, 500, { statusCode: 500, message: "Internal server error" });
  }
}

serve(handle, { ready: dataSource.initialize(), close: () => dataSource.destroy() });
