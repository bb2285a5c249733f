import type { X509Certificate } from 'node:crypto';
import { fingerprintHex, normaliseSerial, type RevocationList } from './revocations.js';

/**
 * Small facts about one certificate that the trust store (trust.ts) and the root-rotation walk
 * (root-rotation.ts) both judge by. Each answers a question; the callers decide what a "no" means.
 */

/** A root: a CA that issued and signed itself. */
export function isSelfSignedCa(cert: X509Certificate): boolean {
  return cert.ca && cert.checkIssued(cert) && cert.verify(cert.publicKey);
}

/** Whether `at` lies inside the certificate's validity. */
export function validAt(cert: X509Certificate, at: Date): boolean {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  return Number.isFinite(from) && Number.isFinite(to) && from <= at.getTime() && at.getTime() <= to;
}

/** Revoked by serial or by fingerprint in a signed list (none: nothing is revoked). */
export function isRevoked(cert: X509Certificate, list: RevocationList | null): boolean {
  if (list === null) return false;
  return list.serials.has(normaliseSerial(cert.serialNumber)) || list.fingerprints.has(fingerprintHex(cert));
}

/**
 * Retired: the certificate expired before the probe's trusted time floor (the newest signed
 * createdAt it accepted), so whatever it signs now claims a past the probe has already left.
 */
export function expiredBefore(cert: X509Certificate, timeFloor: Date | null): boolean {
  return timeFloor !== null && Date.parse(cert.validTo) < timeFloor.getTime();
}

/** A subject on one line, for messages. */
export function nameOf(cert: X509Certificate): string {
  return cert.subject.replace(/\n/g, ', ');
}
