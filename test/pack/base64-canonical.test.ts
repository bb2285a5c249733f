import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isCanonicalBase64 } from '../../pack/src/base64.js';
import { payloadSchema, recipientSchema } from '../../pack/src/manifest.js';

/**
 * Node's base64 decoder ignores the unused low bits of the last character before `=`, so one
 * byte string has several spellings. Every base64 field of a pack must be the encoder's own
 * spelling: a flip in those bits of manifest.sig was once accepted (found by
 * test/security/pack-byte-flip.test.ts, depending on the freshly made keys).
 */
/** The same bytes, spelled with an unused bit set (needs padding, so unused bits exist). */
function respelled(b64: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  const i = b64.search(/=/) - 1;
  const v = alphabet.indexOf(b64[i]!);
  return `${b64.slice(0, i)}${alphabet[v ^ 1]}${b64.slice(i + 1)}`;
}

describe('canonical base64', () => {
  it('tells the encoder’s spelling from another spelling of the same bytes', () => {
    const good = Buffer.from([1]).toString('base64');
    expect(good).toBe('AQ==');
    expect(isCanonicalBase64(good)).toBe(true);
    expect(Buffer.from('AR==', 'base64')).toEqual(Buffer.from([1]));
    expect(isCanonicalBase64('AR==')).toBe(false);
    expect(isCanonicalBase64('')).toBe(true);
  });

  it('is required of a payload’s salt and a recipient’s wrapped key in the manifest', () => {
    const salt = randomBytes(16).toString('base64');
    const payload = { name: 'app', type: 'app', file: 'payloads/00-app', size: 1, sha256: '0'.repeat(64), unpackedSize: 1, fileCount: 1, compression: 'none', encryption: { salt } };
    expect(payloadSchema.safeParse(payload).success).toBe(true);
    const bad = respelled(salt);
    expect(Buffer.from(bad, 'base64')).toEqual(Buffer.from(salt, 'base64'));
    expect(payloadSchema.safeParse({ ...payload, encryption: { salt: bad } }).success).toBe(false);

    const wrappedKey = randomBytes(385).toString('base64'); // 385 bytes: padded, so unused bits
    const recipient = { keyId: '0'.repeat(64), label: 'fleet', algorithm: 'rsa-oaep-sha256', wrappedKey };
    expect(recipientSchema.safeParse(recipient).success).toBe(true);
    expect(recipientSchema.safeParse({ ...recipient, wrappedKey: respelled(wrappedKey) }).success).toBe(false);
  });
});
