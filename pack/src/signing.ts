import { createSign, createVerify, constants, type KeyObject } from 'node:crypto';
import { PackError } from './errors.js';

/**
 * The signature algorithms Sonde accepts (DESIGN.md, "The service pack", step 3): RSA-PSS with
 * SHA-256 and a 32-byte salt for RSA keys of at least 3072 bits (what `sonde keys` issues), and
 * ECDSA P-256 with SHA-256 (DER-encoded) for chains from an external PKI. The algorithm follows
 * from the key; a declared algorithm that disagrees with the key is refused by the caller.
 */
export type SignatureAlgorithm = 'rsa-pss-sha256' | 'ecdsa-p256-sha256';

export const MIN_RSA_BITS = 3072;

export function algorithmFor(key: KeyObject): SignatureAlgorithm {
  const type = key.asymmetricKeyType;
  const details = key.asymmetricKeyDetails ?? {};
  if (type === 'rsa' || type === 'rsa-pss') {
    const bits = details.modulusLength ?? 0;
    if (bits < MIN_RSA_BITS) {
      throw new PackError('SIGNER_KEY_UNSUPPORTED', `RSA key of ${bits} bits; at least ${MIN_RSA_BITS} required`);
    }
    return 'rsa-pss-sha256';
  }
  if (type === 'ec' && details.namedCurve === 'prime256v1') return 'ecdsa-p256-sha256';
  throw new PackError(
    'SIGNER_KEY_UNSUPPORTED',
    `unsupported signing key: ${type ?? 'unknown'}${details.namedCurve ? ` (${details.namedCurve})` : ''}`,
  );
}

export function signBytes(privateKey: KeyObject, data: Uint8Array): { algorithm: SignatureAlgorithm; signature: Buffer } {
  const algorithm = algorithmFor(privateKey);
  const signer = createSign('sha256');
  signer.update(data);
  const signature =
    algorithm === 'rsa-pss-sha256'
      ? signer.sign({ key: privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 })
      : signer.sign({ key: privateKey, dsaEncoding: 'der' });
  return { algorithm, signature };
}

/** True only when `signature` is a valid signature of `data` by `publicKey` under `algorithm`. */
export function verifyBytes(
  publicKey: KeyObject,
  algorithm: SignatureAlgorithm,
  data: Uint8Array,
  signature: Uint8Array,
): boolean {
  if (algorithmFor(publicKey) !== algorithm) return false;
  const verifier = createVerify('sha256');
  verifier.update(data);
  try {
    return algorithm === 'rsa-pss-sha256'
      ? verifier.verify({ key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, signature)
      : verifier.verify({ key: publicKey, dsaEncoding: 'der' }, signature);
  } catch {
    return false;
  }
}
