import { pbkdf2Sync, randomBytes } from 'node:crypto';

/**
 * A Mosquitto 2.0 password-file hash (`$7$`: PBKDF2-HMAC-SHA512, 12-byte salt, 64-byte key,
 * base64), what `mosquitto_passwd` writes. The server computes it at enrollment, while it holds
 * the new token, and keeps only the hash: `mosquitto_passwd` would need the plain token, which the
 * server never stores. Mosquitto's default of 101 iterations is kept: the token is 256 random
 * bits, so iterations add nothing but connect-time CPU across 10,000 probes.
 */
export const MOSQUITTO_ITERATIONS = 101;

export function mosquittoPasswordHash(secret: string, salt: Buffer = randomBytes(12), iterations = MOSQUITTO_ITERATIONS): string {
  const key = pbkdf2Sync(secret, salt, iterations, 64, 'sha512');
  return `$7$${iterations}$${salt.toString('base64')}$${key.toString('base64')}`;
}
