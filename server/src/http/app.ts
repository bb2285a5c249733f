import fastifyCookie from '@fastify/cookie';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { RouteDoc, ServerContext, ServerModule } from '../context.js';
import { installAccessControl, installAudit } from './access.js';
import { openApiDocument } from './openapi.js';
import { errorHandler, sendError } from './replies.js';
import { AUDIT_ROUTES, registerAuditRoutes } from './routes/audit.js';
import { META_ROUTES, registerMetaRoutes } from './routes/meta.js';
import { PACK_CONTENT_ROUTES, registerPackContentRoutes } from './routes/pack-content.js';
import { PACK_ROUTES, registerPackRoutes } from './routes/packs.js';
import { PROBE_LINK_ROUTES, registerProbeLinkRoutes } from './routes/probe-link.js';
import { PROBE_ROUTES, registerProbeRoutes } from './routes/probes.js';
import { registerTokenRoutes, TOKEN_ROUTES } from './routes/tokens.js';
import { SONDE_VERSION } from '../../../base/src/version.js';
import { DASHBOARD_ROUTES, registerDashboardRoutes, securityHeaders } from '../dashboard/routes.js';
import { LiveHub, LIVE_ROUTES, registerLiveRoutes } from '../live/live-stream.js';
import { registerSessionRoutes, SESSION_ROUTES } from './routes/session.js';
import { recordRoutes } from './method-not-allowed.js';

/**
 * The HTTP API (docs/http-api.md): one fastify instance, routes by group in routes/, access
 * control and audit as hooks (access.ts), JSON bodies capped at `maxBodyBytes` and parsed with
 * zod, errors in one shape (replies.ts). The same instance serves plain HTTP on loopback and
 * HTTPS on the --listen addresses (server.ts hands those requests to `app.routing`).
 */
export const CORE_ROUTES: readonly RouteDoc[] = [...META_ROUTES, ...PACK_ROUTES, ...PACK_CONTENT_ROUTES, ...PROBE_ROUTES, ...PROBE_LINK_ROUTES, ...TOKEN_ROUTES, ...AUDIT_ROUTES, ...SESSION_ROUTES, ...LIVE_ROUTES, ...DASHBOARD_ROUTES];

export const SERVER_VERSION = SONDE_VERSION;

export async function buildHttpApp(ctx: ServerContext, modules: readonly ServerModule[]): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: ctx.log.child({ component: 'http' }) as FastifyBaseLogger,
    // Requests are counted in /metrics and mutations audited; a line per probe poll would drown the log.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: ctx.options.maxBodyBytes,
    return503OnClosing: true,
    forceCloseConnections: true,
    routerOptions: { maxParamLength: 256 },
  });
  const methodsOf = recordRoutes(app);
  // Parses the Cookie header (the dashboard's session) and serializes Set-Cookie; no signing: the
  // session secret is random and looked up by its hash (auth/sessions.ts).
  await app.register(fastifyCookie);
  installAccessControl(app, ctx.store);
  installAudit(app, ctx.store, ctx.metrics);
  securityHeaders(app);
  app.setErrorHandler(errorHandler(ctx.log));
  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0]!;
    const allowed = methodsOf(path);
    if (allowed.length > 0 && !allowed.includes(req.method)) {
      reply.header('allow', allowed.join(', '));
      return sendError(req, reply, 405, 'METHOD_NOT_ALLOWED', `${path.slice(0, 200)} answers ${allowed.join(', ')}, not ${req.method}`);
    }
    return sendError(req, reply, 404, 'NOT_FOUND', `no route ${req.method} ${path.slice(0, 200)}`);
  });

  const docs: RouteDoc[] = [...CORE_ROUTES, ...modules.flatMap((m) => m.routes ?? [])];
  const document = openApiDocument(docs, SERVER_VERSION);
  registerMetaRoutes(app, ctx, () => document);
  await registerPackRoutes(app, ctx);
  registerPackContentRoutes(app, ctx);
  registerProbeRoutes(app, ctx);
  registerProbeLinkRoutes(app, ctx);
  registerTokenRoutes(app, ctx);
  registerAuditRoutes(app, ctx);
  registerSessionRoutes(app, ctx);
  registerLiveRoutes(app, new LiveHub(ctx.changes, ctx.store, ctx.log.child({ component: 'live' }), ctx.options.live));
  registerDashboardRoutes(app);
  for (const m of modules) await m.register?.(ctx, app);
  await app.ready();
  return app;
}
