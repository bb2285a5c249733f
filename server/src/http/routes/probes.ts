import type { FastifyInstance } from 'fastify';
import type { RouteDoc, ServerContext } from '../../context.js';
import { parseWith } from '../replies.js';
import { commandBody, commandParam, deploymentParam, enrollBody, fleetQuery, probeBulkPatchBody, probeListQuery, probeParam, probePatchBody, rollbackBody } from '../schemas.js';
import { ServerError } from '../../errors.js';
import { commandView, probeView } from '../views.js';
import { z } from 'zod';
import { probeViewSchema, probeDetailSchema, enrollmentSchema, commandViewSchema, commandsSchema, fleetSummarySchema, labelsResultSchema, receiptSchema } from '../response-schemas.js';
import { receiptOf } from '../receipt.js';

/** The inventory: probes, their attributes, enrollment, and commands to one probe. */
export const PROBE_ROUTES: readonly RouteDoc[] = [
  {
    method: 'GET',
    path: '/api/v1/probes',
    tag: 'probes',
    summary: 'List probes (filters: channel, group, tag, online, q, version, agentBelow, health, outcome; sort, order; limit, offset); the total is in X-Total-Count',
    access: 'viewer',
    query: probeListQuery,
    responseHeaders: { '200': { 'X-Total-Count': 'probes matching the filters, all pages together' } },
    returns: { '200': z.array(probeViewSchema) },
    responses: { '200': 'an array of probes', '401': 'AUTH_REQUIRED' },
  },
  {
    method: 'PATCH',
    path: '/api/v1/probes',
    tag: 'probes',
    summary: 'Set the channel, add or remove groups and tags of many probes at once (one transaction); unknown ids are named, not fatal',
    access: 'operator',
    body: probeBulkPatchBody,
    returns: { '200': labelsResultSchema },
    responses: { '200': '{ updated, missing }', '400': 'BODY_INVALID' },
  },
  {
    method: 'GET',
    path: '/api/v1/fleet',
    tag: 'probes',
    summary: 'The fleet at a glance: counts by health, online, version and channel, and the probes with problems, worst first (query: limit)',
    access: 'viewer',
    query: fleetQuery,
    returns: { '200': fleetSummarySchema },
    responses: { '200': 'the summary' },
  },
  {
    method: 'GET',
    path: '/api/v1/probes/{id}/deployments/{deploymentId}',
    tag: 'probes',
    summary: "One deployment's receipt: each state with its time, the outcome with its reason (and the app's last words), every event",
    access: 'viewer',
    returns: { '200': receiptSchema },
    responses: { '200': 'the receipt', '400': 'PROBE_ID_INVALID', '404': 'PROBE_NOT_FOUND or DEPLOYMENT_NOT_FOUND' },
  },
  {
    method: 'GET',
    path: '/api/v1/probes/{id}',
    tag: 'probes',
    summary: 'A probe: its last state, deployment history, recent commands and events',
    access: 'viewer',
    returns: { '200': probeDetailSchema },
    responses: { '200': 'the probe', '400': 'PROBE_ID_INVALID', '404': 'PROBE_NOT_FOUND' },
  },
  {
    method: 'PATCH',
    path: '/api/v1/probes/{id}',
    tag: 'probes',
    summary: 'Set the channel, add or remove groups and tags',
    access: 'operator',
    body: probePatchBody,
    returns: { '200': probeViewSchema },
    responses: { '200': 'the probe', '400': 'BODY_INVALID', '404': 'PROBE_NOT_FOUND' },
  },
  {
    method: 'POST',
    path: '/api/v1/probes/{id}/enroll',
    tag: 'probes',
    summary: 'Enroll a probe (or re-key it: its earlier token stops working); answers its credential file, token included, once',
    access: 'admin',
    body: enrollBody,
    returns: { '200': enrollmentSchema, '201': enrollmentSchema },
    responses: { '201': 'a new probe: the credential file', '200': 're-keyed: the credential file', '400': 'PROBE_ID_INVALID, PROBE_ID_RESERVED' },
  },
  {
    method: 'POST',
    path: '/api/v1/probes/{id}/commands',
    tag: 'commands',
    summary: 'Send one probe a command (install a pack, roll back, report now); kept until the probe acknowledges it',
    access: 'operator',
    body: commandBody,
    returns: { '202': commandViewSchema },
    responses: { '202': 'the command', '404': 'PROBE_NOT_FOUND or PACK_NOT_FOUND' },
  },
  {
    method: 'POST',
    path: '/api/v1/rollbacks',
    tag: 'commands',
    summary: 'Return probes (by id, or a whole group) to their previous committed release: one rollback command each, with the agent\'s own refusals',
    access: 'operator',
    body: rollbackBody,
    returns: { '202': commandsSchema },
    responses: { '202': '{ commands }: one per probe', '400': 'BODY_INVALID', '404': 'PROBE_NOT_FOUND (a probe id, or a group with no probe)' },
  },
  {
    method: 'GET',
    path: '/api/v1/commands/{commandId}',
    tag: 'commands',
    summary: 'A command and its status',
    access: 'viewer',
    returns: { '200': commandViewSchema },
    responses: { '200': 'the command', '404': 'NOT_FOUND' },
  },
  {
    method: 'POST',
    path: '/api/v1/commands/{commandId}/cancel',
    tag: 'commands',
    summary: 'Cancel a command (the probe is told when it already has it)',
    access: 'operator',
    returns: { '200': commandViewSchema },
    responses: { '200': 'the command', '404': 'NOT_FOUND' },
  },
];

export function registerProbeRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/api/v1/probes', { config: { access: 'viewer' } }, async (req, reply) => {
    const q = parseWith(probeListQuery, req.query, 'query');
    const query = {
      channel: q.channel,
      group: q.group,
      tag: q.tag,
      online: q.online === undefined ? undefined : q.online === 'true',
      text: q.q,
      version: q.version,
      agentBelow: q.agentBelow,
      health: q.health,
      outcome: q.outcome,
      sort: q.sort,
      order: q.order,
    };
    const { probes, total } = await ctx.probes.list(query, { limit: q.limit, offset: q.offset });
    reply.header('x-total-count', total);
    return probes.map(probeView);
  });

  app.patch('/api/v1/probes', { config: { access: 'operator' } }, async (req) => {
    const { probeIds, ...patch } = parseWith(probeBulkPatchBody, req.body, 'body');
    const updated = await ctx.probes.updateMany(probeIds, patch);
    if (updated.length > 0) ctx.changes.publish({ kind: 'probes', ids: updated });
    const found = new Set(updated);
    const missing = [...new Set(probeIds)].filter((id) => !found.has(id));
    req.auditNote = { target: updated.length === 1 ? updated[0]! : `${updated.length} probes`, detail: { ...patch, probes: updated.length, missing: missing.length } };
    return { updated, missing };
  });

  app.get('/api/v1/fleet', { config: { access: 'viewer' } }, async (req) => {
    const { limit } = parseWith(fleetQuery, req.query, 'query');
    return ctx.probes.summary(limit);
  });

  app.get('/api/v1/probes/:id/deployments/:deploymentId', { config: { access: 'viewer' } }, async (req) => {
    const { id, deploymentId } = parseWith(deploymentParam, req.params, 'params');
    return receiptOf(await ctx.probes.deployment(id, deploymentId));
  });

  app.get('/api/v1/probes/:id', { config: { access: 'viewer' } }, async (req) => {
    const { id } = parseWith(probeParam, req.params, 'params');
    const d = await ctx.probes.detail(id);
    return {
      ...probeView(d.probe),
      state: d.probe.state,
      deployments: d.deployments,
      commands: d.commands.map(commandView),
      events: d.events.map((e) => ({ ...e.event, receivedAt: e.receivedAt })),
    };
  });

  app.patch('/api/v1/probes/:id', { config: { access: 'operator' } }, async (req) => {
    const { id } = parseWith(probeParam, req.params, 'params');
    const patch = parseWith(probePatchBody, req.body, 'body');
    const p = await ctx.probes.update(id, patch);
    ctx.changes.publish({ kind: 'probes', ids: [id] });
    req.auditNote = { target: id, detail: { ...patch } };
    return probeView(p);
  });

  app.post('/api/v1/probes/:id/enroll', { config: { access: 'admin' } }, async (req, reply) => {
    const { id } = parseWith(probeParam, req.params, 'params');
    const body = parseWith(enrollBody, req.body ?? {}, 'body');
    const { credentials, created } = await ctx.probes.enroll(id, { httpUrl: body.serverUrl, mqttUrl: body.mqttUrl });
    req.auditNote = { target: id, detail: { created, http: credentials.server.http, mqtt: credentials.server.mqtt } };
    return reply.code(created ? 201 : 200).header('cache-control', 'no-store').send(credentials);
  });

  app.post('/api/v1/probes/:id/commands', { config: { access: 'operator' } }, async (req, reply) => {
    const { id } = parseWith(probeParam, req.params, 'params');
    const body = parseWith(commandBody, req.body, 'body');
    await ctx.probes.get(id);
    const c = await ctx.commands.send(id, body);
    req.auditNote = { target: id, detail: { commandId: c.commandId, type: c.type, packSha256: c.packSha256 } };
    return reply.code(202).send(commandView(c));
  });

  app.post('/api/v1/rollbacks', { config: { access: 'operator' } }, async (req, reply) => {
    const body = parseWith(rollbackBody, req.body, 'body');
    const ids = 'probeIds' in body ? body.probeIds : await ctx.probes.match({ group: body.group });
    if (ids.length === 0) throw new ServerError('PROBE_NOT_FOUND', `no probe is in group ${JSON.stringify('group' in body ? body.group : '')}`);
    const commands = await ctx.commands.sendMany(ids, { type: 'rollback' });
    req.auditNote = { target: 'group' in body ? `group:${body.group}` : (ids.length === 1 ? ids[0]! : `${ids.length} probes`), detail: { type: 'rollback', probes: ids.length } };
    return reply.code(202).send({ commands: commands.map(commandView) });
  });

  app.get('/api/v1/commands/:commandId', { config: { access: 'viewer' } }, async (req) => {
    const { commandId } = parseWith(commandParam, req.params, 'params');
    return commandView(await ctx.commands.get(commandId));
  });

  app.post('/api/v1/commands/:commandId/cancel', { config: { access: 'operator' } }, async (req) => {
    const { commandId } = parseWith(commandParam, req.params, 'params');
    const c = await ctx.commands.cancel(commandId);
    req.auditNote = { target: commandId, detail: { probeId: c.probeId, status: c.status } };
    return commandView(c);
  });
}
