import type { FastifyInstance } from 'fastify';
import { hashToken, newTokenId, newTokenSecret } from '../../auth/tokens.js';
import type { RouteDoc, ServerContext } from '../../context.js';
import { ServerError } from '../../errors.js';
import { parseWith } from '../replies.js';
import { tokenCreateBody, tokenParam } from '../schemas.js';
import { z } from 'zod';
import { tokenCreatedSchema, tokenViewSchema } from '../response-schemas.js';

/** Staff tokens (admin only). The secret is in the creation answer and nowhere else, ever. */
export const TOKEN_ROUTES: readonly RouteDoc[] = [
  {
    method: 'POST',
    path: '/api/v1/tokens',
    tag: 'tokens',
    summary: 'Create a staff token with a role (viewer, operator, admin); the secret is answered once',
    access: 'admin',
    body: tokenCreateBody,
    returns: { '201': tokenCreatedSchema },
    responses: { '201': '{ id, name, role, createdAt, token }', '400': 'BODY_INVALID' },
  },
  { method: 'GET', path: '/api/v1/tokens', tag: 'tokens', summary: 'List tokens (staff and probe), without secrets', access: 'admin', returns: { '200': z.array(tokenViewSchema) }, responses: { '200': 'an array of tokens' } },
  {
    method: 'DELETE',
    path: '/api/v1/tokens/{tokenId}',
    tag: 'tokens',
    summary: 'Revoke a token',
    access: 'admin',
    responses: { '204': 'revoked', '404': 'TOKEN_NOT_FOUND' },
  },
];

export function registerTokenRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/api/v1/tokens', { config: { access: 'admin' } }, async (req, reply) => {
    const body = parseWith(tokenCreateBody, req.body, 'body');
    const secret = newTokenSecret();
    const t = await ctx.store.tokens.create({ id: newTokenId(), kind: 'staff', name: body.name, role: body.role, probeId: null, hash: hashToken(secret) });
    req.auditNote = { target: t.id, detail: { name: t.name, role: t.role } };
    return reply.code(201).header('cache-control', 'no-store').send({ id: t.id, name: t.name, role: t.role, createdAt: t.createdAt, token: secret });
  });

  app.get('/api/v1/tokens', { config: { access: 'admin' } }, async () => ctx.store.tokens.list());

  app.delete('/api/v1/tokens/:tokenId', { config: { access: 'admin' } }, async (req, reply) => {
    const { tokenId } = parseWith(tokenParam, req.params, 'params');
    if (!(await ctx.store.tokens.revoke(tokenId))) throw new ServerError('TOKEN_NOT_FOUND', `no active token ${tokenId}`);
    return reply.code(204).send();
  });
}
