import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { KeysError } from './keys-errors.js';

/**
 * Reading key and certificate files: PKCS#8 PEM private keys, optionally encrypted with a
 * passphrase, and PEM certificates. node:crypto only (DESIGN.md, "Trust"): the vendor's tools
 * write them (images/src/keys/key-write.ts).
 */



/** The file's content less one trailing newline (as `echo` or an editor leaves it). */
export async function readPassphraseFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new KeysError('PASSPHRASE_UNREADABLE', `cannot read passphrase file ${path}`, { cause: e });
  }
  const passphrase = text.replace(/\r?\n$/, '');
  if (passphrase.length === 0) throw new KeysError('PASSPHRASE_UNREADABLE', `passphrase file ${path} is empty`);
  return passphrase;
}

/**
 * Loads a private key, decrypting it with the passphrase in `passphraseFile` when the PEM is
 * encrypted. Missing and wrong passphrases are both KEY_PASSPHRASE_WRONG; messages name the
 * files, never the passphrase.
 */
export async function loadPrivateKey(path: string, opts: { passphraseFile?: string | undefined } = {}): Promise<KeyObject> {
  let pem: string;
  try {
    pem = await readFile(path, 'utf8');
  } catch (e) {
    throw new KeysError('KEY_UNREADABLE', `cannot read private key ${path}`, { cause: e });
  }
  if (!isEncryptedPem(pem)) {
    try {
      return createPrivateKey({ key: pem, format: 'pem' });
    } catch (e) {
      throw new KeysError('KEY_UNREADABLE', `${path} is not a private key in PEM form`, { cause: e });
    }
  }
  if (opts.passphraseFile === undefined) {
    throw new KeysError('KEY_PASSPHRASE_WRONG', `${path} is encrypted; give the file holding its passphrase`);
  }
  const passphrase = await readPassphraseFile(opts.passphraseFile);
  try {
    return createPrivateKey({ key: pem, format: 'pem', passphrase });
  } catch (e) {
    // A wrong passphrase usually fails the padding check, but 1 in 256 times it decrypts to
    // garbage that fails to parse instead; either way the passphrase is what is wrong.
    throw new KeysError('KEY_PASSPHRASE_WRONG', `the passphrase in ${opts.passphraseFile} does not decrypt ${path}`, {
      cause: e,
    });
  }
}

export interface CertificateFile {
  /** The PEM blocks in file order (leaf first for a chain). */
  pems: string[];
  certs: X509Certificate[];
}

export async function readCertificateFile(path: string): Promise<CertificateFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new KeysError('CERT_UNREADABLE', `cannot read certificate ${path}`, { cause: e });
  }
  const pems = (text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map((p) => `${p}\n`);
  if (pems.length === 0) throw new KeysError('CERT_UNREADABLE', `${path} holds no PEM certificate`);
  try {
    return { pems, certs: pems.map((p) => new X509Certificate(p)) };
  } catch (e) {
    throw new KeysError('CERT_UNREADABLE', `${path} holds a malformed certificate`, { cause: e });
  }
}

function isEncryptedPem(pem: string): boolean {
  return pem.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----') || /Proc-Type:\s*4,ENCRYPTED/.test(pem);
}

