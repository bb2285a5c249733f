import { createPrivateKey, type KeyObject } from 'node:crypto';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import { exists } from '../../../base/src/fs/exists.js';
import { KeysError } from '../../../pack/src/index.js';

/**
 * Writing key and certificate files (the vendor's side; the pack module reads them,
 * pack/src/key-files.ts). Private keys are PKCS#8 PEM, created 0600 (writeFileAtomic creates its
 * temp file with the final mode, so the key is never readable by others, not even for an
 * instant) and optionally encrypted with a passphrase. Certificates are PEM, 0644. node-forge is
 * loaded just to encrypt a key: it never reaches the verification path.
 */

export const PRIVATE_KEY_MODE = 0o600;
export const CERTIFICATE_MODE = 0o644;

/**
 * PBKDF2-HMAC-SHA256 rounds for an encrypted key. OpenSSL's default is 2048; more rounds slow a
 * guessing attack on a stolen key file. forge derives the key in JavaScript (about 1 s here),
 * which is paid once per key written; Node reads it back natively in a few milliseconds.
 */
export const PBKDF2_ITERATIONS = 100_000;

export interface OverwriteOptions {
  /** Replace an existing file instead of refusing with KEY_EXISTS. */
  force?: boolean | undefined;
}

/** Refuses with KEY_EXISTS if any of `paths` exists, unless `force`. Call before costly work. */
export async function refuseOverwrite(paths: readonly string[], force: boolean | undefined): Promise<void> {
  if (force === true) return;
  for (const path of paths) {
    if (await exists(path)) throw new KeysError('KEY_EXISTS', `${path} already exists (use --force to replace it)`);
  }
}

export async function writePrivateKey(
  path: string,
  keyPem: string,
  opts: OverwriteOptions & { passphrase?: string | undefined } = {},
): Promise<void> {
  await refuseOverwrite([path], opts.force);
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: keyPem, format: 'pem' });
  } catch (e) {
    throw new KeysError('KEY_UNREADABLE', `refusing to write ${path}: not an unencrypted private key in PEM form`, { cause: e });
  }
  const data =
    opts.passphrase === undefined
      ? (key.export({ type: 'pkcs8', format: 'pem' }) as string)
      : await encryptPkcs8(key, opts.passphrase);
  await writeFileAtomic(path, data, { mode: PRIVATE_KEY_MODE });
}

export async function writeCertificate(path: string, pem: string, opts: OverwriteOptions = {}): Promise<void> {
  await refuseOverwrite([path], opts.force);
  await writeFileAtomic(path, pem.endsWith('\n') ? pem : `${pem}\n`, { mode: CERTIFICATE_MODE });
}

/** PBES2 EncryptedPrivateKeyInfo: PBKDF2-HMAC-SHA256 and AES-256-CBC. */
async function encryptPkcs8(key: KeyObject, passphrase: string): Promise<string> {
  if (passphrase.length === 0) throw new KeysError('PASSPHRASE_UNREADABLE', 'the passphrase is empty');
  const { default: forge } = await import('node-forge');
  const der = key.export({ type: 'pkcs8', format: 'der' });
  const info = forge.asn1.fromDer(forge.util.createBuffer(der.toString('binary')));
  // forge reads a JavaScript string as raw bytes; Node passes passphrases to OpenSSL as UTF-8.
  const encrypted = forge.pki.encryptPrivateKeyInfo(info, forge.util.encodeUtf8(passphrase), {
    algorithm: 'aes256',
    prfAlgorithm: 'sha256',
    count: PBKDF2_ITERATIONS,
  });
  const pem = forge.pki.encryptedPrivateKeyToPem(encrypted).replace(/\r\n/g, '\n');
  // Prove the file will load before it replaces anything: a key nobody can decrypt is lost.
  const back = createPrivateKey({ key: pem, format: 'pem', passphrase });
  if (!back.equals(key)) throw new Error('encrypted private key does not decrypt to the original');
  return pem;
}
