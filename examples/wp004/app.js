// Seed 004, WP-004 "Database Transaction Safety Implementation": its two SvelteKit routes
// with Prisma 6.19 (driver adapter pg) as a plain Node server, each in three forms side by
// side under /original, /proposed and /recommended:
//   POST /VARIANT/api/identity/verify     identity_verify.spec (critical issue 1)
//   POST /VARIANT/api/submissions/create  nullifier_submission.spec and
//                                         idempotent_submission.spec (issues 2 and 3)
// pgrace starts one instance per session and races them. The user comes from the session
// cookie, as SvelteKit's hooks put it in locals; `throw error(409, ...)` answers 409 and an
// uncaught exception 500, as SvelteKit does; `return json(...)` answers 200.
'use strict';

const { PrismaClient } = require('./generated');
const { prismaClient, withRetry: retry } = require('../prisma');
const { serve, send, readText } = require('../serve');

const prisma = prismaClient(PrismaClient);
const withRetry = (attempt) => retry(attempt, () => { throw error(503, 'Too much contention, try again'); });

// SvelteKit's error(status, message): thrown, it becomes the answer.
class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}
const error = (status, message) => new HttpError(status, message);

/* ---------------------------------------------------------------- identity/verify */

// "Before": check, update, audit; three autocommitted statements.
async function verifyOriginal(userId, { identityHash, method }) {
  const existingUser = await prisma.user.findUnique({ where: { identity_hash: identityHash } });
  if (existingUser && existingUser.id !== userId) throw error(409, 'Identity already verified');
  await prisma.user.update({ where: { id: userId }, data: verifiedFields(identityHash, method) });
  const audit = await prisma.verificationAudit.create({
    data: { user_id: userId, status: 'success', method, identity_hash: identityHash },
  });
  return { success: true, auditId: audit.id };
}

// WP-004's fix as written: the same in $transaction (the database's default isolation);
// the failure audit is created, then the throw rolls it back with the transaction.
async function verifyProposed(userId, { identityHash, method }) {
  return prisma.$transaction(async (tx) => {
    // Check duplicate within transaction
    const existingUser = await tx.user.findUnique({ where: { identity_hash: identityHash } });

    if (existingUser && existingUser.id !== userId) {
      await tx.verificationAudit.create({
        data: { user_id: userId, status: 'failed', method, identity_hash: identityHash },
      });
      throw error(409, 'Identity already verified');
    }

    // Update user and create audit log atomically
    await tx.user.update({ where: { id: userId }, data: verifiedFields(identityHash, method) });
    const audit = await tx.verificationAudit.create({
      data: { user_id: userId, status: 'success', method, identity_hash: identityHash },
    });
    return { success: true, auditId: audit.id };
  });
}

// The check is the claim: updateMany WHERE identity_hash IS NULL, with the success audit in
// one transaction. Another user holding the hash (P2002 on user_identity_hash_key) or no
// row claimed (already verified) is a 409 whose failure audit is written after the
// rollback, so it stays. 40001/40P01 retry the whole transaction.
async function verifyRecommended(userId, { identityHash, method }) {
  const outcome = await withRetry(async () => {
    try {
      return await prisma.$transaction(async (tx) => {
        const claim = await tx.user.updateMany({
          where: { id: userId, identity_hash: null },
          data: verifiedFields(identityHash, method),
        });
        if (claim.count === 0) return 'conflict';
        const audit = await tx.verificationAudit.create({
          data: { user_id: userId, status: 'success', method, identity_hash: identityHash },
        });
        return { success: true, auditId: audit.id };
      });
    } catch (err) {
      if (err?.code === 'P2002') return 'conflict';
      throw err;
    }
  });
  if (outcome !== 'conflict') return outcome;
  await withRetry(() => prisma.verificationAudit.create({
    data: { user_id: userId, status: 'failed', method, identity_hash: identityHash },
  }));
  throw error(409, 'Identity already verified');
}

function verifiedFields(identityHash, method) {
  return { identity_hash: identityHash, is_verified: true, verified_at: new Date(), verification_method: method };
}

/* ---------------------------------------------------------------- submissions/create */

// "Before": findFirst by nullifier, then create; two autocommitted statements.
async function submitOriginal({ templateId, nullifier }) {
  const existingSubmission = await prisma.submission.findFirst({ where: { nullifier } });
  if (existingSubmission) throw error(409, 'Duplicate');
  return prisma.submission.create({ data: { template_id: templateId, nullifier } });
}

// WP-004's fix as written: idempotency key, then nullifier, then create, in $transaction.
async function submitProposed({ templateId, nullifier, idempotencyKey }) {
  return prisma.$transaction(async (tx) => {
    // Idempotency check
    if (idempotencyKey) {
      const existing = await tx.submission.findUnique({ where: { idempotency_key: idempotencyKey } });
      if (existing) return existing;
    }

    // Nullifier check
    const existingByNullifier = await tx.submission.findUnique({ where: { nullifier } });
    if (existingByNullifier) throw error(409, 'Duplicate nullifier');

    // Create submission
    return tx.submission.create({
      data: { template_id: templateId, nullifier, idempotency_key: idempotencyKey },
    });
  });
}

// The INSERT is the check: ON CONFLICT DO NOTHING RETURNING (Prisma's createManyAndReturn
// with skipDuplicates). No row back: the key's submission (a retry, 200), else the
// nullifier's (409); neither means the conflicting row rolled back: try again.
async function submitRecommended({ templateId, nullifier, idempotencyKey }) {
  return withRetry(async () => {
    for (;;) {
      const [created] = await prisma.submission.createManyAndReturn({
        data: [{ template_id: templateId, nullifier, idempotency_key: idempotencyKey }],
        skipDuplicates: true,
      });
      if (created) return created;
      if (idempotencyKey) {
        const existing = await prisma.submission.findUnique({ where: { idempotency_key: idempotencyKey } });
        if (existing) return existing;
      }
      if (await prisma.submission.findUnique({ where: { nullifier } })) throw error(409, 'Duplicate nullifier');
    }
  });
}

/* ---------------------------------------------------------------- serving */


// hooks.server.ts: the session cookie names the signed-in user.
async function signedInUser(req) {
  const sessionId = /(?:^|;\s*)session=([^;]*)/.exec(req.headers.cookie ?? '')?.[1];
  const session = sessionId && await prisma.session.findUnique({ where: { id: sessionId } });
  if (!session) throw error(401, 'Unauthorized');
  return session.userId;
}

const verify = { original: verifyOriginal, proposed: verifyProposed, recommended: verifyRecommended };
const submit = { original: submitOriginal, proposed: submitProposed, recommended: submitRecommended };

async function route(req, body) {
  const m = /^\/(original|proposed|recommended)(\/api\/identity\/verify|\/api\/submissions\/create)$/.exec(req.url);
  if (!m || req.method !== 'POST') throw error(404, 'Not found');
  if (m[2] === '/api/identity/verify') return verify[m[1]](await signedInUser(req), body);
  return submit[m[1]](body);
}

// SvelteKit answers error(status, message) with that status and an uncaught exception with
// 500 (serve() does the latter).
async function handle(req, res) {
  try {
    send(res, 200, await route(req, JSON.parse(await readText(req))));
  } catch (err) {
    if (!(err instanceof HttpError)) throw err;
    send(res, err.status, { message: err.message });
  }
}

serve(handle, { close: () => prisma.$disconnect() });
