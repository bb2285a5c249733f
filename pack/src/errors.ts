import { SondeError } from '../../base/src/errors/sonde-error.js';

/**
 * Codes for everything that can go wrong while reading, verifying, decrypting or extracting a
 * service pack. Each is documented in docs/errors.md under "Pack".
 */
export const PACK_CODES = [
  'PACK_UNREADABLE',
  'PACK_FORMAT',
  'PACK_TRUNCATED',
  'PACK_UNSUPPORTED_VERSION',
  'MANIFEST_INVALID',
  'SIGNATURE_MALFORMED',
  'SIGNATURE_INVALID',
  'SIGNER_KEY_UNSUPPORTED',
  'CHAIN_INVALID',
  'CHAIN_UNTRUSTED',
  'SIGNER_NOT_CODE_SIGNING',
  'CERT_NOT_VALID_AT_CREATION',
  'CERT_REVOKED',
  'CERT_EXPIRED_BEFORE_FLOOR',
  'KEYRING_INVALID',
  'REVOCATIONS_INVALID',
  'TRUST_PACK_UNAUTHORISED',
  'TRUST_PACK_NOT_ROOT_SIGNED',
  'TRUST_PACK_ROOT_SET_INVALID',
  'REVOCATIONS_NOT_NEWER',
  'ROOT_ROTATION_INVALID',
  'ROOT_ROTATION_UNTRUSTED',
  'PAYLOAD_SIZE_MISMATCH',
  'PAYLOAD_HASH_MISMATCH',
  'RECIPIENT_KEY_REQUIRED',
  'RECIPIENT_NOT_FOUND',
  'KEY_UNWRAP_FAILED',
  'DECRYPT_FAILED',
  'DECOMPRESS_FAILED',
  'COMPRESSION_RATIO_EXCEEDED',
  'UNPACKED_SIZE_MISMATCH',
  'FILE_COUNT_MISMATCH',
  'PAYLOAD_TAR_INVALID',
  'UNSAFE_PATH',
  'UNSAFE_ENTRY_TYPE',
  'DUPLICATE_ENTRY',
  'STAGING_NOT_EMPTY',
  'STAGING_WRITE_FAILED',
] as const;

export type PackCode = (typeof PACK_CODES)[number];

export class PackError extends SondeError<PackCode> {
  override readonly domain = 'pack';
}
