import type { FastifyInstance } from 'fastify';
import type { RouteDoc, ServerContext } from '../../context.js';
import { parseWith } from '../replies.js';
import { probeParam } from '../schemas.js';
import { nextCommandSchema } from '../response-schemas.js';

/**
 * `GET /api/v1/probes/{id}/next`: what a probe polls while its MQTT link is down (agent
 * link/poller.ts): 200 and a command (the shared commandSchema), or 204. Only with the probe's own
 * token and its own id.
 */
export const PROBE_LINK_ROUTES: readonly RouteDoc[] = [
  {
    method: 'GET',
    path: '/api/v1/probes/{id}/next',
    tag: 'probe link',
    summary: 'The next command for a polling probe',
    access: 'probe-self (the probe token of {id})',
    returns: { '200': nextCommandSchema },
    responses: { '200': 'a command (sonde/v1 command message)', '204': 'no command', '401': 'AUTH_REQUIRED', '403': 'FORBIDDEN' },
  },
];

export function registerProbeLinkRoutes(app: FastifyInstance, ctx: ServerContext): void {
  // No HEAD twin: asking hands a command out.
  app.get('/api/v1/probes/:id/next', { config: { access: 'probe-self' }, exposeHeadRoute: false }, async (req, reply) => {
    const { id } = parseWith(probeParam, req.params, 'params');
    const command = await ctx.commands.next(id);
    if (!command) return reply.code(204).send();
    return reply.code(200).header('cache-control', 'no-store').send(command);
  });
}
