import type { Role, Store } from '../store/types.js';
import { ROLES } from '../store/types.js';
import { hashToken, sameHash } from './tokens.js';

/** Who is calling: a staff member with a role, or one probe. */
export type Principal =
  | {
      readonly kind: 'staff';
      readonly tokenId: string;
      readonly name: string;
      readonly role: Role;
      /** Set when the caller came with a dashboard session cookie rather than the token (auth/sessions.ts). */
      readonly session?: { readonly hash: string; readonly csrf: string; readonly expiresAt: string };
    }
  | { readonly kind: 'probe'; readonly tokenId: string; readonly probeId: string };

/** The audit log's name for a principal: ids, never secrets. */
export function actorOf(p: Principal): { actor: string; actorName: string } {
  return p.kind === 'staff' ? { actor: `staff:${p.tokenId}`, actorName: p.name } : { actor: `probe:${p.probeId}`, actorName: p.probeId };
}

export function roleAtLeast(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

/** Looks a presented secret up by its hash; null when unknown or revoked. */
export async function authenticate(store: Store, secret: string): Promise<Principal | null> {
  const hash = hashToken(secret);
  const found = await store.tokens.findActiveByHash(hash);
  // The lookup is by hash already; the constant-time compare keeps it so if a store ever
  // matches by something weaker (a prefix index, a cache).
  if (!found || !sameHash(found.hash, hash)) return null;
  const t = found.token;
  if (t.kind === 'staff' && t.role !== null) return { kind: 'staff', tokenId: t.id, name: t.name, role: t.role };
  if (t.kind === 'probe' && t.probeId !== null) return { kind: 'probe', tokenId: t.id, probeId: t.probeId };
  return null;
}
