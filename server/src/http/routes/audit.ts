import type { FastifyInstance } from 'fastify';
import type { RouteDoc, ServerContext } from '../../context.js';
import { parseWith } from '../replies.js';
import { auditQuery, settingsBody } from '../schemas.js';
import { WEBHOOK_URL_SETTING } from '../../webhooks/webhook.js';
import { z } from 'zod';
import { auditEntrySchema, settingsSchema } from '../response-schemas.js';

/** The audit log (who, what, when) and the run-time settings (the webhook URL). */
export const AUDIT_ROUTES: readonly RouteDoc[] = [
  {
    method: 'GET',
    path: '/api/v1/audit',
    tag: 'audit',
    summary: 'The audit log, newest first (filters: actor, action, since; paging: limit, before=<id>)',
    access: 'admin',
    query: auditQuery,
    returns: { '200': z.array(auditEntrySchema) },
    responses: { '200': 'an array of { id, at, actor, actorName, action, target, status, detail }' },
  },
  { method: 'GET', path: '/api/v1/settings', tag: 'settings', summary: 'Run-time settings', access: 'admin', returns: { '200': settingsSchema }, responses: { '200': '{ webhookUrl }' } },
  {
    method: 'PUT',
    path: '/api/v1/settings',
    tag: 'settings',
    summary: 'Change run-time settings (the webhook URL; null turns it off)',
    access: 'admin',
    body: settingsBody,
    returns: { '200': settingsSchema },
    responses: { '200': '{ webhookUrl }', '400': 'BODY_INVALID' },
  },
];

export function registerAuditRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/api/v1/audit', { config: { access: 'admin' } }, async (req) => {
    const q = parseWith(auditQuery, req.query, 'query');
    return ctx.store.audit.query(q);
  });

  app.get('/api/v1/settings', { config: { access: 'admin' } }, async () => ({ webhookUrl: await ctx.store.settings.get(WEBHOOK_URL_SETTING) }));

  app.put('/api/v1/settings', { config: { access: 'admin' } }, async (req) => {
    const body = parseWith(settingsBody, req.body, 'body');
    await ctx.store.settings.set(WEBHOOK_URL_SETTING, body.webhookUrl);
    // A webhook URL may carry a secret in its query string: the audit keeps its origin.
    req.auditNote = { detail: { webhook: body.webhookUrl === null ? null : new URL(body.webhookUrl).origin } };
    return { webhookUrl: body.webhookUrl };
  });
}
