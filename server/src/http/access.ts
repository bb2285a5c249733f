import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { assertNever } from '../../../base/src/errors/sonde-error.js';
import { actorOf, authenticate, roleAtLeast, type Principal } from '../auth/principal.js';
import { bearerOf } from '../auth/tokens.js';
import { csrfMatches, CSRF_HEADER, SESSION_COOKIE, sessionPrincipal } from '../auth/sessions.js';
import type { Metrics } from '../metrics/registry.js';
import type { Role, Store } from '../store/types.js';
import { sendError } from './replies.js';

/**
 * Who may call what (issue 5, Security). Every route declares its access in its config, and a
 * route that declares none is refused at registration, so nothing is open by omission.
 *
 *   public           no token: the OpenAPI document, /metrics, /healthz
 *   viewer, operator, admin   a staff token with at least that role
 *   probe-self       a probe token, and only for the probe named in the path (`:id`)
 *   probe-or-viewer  a probe token or a viewer (the route checks what a probe may fetch)
 *
 * Without a valid token: 401 AUTH_REQUIRED; with one that is not enough: 403 FORBIDDEN. Both are
 * decided before the body is read.
 *
 * The dashboard's session cookie (auth/sessions.ts) stands for its staff token when no
 * Authorization header is sent; a mutating call made with the cookie must also carry the
 * session's CSRF token in `X-CSRF-Token`, else 403 CSRF_INVALID.
 */
export type Access = 'public' | Role | 'probe-self' | 'probe-or-viewer';

export interface AuditNote {
  target?: string;
  detail?: Record<string, unknown>;
}

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: Access;
  }
  interface FastifyRequest {
    principal: Principal | null;
    auditNote: AuditNote | null;
  }
}

/** Every route registered, as `METHOD /url` (HEAD routes fastify adds left out): what the OpenAPI test compares. */
const registered = new WeakMap<object, string[]>();

export function registeredRoutes(app: FastifyInstance): readonly string[] {
  return registered.get(app) ?? [];
}

export function installAccessControl(app: FastifyInstance, store: Store): void {
  app.decorateRequest('principal', null);
  app.decorateRequest('auditNote', null);
  const routes: string[] = [];
  registered.set(app, routes);
  app.addHook('onRoute', (route) => {
    const access = (route.config as { access?: Access } | undefined)?.access;
    if (access === undefined) throw new Error(`route ${route.method} ${route.url} declares no access`);
    for (const m of [route.method].flat()) if (m !== 'HEAD') routes.push(`${m} ${route.url}`);
  });
  app.addHook('onRequest', async (req, reply) => {
    req.auditNote = {};
    const access = req.routeOptions.config.access;
    // Unmatched URLs have no access; the not-found handler answers them.
    if (access === undefined || access === 'public') return;
    const principal = await principalOf(req, store);
    if (!principal) {
      logRefusedCredential(req, presentedCredential(req));
      return deny(req, reply, 401, 'AUTH_REQUIRED', 'a valid token is required: Authorization: Bearer <token>, or a dashboard session');
    }
    req.principal = principal;
    if (principal.kind === 'staff' && principal.session && MUTATING.has(req.method) && !csrfMatches(principal.session.csrf, req.headers[CSRF_HEADER])) {
      return deny(req, reply, 403, 'CSRF_INVALID', 'a call made with the dashboard session must carry its X-CSRF-Token');
    }
    const why = refusal(access, principal, req.params as Record<string, string> | undefined);
    if (why) return deny(req, reply, 403, 'FORBIDDEN', why);
  });
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** The bearer token when an Authorization header is sent (and then only it), else the session cookie. */
async function principalOf(req: FastifyRequest, store: Store): Promise<Principal | null> {
  if (req.headers.authorization !== undefined) {
    const secret = bearerOf(req.headers.authorization);
    return secret === null ? null : authenticate(store, secret);
  }
  const cookie = req.cookies?.[SESSION_COOKIE];
  return cookie === undefined ? null : sessionPrincipal(store, cookie);
}

/** What credential a request presented: the Authorization header, else the session cookie, else none. */
function presentedCredential(req: FastifyRequest): 'bearer token' | 'session cookie' | null {
  if (req.headers.authorization !== undefined) return 'bearer token';
  return req.cookies?.[SESSION_COOKIE] !== undefined ? 'session cookie' : null;
}

/**
 * A credential presented and refused (unknown, revoked, expired, malformed) goes to the server's
 * log with the caller's address: the trace of a stolen token that was revoked, or of guessing.
 * Not to the audit log, which there is no known caller to record under and which an anonymous
 * caller must not be able to grow; the log rotates. A request with no credential at all (a
 * dashboard page before sign-in) is not logged.
 */
export function logRefusedCredential(req: FastifyRequest, credential: string | null): void {
  if (credential === null) return;
  req.log.warn({ ip: req.ip, method: req.method, route: req.routeOptions.url ?? req.url, credential }, `refused a ${credential}: unknown, revoked or expired`);
}

function deny(req: FastifyRequest, reply: FastifyReply, status: number, code: string, message: string): FastifyReply {
  return sendError(req, reply, status, code, message);
}

function refusal(access: Exclude<Access, 'public'>, p: Principal, params: Record<string, string> | undefined): string | null {
  switch (access) {
    case 'viewer':
    case 'operator':
    case 'admin':
      if (p.kind !== 'staff') return `a ${access} token is required`;
      return roleAtLeast(p.role, access) ? null : `this needs the ${access} role; the token has ${p.role}`;
    case 'probe-self':
      if (p.kind !== 'probe') return 'a probe token is required';
      return params?.['id'] === p.probeId ? null : 'a probe may only ask for itself';
    case 'probe-or-viewer':
      return null;
    default:
      return assertNever(access, 'access');
  }
}

/** Every mutating call with a known caller goes to the audit log, refused ones included. */
export function installAudit(app: FastifyInstance, store: Store, metrics: Metrics): void {
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.httpRequests.inc({ method: req.method, route, status: String(reply.statusCode) });
    metrics.httpDuration.observe({ method: req.method, route }, reply.elapsedTime / 1000);
    if (req.method === 'GET' || req.method === 'HEAD' || req.method === 'OPTIONS' || !req.principal) return;
    const note = req.auditNote ?? {};
    const params = req.params as Record<string, string> | undefined;
    await store.audit.append({
      at: new Date().toISOString(),
      ...actorOf(req.principal),
      action: `${req.method} ${route}`,
      target: note.target ?? params?.['id'] ?? params?.['sha256'] ?? params?.['commandId'] ?? params?.['tokenId'] ?? null,
      status: reply.statusCode,
      detail: note.detail ?? null,
    });
  });
}
