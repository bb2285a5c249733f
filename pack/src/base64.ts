/**
 * Base64 as its encoder writes it: no unused bits set, so there are no two spellings of the same
 * bytes. Node's decoder ignores those bits, so a flip there would go unseen; every base64 field
 * of a pack and of a revocation list must be canonical (a flip in manifest.sig's was accepted
 * once: test/security/pack-byte-flip.test.ts found it).
 */
export function isCanonicalBase64(b64: string): boolean {
  return Buffer.from(b64, 'base64').toString('base64') === b64;
}
