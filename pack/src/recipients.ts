import { constants, createHash, createPublicKey, privateDecrypt, publicEncrypt, randomBytes, type KeyObject } from 'node:crypto';
import { PackError } from './errors.js';
import type { Recipient } from './manifest.js';

/**
 * Content-key wrapping (DESIGN.md, "Encryption"): one random 256-bit key per pack, wrapped for
 * each recipient with RSA-OAEP-SHA256. A recipient is found by the sha256 of its public key, so
 * the fleet key, a group key or one probe's key all work the same way.
 */
export function keyIdOf(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256').update(pub.export({ type: 'spki', format: 'der' })).digest('hex');
}

export function newContentKey(): Buffer {
  return randomBytes(32);
}

export function wrapFor(publicKey: KeyObject, label: string, contentKey: Buffer): Recipient {
  if (publicKey.asymmetricKeyType !== 'rsa' || (publicKey.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) {
    throw new PackError('RECIPIENT_NOT_FOUND', `recipient ${label} must have an RSA key of at least 2048 bits`);
  }
  const wrapped = publicEncrypt({ key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, contentKey);
  return { keyId: keyIdOf(publicKey), label, algorithm: 'rsa-oaep-sha256', wrappedKey: wrapped.toString('base64') };
}

export function unwrapWith(privateKey: KeyObject, recipients: readonly Recipient[]): Buffer {
  const id = keyIdOf(privateKey);
  const mine = recipients.find((r) => r.keyId === id);
  if (!mine) {
    throw new PackError('RECIPIENT_NOT_FOUND', `the pack is not encrypted for this key (key id ${id.slice(0, 16)}…)`);
  }
  let key: Buffer;
  try {
    key = privateDecrypt(
      { key: privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      Buffer.from(mine.wrappedKey, 'base64'),
    );
  } catch (e) {
    throw new PackError('KEY_UNWRAP_FAILED', `could not unwrap the content key for recipient ${mine.label}`, { cause: e });
  }
  if (key.length !== 32) throw new PackError('KEY_UNWRAP_FAILED', 'the unwrapped content key has the wrong length');
  return key;
}
