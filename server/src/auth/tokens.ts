import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Staff and probe tokens (DESIGN.md, "Fleet server" -> Security): 256 random bits, base64url (43
 * characters, what the agent's credential file accepts), stored only as their SHA-256. A slow
 * password hash would buy nothing for random values and would cost minutes across 10,000 probe
 * logins. The secret is returned once, to whoever created it, and never logged.
 */
export const TOKEN_SHAPE = /^[A-Za-z0-9_-]{32,128}$/;

export function newTokenSecret(): string {
  return randomBytes(32).toString('base64url');
}

export function newTokenId(): string {
  return `tok_${randomBytes(8).toString('hex')}`;
}

export function hashToken(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex');
}

/** Compares two hex SHA-256 digests in constant time. */
export function sameHash(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === 32 && y.length === 32 && timingSafeEqual(x, y);
}

/** The token of an `Authorization: Bearer <token>` header, or null for anything else. */
export function bearerOf(header: string | undefined): string | null {
  if (header === undefined) return null;
  const m = /^Bearer ([A-Za-z0-9_-]+)$/i.exec(header.trim());
  return m && TOKEN_SHAPE.test(m[1]!) ? m[1]! : null;
}
