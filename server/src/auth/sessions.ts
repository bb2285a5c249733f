import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Store } from '../store/types.js';
import { hashToken, sameHash, TOKEN_SHAPE } from './tokens.js';
import type { Principal } from './principal.js';

/**
 * Dashboard sessions (issue 22, docs/dashboard.md "Sign-in"). A staff token, typed once into the
 * sign-in page, is exchanged for a session: a fresh 256-bit secret in a cookie (HttpOnly,
 * SameSite=Strict, Secure whenever the request came over TLS) and a CSRF token the page keeps in
 * memory and sends as `X-CSRF-Token` with every mutating call. The server keeps only the cookie's
 * SHA-256, the token it stands for and the CSRF token; revoking that token ends its sessions at
 * once (the lookup joins the token), and a session ends 12 hours after sign-in whatever happens.
 *
 * The token itself never reaches a cookie or the browser's storage: a stolen cookie is worth 12
 * hours of one session and is cut by signing out or revoking the token.
 */
export const SESSION_COOKIE = 'sonde_session';
export const SESSION_TTL_MS = 12 * 3600_000;
export const CSRF_HEADER = 'x-csrf-token';

export interface NewSession {
  readonly secret: string;
  readonly csrf: string;
  readonly expiresAt: string;
}

export async function openSession(store: Store, p: Extract<Principal, { kind: 'staff' }>, now = new Date()): Promise<NewSession> {
  const secret = randomBytes(32).toString('base64url');
  const csrf = randomBytes(32).toString('base64url');
  const expiresAt = new Date(now.getTime() + SESSION_TTL_MS).toISOString();
  await store.sessions.create({ hash: hashToken(secret), tokenId: p.tokenId, csrf, createdAt: now.toISOString(), expiresAt });
  // Sign-ins are rare: the expired and revoked ones go now rather than on a timer of their own.
  await store.sessions.prune(now.toISOString());
  return { secret, csrf, expiresAt };
}

/** The principal a session cookie stands for, or null (unknown, expired, token revoked, not staff). */
export async function sessionPrincipal(store: Store, secret: string, now = new Date()): Promise<Principal | null> {
  if (!TOKEN_SHAPE.test(secret)) return null;
  const hash = hashToken(secret);
  const s = await store.sessions.find(hash, now.toISOString());
  if (!s || !sameHash(s.hash, hash) || s.token.role === null) return null;
  return { kind: 'staff', tokenId: s.token.id, name: s.token.name, role: s.token.role, session: { hash: s.hash, csrf: s.csrf, expiresAt: s.expiresAt } };
}

/** Whether the header carries the session's CSRF token (constant time). */
export function csrfMatches(expected: string, presented: string | string[] | undefined): boolean {
  if (typeof presented !== 'string') return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(presented);
  return a.length === b.length && a.length > 0 && timingSafeEqual(a, b);
}
