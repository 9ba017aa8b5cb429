// Seed 001, PR #15 "Atomic invite claim — prevents duplicate Submissions": the open-i9
// route POST /api/submissions (Next.js + Prisma) as a plain Node server, its three forms
// side by side under /original, /proposed and /recommended. pgrace starts one instance per
// session and races them (examples/invite_claim/invite_claim.spec).
//
// The body is what the wizard posts: { inviteToken, name }. The answer carries the
// Submission's id as `id`, as the PR's table shows ({ id, success: true[, idempotent] }).
'use strict';

const { PrismaClient } = require('./generated');
const { prismaClient, withRetry: retry } = require('../prisma');
const { serve, send, readText } = require('../serve');

const prisma = prismaClient(PrismaClient);
const withRetry = (attempt) => retry(attempt, () => [503, { error: 'Too much contention, try again' }]);

// Before the PR: findUnique, then update and create, three autocommitted statements.
// Two POSTs both read usedAt = null and both create a Submission.
async function original({ inviteToken: token, name }) {
  const now = new Date();
  const invite = await prisma.invite.findUnique({ where: { token } });
  if (!invite) return [400, { error: 'Invalid invite token' }];
  if (invite.expiresAt <= now) return [410, { error: 'Invite has expired' }];
  if (invite.usedAt) return [409, { error: 'Invite already used' }];
  await prisma.invite.update({ where: { id: invite.id }, data: { usedAt: now } });
  const submission = await prisma.submission.create({ data: { inviteId: invite.id, name } });
  return [201, { id: submission.id, success: true }];
}

// The PR as merged: updateMany is the whole guard; count 0 looks up why. The claim commits
// on its own, before the Submission exists: a duplicate arriving in between gets 409.
async function proposed({ inviteToken: token, name }) {
  const now = new Date();
  const claim = await prisma.invite.updateMany({
    where: { token, usedAt: null, expiresAt: { gt: now } },
    data: { usedAt: now },
  });

  if (claim.count === 0) {
    // Already used / expired / missing — look up the original Submission
    const invite = await prisma.invite.findUnique({ where: { token } });
    if (!invite) return [400, { error: 'Invalid invite token' }];
    if (invite.expiresAt <= now) return [410, { error: 'Invite has expired' }];
    const prior = await prisma.submission.findFirst({
      where: { inviteId: invite.id }, orderBy: { id: 'asc' },
    });
    if (prior) return [200, { id: prior.id, success: true, idempotent: true }];
    return [409, { error: 'Invite already used' }];
  }

  const submission = await prisma.submission.create({
    data: { invite: { connect: { token } }, name },
  });
  return [201, { id: submission.id, success: true }];
}

// The claim and the Submission in one interactive transaction: the claim's row lock is held
// until the Submission is committed, so a duplicate waits and then finds it. A unique index
// on Submission.inviteId (the spec's variant setup) is the backstop. Under repeatable read
// and serializable the duplicate's UPDATE fails with 40001: retry the whole transaction.
async function recommended({ inviteToken: token, name }) {
  return withRetry(() => prisma.$transaction(async (tx) => {
    const now = new Date();
    const [claimed] = await tx.invite.updateManyAndReturn({
      where: { token, usedAt: null, expiresAt: { gt: now } },
      data: { usedAt: now },
      select: { id: true },
    });
    if (claimed) {
      const submission = await tx.submission.create({ data: { inviteId: claimed.id, name } });
      return [201, { id: submission.id, success: true }];
    }
    const invite = await tx.invite.findUnique({
      where: { token },
      select: { expiresAt: true, submissions: { select: { id: true }, orderBy: { id: 'asc' }, take: 1 } },
    });
    if (!invite) return [400, { error: 'Invalid invite token' }];
    if (invite.expiresAt <= now) return [410, { error: 'Invite has expired' }];
    const [prior] = invite.submissions;
    if (prior) return [200, { id: prior.id, success: true, idempotent: true }];
    return [409, { error: 'Invite already used' }];
  }));
}


const routes = {
  '/original/api/submissions': original,
  '/proposed/api/submissions': proposed,
  '/recommended/api/submissions': recommended,
};

// Next.js answers an uncaught exception with 500; so does serve().
async function handle(req, res) {
  const handler = req.method === 'POST' ? routes[req.url] : undefined;
  if (!handler) return send(res, 404, { error: 'Not found' });
  const [status, body] = await handler(JSON.parse(await readText(req)));
  send(res, status, body);
}

serve(handle, { close: () => prisma.$disconnect() });
