import { createPrivateKey } from 'node:crypto';
import { fingerprintHex, signRevocations } from '../../pack/src/revocations.js';
import type { OddCert } from './odd-pki.js';

/** The code a trust decision throws ('ok' when none), and its message: one decision per assertion. */
export function verdict(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
    return { code: 'ok', message: '' };
  } catch (e) {
    return { code: (e as { code?: string }).code ?? 'none', message: (e as Error).message };
  }
}

export async function averdict(fn: () => Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await fn();
    return { code: 'ok', message: '' };
  } catch (e) {
    return { code: (e as { code?: string }).code ?? 'none', message: (e as Error).message };
  }
}

/** A revocation list signed by `issuer` (its private key's PEM), with `sequence` and these revocations. */
export function signedList(issuer: OddCert, keyPem: string, sequence: number, revoked: { serial?: string; fingerprint256?: string }[]): string {
  const body = { issuer: fingerprintHex(issuer.cert), sequence, issuedAt: new Date().toISOString(), revoked: revoked.map((r) => ({ ...r, revokedAt: new Date().toISOString() })) };
  return JSON.stringify(signRevocations(body, createPrivateKey(keyPem)));
}
