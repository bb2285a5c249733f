import { SondeError } from '../../base/src/errors/sonde-error.js';

/**
 * Codes for everything that can go wrong while issuing keys and certificates or revoking them
 * (`sonde keys`). Each is documented in docs/errors.md under "Keys". Messages name files, never
 * key material or passphrases.
 */
export const KEYS_CODES = [
  'KEY_EXISTS',
  'KEY_UNREADABLE',
  'KEY_PASSPHRASE_WRONG',
  'PASSPHRASE_UNREADABLE',
  'CERT_UNREADABLE',
  'ISSUER_MISSING',
  'ISSUER_KEY_MISMATCH',
  'NAME_INVALID',
  'VALIDITY_INVALID',
  'SERIAL_INVALID',
] as const;

export type KeysCode = (typeof KEYS_CODES)[number];

export class KeysError extends SondeError<KeysCode> {
  override readonly domain = 'keys';
}
