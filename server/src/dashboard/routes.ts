import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { RouteDoc } from '../context.js';
import { ServerError } from '../errors.js';
import { sendError } from '../http/replies.js';
import { loadAssets, type Asset } from './assets.js';

/**
 * The dashboard served by the fleet server (issue 22, docs/dashboard.md): `GET /` is the sign-in
 * page (the same page becomes the dashboard once a session exists), `GET /assets/*` its script,
 * stylesheet and icon. Nothing comes from another origin: the Content-Security-Policy allows
 * scripts, styles, images and connections from this server only, no inline script, no framing.
 * The same headers go on every answer of the server, API included.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

export const DASHBOARD_ROUTES: readonly RouteDoc[] = [
  { method: 'GET', path: '/', tag: 'dashboard', summary: 'The dashboard: the sign-in page, then the fleet views', access: 'public', returns: { '200': 'text/html' }, responses: { '200': 'the page', '503': 'DASHBOARD_NOT_BUILT' } },
  ...['/assets/{file}', '/assets/views/{file}'].map(
    (path): RouteDoc => ({
      method: 'GET',
      path,
      tag: 'dashboard',
      summary: "The dashboard's scripts, stylesheet and icon (ETag; revalidated on each load)",
      access: 'public',
      returns: { '200': 'text/javascript' },
      responses: { '200': 'the file', '304': 'not modified', '404': 'NOT_FOUND' },
    }),
  ),
];

export function securityHeaders(app: FastifyInstance): void {
  app.addHook('onSend', async (_req, reply, payload) => {
    reply.header('content-security-policy', CONTENT_SECURITY_POLICY);
    reply.header('x-content-type-options', 'nosniff');
    reply.header('x-frame-options', 'DENY');
    reply.header('referrer-policy', 'no-referrer');
    reply.header('cross-origin-opener-policy', 'same-origin');
    return payload;
  });
}

function send(req: FastifyRequest, reply: FastifyReply, a: Asset): FastifyReply {
  reply.header('etag', a.etag).header('cache-control', 'no-cache');
  if (req.headers['if-none-match'] === a.etag) return reply.code(304).send();
  return reply.type(a.type).send(a.body);
}

export function registerDashboardRoutes(app: FastifyInstance): void {
  const assets = loadAssets();
  app.get('/', { config: { access: 'public' } }, async (req, reply) => {
    const index = assets.get('index.html');
    if (!index) throw new ServerError('DASHBOARD_NOT_BUILT', 'the dashboard is not built: run npm run build');
    return send(req, reply, index);
  });
  // Two levels, named: the page's modules and its views. A name is looked up in the set read at
  // start, never joined to a path on disk.
  for (const prefix of ['', 'views/']) {
    app.get(`/assets/${prefix}:file`, { config: { access: 'public' } }, async (req, reply) => {
      const name = prefix + (req.params as { file: string }).file;
      const a = name.endsWith('.html') ? undefined : assets.get(name);
      if (!a) return sendError(req, reply, 404, 'NOT_FOUND', `no asset ${name.slice(0, 100)}`);
      return send(req, reply, a);
    });
  }
}
