import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { authenticate } from '../../auth/principal.js';
import { openSession, SESSION_COOKIE, SESSION_TTL_MS } from '../../auth/sessions.js';
import { TOKEN_SHAPE } from '../../auth/tokens.js';
import type { RouteDoc, ServerContext } from '../../context.js';
import { ServerError } from '../../errors.js';
import { logRefusedCredential } from '../access.js';
import { parseWith } from '../replies.js';
import { sessionViewSchema } from '../response-schemas.js';

/**
 * The dashboard's sign-in (issue 22): a staff token for a session cookie, who is signed in, sign
 * out. The cookie is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends
 * it), Path=/, and Secure whenever the request came over TLS (every address but loopback is TLS:
 * server.ts). The answer carries the CSRF token the page sends back with each mutating call.
 */
export const sessionBody = z.object({ token: z.string().regex(TOKEN_SHAPE, 'must be a staff token (43 base64url characters)') }).strict();

export const SESSION_ROUTES: readonly RouteDoc[] = [
  {
    method: 'POST',
    path: '/api/v1/session',
    tag: 'session',
    summary: 'Sign in to the dashboard: a staff token for a session cookie (HttpOnly, SameSite=Strict, Secure over TLS) and the CSRF token of the session',
    access: 'public',
    body: sessionBody,
    returns: { '201': sessionViewSchema },
    responseHeaders: { '201': { 'Set-Cookie': `${SESSION_COOKIE}=…; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200 (+ Secure over TLS)` } },
    responses: { '201': 'signed in', '400': 'BODY_INVALID', '401': 'AUTH_REQUIRED (unknown, revoked or probe token)' },
  },
  {
    method: 'GET',
    path: '/api/v1/session',
    tag: 'session',
    summary: 'Who is calling: name, role and, for a session, its CSRF token and expiry',
    access: 'viewer',
    returns: { '200': sessionViewSchema },
    responses: { '200': 'the caller', '401': 'AUTH_REQUIRED' },
  },
  {
    method: 'DELETE',
    path: '/api/v1/session',
    tag: 'session',
    summary: 'Sign out: the session ends on the server and its cookie is cleared',
    access: 'viewer',
    requestHeaders: { 'X-CSRF-Token': 'the session\'s CSRF token (every mutating call made with the cookie)' },
    responses: { '204': 'signed out', '403': 'CSRF_INVALID' },
  },
];

function overTls(req: FastifyRequest): boolean {
  return (req.raw.socket as Partial<TLSSocket>).encrypted === true;
}

function clearCookie(req: FastifyRequest, reply: FastifyReply): void {
  reply.clearCookie(SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'strict', secure: overTls(req) });
}

export function registerSessionRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.post('/api/v1/session', { config: { access: 'public' } }, async (req, reply) => {
    const { token } = parseWith(sessionBody, req.body, 'body');
    const p = await authenticate(ctx.store, token);
    if (!p || p.kind !== 'staff') {
      logRefusedCredential(req, 'sign-in token');
      throw new ServerError('AUTH_REQUIRED', 'this is not an active staff token');
    }
    // Known from here on: the audit hook records the sign-in under the token's id and name.
    req.principal = p;
    const s = await openSession(ctx.store, p);
    req.auditNote = { target: p.tokenId, detail: { role: p.role, expiresAt: s.expiresAt } };
    reply.setCookie(SESSION_COOKIE, s.secret, {
      path: '/',
      httpOnly: true,
      sameSite: 'strict',
      secure: overTls(req),
      maxAge: Math.floor(SESSION_TTL_MS / 1000),
    });
    return reply.code(201).header('cache-control', 'no-store').send({ tokenId: p.tokenId, name: p.name, role: p.role, csrfToken: s.csrf, expiresAt: s.expiresAt });
  });

  app.get('/api/v1/session', { config: { access: 'viewer' } }, async (req, reply) => {
    const p = req.principal!;
    if (p.kind !== 'staff') throw new ServerError('FORBIDDEN', 'a staff token is required');
    reply.header('cache-control', 'no-store');
    return { tokenId: p.tokenId, name: p.name, role: p.role, csrfToken: p.session?.csrf ?? null, expiresAt: p.session?.expiresAt ?? null };
  });

  app.delete('/api/v1/session', { config: { access: 'viewer' } }, async (req, reply) => {
    const p = req.principal!;
    if (p.kind === 'staff' && p.session) await ctx.store.sessions.delete(p.session.hash);
    clearCookie(req, reply);
    return reply.code(204).send();
  });
}
