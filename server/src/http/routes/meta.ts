import type { FastifyInstance } from 'fastify';
import type { RouteDoc, ServerContext } from '../../context.js';
import { openApiSchema, okSchema } from '../response-schemas.js';

/** The routes anyone may call: the OpenAPI document, Prometheus metrics, a liveness check. */
export const META_ROUTES: readonly RouteDoc[] = [
  { method: 'GET', path: '/api/v1/openapi.json', tag: 'meta', summary: 'This document', access: 'public', returns: { '200': openApiSchema }, responses: { '200': 'OpenAPI 3.1' } },
  { method: 'GET', path: '/metrics', tag: 'meta', summary: 'Prometheus metrics (text format 0.0.4)', access: 'public', returns: { '200': 'text/plain' }, responses: { '200': 'text/plain' } },
  { method: 'GET', path: '/healthz', tag: 'meta', summary: 'Liveness', access: 'public', returns: { '200': okSchema }, responses: { '200': '{ ok: true }' } },
];

export function registerMetaRoutes(app: FastifyInstance, ctx: ServerContext, openapi: () => unknown): void {
  app.get('/api/v1/openapi.json', { config: { access: 'public' } }, async () => openapi());
  app.get('/metrics', { config: { access: 'public' } }, async (_req, reply) => {
    const { text, contentType } = await ctx.metrics.render();
    return reply.type(contentType).send(text);
  });
  app.get('/healthz', { config: { access: 'public' } }, async () => ({ ok: true }));
}
