import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { actorOf } from '../auth/principal.js';
import type { RouteDoc } from '../context.js';
import { rolloutCreateBody } from '../rollouts/definition.js';
import type { Actor } from '../rollouts/engine.js';
import { ENVIRONMENTS } from '../rollouts/environments.js';
import { ROLLOUT_STATES, TARGET_STATES } from '../rollouts/machine.js';
import type { RolloutService } from '../rollouts/rollout-service.js';
import { approvalView, rolloutView, statusView, targetView } from '../rollouts/views.js';
import { noBody } from './schemas.js';
import { parseWith } from './replies.js';
import { rolloutViewSchema, rolloutStatusSchema, targetViewSchema, rolloutApprovedSchema, rolloutRetriedSchema, rolloutRollbackSchema, approvalViewSchema } from './response-schemas.js';

/**
 * Rollouts (docs/rollouts.md): viewers read them; operators create, start, pause, resume, abort,
 * retry the failed probes and approve the next wave; only an admin approves a promotion to the
 * next environment (it widens what the pack may reach). Every call is audited by the access
 * hooks (who, what, when), with the rollout id as target.
 */
const idParam = z.object({ id: z.string() }).strict();
const csv = <T extends readonly [string, ...string[]]>(values: T) =>
  z
    .string()
    .max(500)
    .transform((s) => s.split(',').filter(Boolean))
    .pipe(z.array(z.enum(values)));

export const rolloutListQuery = z
  .object({
    state: csv(ROLLOUT_STATES).optional(),
    pack: z.string().regex(/^[0-9a-f]{64}$/).optional(),
    environment: z.enum(ENVIRONMENTS).optional(),
    limit: z.coerce.number().int().min(1).max(1000).default(100),
  })
  .strict();

export const rolloutTargetsQuery = z
  .object({
    state: csv(TARGET_STATES).optional(),
    wave: z.coerce.number().int().min(-1).max(100).optional(),
    limit: z.coerce.number().int().min(1).max(10_000).default(1000),
    offset: z.coerce.number().int().min(0).default(0),
  })
  .strict();

export const rolloutRetryBody = z.object({ probeIds: z.array(z.string().max(63)).min(1).max(10_000).optional() }).strict();

const R = '/api/v1/rollouts';
const tag = 'rollouts';

export const ROLLOUT_ROUTES: readonly RouteDoc[] = [
  {
    method: 'POST',
    path: R,
    tag,
    summary: 'Create a rollout (a pack × a target × a strategy, maintenance windows, an environment) and start it unless draft',
    access: 'operator',
    body: rolloutCreateBody,
    returns: { '201': rolloutViewSchema },
    responses: {
      '201': 'the rollout',
      '400': 'BODY_INVALID',
      '404': 'PACK_NOT_FOUND or PROBE_NOT_FOUND',
      '409': 'PROMOTION_REQUIRED',
      '422': 'ROLLOUT_TARGET_EMPTY',
    },
  },
  { method: 'GET', path: R, tag, summary: 'List rollouts, newest first (filters: state=a,b, pack, environment; limit)', access: 'viewer', query: rolloutListQuery, returns: { '200': z.array(rolloutViewSchema) }, responses: { '200': 'an array of rollouts' } },
  {
    method: 'GET',
    path: `${R}/{id}`,
    tag,
    summary: 'A rollout with its progress per wave (committed = updated, from install-outcome events only), window, approvals and history',
    access: 'viewer',
    returns: { '200': rolloutStatusSchema },
    responses: { '200': 'the rollout status', '404': 'ROLLOUT_NOT_FOUND' },
  },
  {
    method: 'GET',
    path: `${R}/{id}/targets`,
    tag,
    summary: 'The probes of a rollout: wave, state, attempt, command, error code (filters: state=a,b, wave; limit, offset)',
    access: 'viewer',
    query: rolloutTargetsQuery,
    returns: { '200': z.array(targetViewSchema) },
    responses: { '200': 'an array of targets', '404': 'ROLLOUT_NOT_FOUND' },
  },
  ...(['start', 'pause', 'resume', 'abort'] as const).map(
    (action): RouteDoc => ({
      method: 'POST',
      path: `${R}/{id}/${action}`,
      tag,
      summary: {
        start: 'Start a draft rollout',
        pause: 'Pause: no further commands are sent',
        resume: 'Resume a paused rollout (after a pause for errors, the failures so far stop counting against the error threshold)',
        abort: 'Abort: probes not yet commanded are skipped, unacknowledged commands cancelled',
      }[action],
      access: 'operator',
      returns: { '200': rolloutViewSchema },
      responses: { '200': 'the rollout', '404': 'ROLLOUT_NOT_FOUND', '409': 'ROLLOUT_STATE_CONFLICT' },
    }),
  ),
  {
    method: 'POST',
    path: `${R}/{id}/approve`,
    tag,
    summary: 'Approve the next wave of a rollout awaiting approval (recorded with who and when)',
    access: 'operator',
    returns: { '200': rolloutApprovedSchema },
    responses: { '200': '{ rollout, approval }', '404': 'ROLLOUT_NOT_FOUND', '409': 'ROLLOUT_STATE_CONFLICT' },
  },
  {
    method: 'POST',
    path: `${R}/{id}/retry`,
    tag,
    summary: 'Send the failed and rolled-back probes of the started waves a new command (all, or the probeIds given)',
    access: 'operator',
    body: rolloutRetryBody,
    returns: { '200': rolloutRetriedSchema },
    responses: { '200': '{ rollout, retried }', '404': 'ROLLOUT_NOT_FOUND', '409': 'ROLLOUT_STATE_CONFLICT' },
  },
  {
    method: 'POST',
    path: `${R}/{id}/rollback`,
    tag,
    summary: 'Take a rollout back: abort it if under way, then send every probe it committed a rollback command (to its previous committed release)',
    access: 'operator',
    returns: { '202': rolloutRollbackSchema },
    responses: { '202': '{ rollout, commands }', '404': 'ROLLOUT_NOT_FOUND' },
  },
  {
    method: 'POST',
    path: `${R}/{id}/promote`,
    tag,
    summary: "Approve the promotion of a completed rollout's pack to the next environment (integration → qa → uat → production)",
    access: 'admin',
    returns: { '200': approvalViewSchema },
    responses: { '200': 'the approval', '404': 'ROLLOUT_NOT_FOUND', '409': 'ROLLOUT_STATE_CONFLICT' },
  },
];

function who(req: FastifyRequest): Actor {
  // Every route here needs a staff token: the access hook has set the principal.
  return actorOf(req.principal!);
}

export function registerRolloutRoutes(app: FastifyInstance, service: RolloutService): void {
  app.post(R, { config: { access: 'operator' } }, async (req, reply) => {
    const body = parseWith(rolloutCreateBody, req.body, 'body');
    const r = await service.create(body, who(req));
    req.auditNote = {
      target: r.id,
      detail: { packSha256: r.packSha256, version: r.packVersion, environment: r.environment, target: r.target, waves: r.waveCount, state: r.state },
    };
    return reply.code(201).send(rolloutView(r));
  });

  app.get(R, { config: { access: 'viewer' } }, async (req) => {
    const q = parseWith(rolloutListQuery, req.query, 'query');
    return (await service.list({ states: q.state, packSha256: q.pack, environment: q.environment, limit: q.limit })).map(rolloutView);
  });

  app.get(`${R}/:id`, { config: { access: 'viewer' } }, async (req) => {
    const { id } = parseWith(idParam, req.params, 'params');
    return statusView(await service.status(id));
  });

  app.get(`${R}/:id/targets`, { config: { access: 'viewer' } }, async (req) => {
    const { id } = parseWith(idParam, req.params, 'params');
    const q = parseWith(rolloutTargetsQuery, req.query, 'query');
    return (await service.targets(id, { states: q.state, wave: q.wave, limit: q.limit, offset: q.offset })).map(targetView);
  });

  for (const action of ['start', 'pause', 'abort'] as const) {
    app.post(`${R}/:id/${action}`, { config: { access: 'operator' } }, async (req) => {
      const { id } = parseWith(idParam, req.params, 'params');
      parseWith(noBody, req.body ?? {}, 'body');
      const r = await service.act(id, action, who(req));
      req.auditNote = { target: id, detail: { state: r.state, wave: r.wave } };
      return rolloutView(r);
    });
  }

  app.post(`${R}/:id/resume`, { config: { access: 'operator' } }, async (req) => {
    const { id } = parseWith(idParam, req.params, 'params');
    parseWith(noBody, req.body ?? {}, 'body');
    const r = await service.resume(id, who(req));
    req.auditNote = { target: id, detail: { state: r.state, wave: r.wave } };
    return rolloutView(r);
  });

  app.post(`${R}/:id/approve`, { config: { access: 'operator' } }, async (req) => {
    const { id } = parseWith(idParam, req.params, 'params');
    parseWith(noBody, req.body ?? {}, 'body');
    const { rollout, approval } = await service.approve(id, who(req));
    req.auditNote = { target: id, detail: { approved: 'wave', wave: approval.wave, state: rollout.state } };
    return { rollout: rolloutView(rollout), approval: approvalView(approval) };
  });

  app.post(`${R}/:id/retry`, { config: { access: 'operator' } }, async (req) => {
    const { id } = parseWith(idParam, req.params, 'params');
    const body = parseWith(rolloutRetryBody, req.body ?? {}, 'body');
    const { rollout, retried } = await service.retry(id, who(req), body.probeIds);
    req.auditNote = { target: id, detail: { retried: retried.length, state: rollout.state } };
    return { rollout: rolloutView(rollout), retried };
  });

  app.post(`${R}/:id/rollback`, { config: { access: 'operator' } }, async (req, reply) => {
    const { id } = parseWith(idParam, req.params, 'params');
    parseWith(noBody, req.body ?? {}, 'body');
    const { rollout, commands } = await service.rollback(id, who(req));
    req.auditNote = { target: id, detail: { rollback: commands.length, state: rollout.state } };
    return reply.code(202).send({ rollout: rolloutView(rollout), commands });
  });

  app.post(`${R}/:id/promote`, { config: { access: 'admin' } }, async (req) => {
    const { id } = parseWith(idParam, req.params, 'params');
    parseWith(noBody, req.body ?? {}, 'body');
    const a = await service.promote(id, who(req));
    req.auditNote = { target: id, detail: { approved: 'promotion', environment: a.environment, packSha256: a.packSha256 } };
    return approvalView(a);
  });
}
