import { X509Certificate, type KeyObject } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import {
  PackError,
  fingerprintHex,
  normaliseSerial,
  signRevocations,
  verifyRevocations,
  type RevocationBody,
  type RevocationEntry,
  type RevocationList,
  KeysError,
  loadPrivateKey,
  readCertificateFile,
  readPassphraseFile,
} from '../../../pack/src/index.js';
import { CERTIFICATE_MODE, refuseOverwrite, writeCertificate, writePrivateKey } from './key-write.js';
import { exists } from '../../../base/src/fs/exists.js';
import { CliError } from '../../../base/src/cli/cli-error.js';
import { createRootCa, issueCertificate, resolveValidity, type IssuedProfile } from './issue.js';

/**
 * The operations of `sonde keys` on a keys directory K (docs/keys.md):
 *
 *   K/root.crt, K/root.key                  the trust anchor; its key can live offline
 *   K/intermediate.crt, K/intermediate.key  issues signers and recipients while the root is away
 *   K/signer.crt, K/signer.key              code signing; the .crt holds leaf + intermediate
 *   K/<name>.crt, K/<name>.key              recipients packs are encrypted to (fleet, group, probe)
 *   K/revocations.json                      revoked serials, signed by the root
 *
 * Every operation checks what it would overwrite and reads its passphrases before generating a
 * key, so a refusal costs nothing and never leaves half a pair behind.
 */

export const RESERVED_NAMES: readonly string[] = Object.freeze(['root', 'intermediate', 'signer', 'revocations']);
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const REVOCATIONS_FILE = 'revocations.json';
/** RFC 5280 caps serial numbers at 20 octets. */
const MAX_SERIAL_HEX_DIGITS = 40;
/** As the revocation list schema allows. */
const MAX_REASON_LENGTH = 200;

export interface CertificateSummary {
  path: string;
  /** Upper-case hex without leading zeros. */
  serial: string;
  /** SHA-256 of the DER certificate, lower-case hex, as revocations.json names roots. */
  fingerprint256: string;
  subject: string;
  notBefore: string;
  notAfter: string;
}

export interface WrittenPair {
  cert: CertificateSummary;
  keyPath: string;
  keyEncrypted: boolean;
  /** Number of certificates in the .crt file: 2 when the intermediate follows the leaf. */
  certificatesInFile: number;
}

export interface IssuedPair extends WrittenPair {
  issuer: { name: 'root' | 'intermediate'; path: string; fingerprint256: string };
}

export interface PairOptions {
  name?: string | undefined;
  days?: number | undefined;
  /** Encrypt the new private key with the passphrase in this file. */
  passphraseFile?: string | undefined;
  force?: boolean | undefined;
}

export interface IssueOptions extends PairOptions {
  /** Passphrase file for the issuer's key when that key is encrypted. */
  issuerPassphraseFile?: string | undefined;
}

export async function initCa(dir: string, opts: PairOptions = {}): Promise<WrittenPair> {
  const certPath = join(dir, 'root.crt');
  const keyPath = join(dir, 'root.key');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await refuseOverwrite([keyPath, certPath], opts.force);
  const passphrase = await optionalPassphrase(opts.passphraseFile);
  const issued = await createRootCa({ commonName: opts.name, days: opts.days });
  return writePair({ certPath, keyPath, keyPem: issued.keyPem, certPems: [issued.certPem], passphrase, force: opts.force });
}

export async function issueIntermediate(dir: string, opts: IssueOptions = {}): Promise<IssuedPair> {
  return issuePair(dir, 'intermediate', 'root', 'intermediate', opts.name ?? 'Sonde Intermediate CA', opts);
}

/**
 * The signer is issued by the intermediate when K has one, which lets the root key stay offline;
 * otherwise by the root. Its .crt carries the chain a pack embeds: leaf, then intermediate.
 */
export async function issueSigner(dir: string, opts: IssueOptions & { out?: string | undefined } = {}): Promise<IssuedPair> {
  const out = checkFileName(opts.out ?? 'signer', ['signer']);
  return issuePair(dir, 'signer', await leafIssuer(dir), out, opts.name ?? 'Sonde Signer', opts);
}

/** A key packs are encrypted to: the fleet key, a group key or one probe's key. */
export async function issueRecipient(dir: string, opts: IssueOptions & { name: string }): Promise<IssuedPair> {
  const name = checkFileName(opts.name, []);
  return issuePair(dir, 'recipient', await leafIssuer(dir), name, name, opts);
}

export interface RevokeOptions {
  serial?: string | undefined;
  /** A certificate file; the serial of its first certificate is revoked. */
  cert?: string | undefined;
  reason?: string | undefined;
  issuerPassphraseFile?: string | undefined;
}

export interface RevokeResult {
  path: string;
  serial: string;
  /** True when the serial was already on the list; nothing was written. */
  alreadyRevoked: boolean;
  sequence: number;
  revokedCount: number;
}

/**
 * Adds a serial to K/revocations.json and re-signs it with the root key. The existing list must
 * verify against K/root.crt first: extending a list that was tampered with would launder the
 * tampering under a fresh signature.
 */
export async function revoke(dir: string, opts: RevokeOptions): Promise<RevokeResult> {
  if ((opts.serial === undefined) === (opts.cert === undefined)) {
    throw new CliError('USAGE', 'give either a serial number or a certificate file to revoke');
  }
  if (opts.reason !== undefined && opts.reason.length > MAX_REASON_LENGTH) {
    throw new CliError('USAGE', `a revocation reason is at most ${MAX_REASON_LENGTH} characters`);
  }
  const serial = opts.serial !== undefined ? parseSerial(opts.serial) : await serialOfCertificate(opts.cert ?? '');
  const path = join(dir, REVOCATIONS_FILE);
  const root = await loadIssuerCertificate(dir, 'root');

  let previous: RevocationList | undefined;
  if (await exists(path)) {
    const text = await readFile(path, 'utf8');
    try {
      previous = verifyRevocations(text, [root.cert]);
    } catch (e) {
      throw new PackError(
        'REVOCATIONS_INVALID',
        `${path} does not verify against ${root.certPath}; refusing to extend it (restore the last good copy)`,
        { cause: e },
      );
    }
    if (previous.serials.has(serial)) {
      return { path, serial, alreadyRevoked: true, sequence: previous.sequence, revokedCount: previous.body.revoked.length };
    }
  }

  const rootKey = await loadIssuerKey(dir, 'root', root, opts.issuerPassphraseFile);
  const now = new Date().toISOString();
  const entry: RevocationEntry = { serial, revokedAt: now, ...(opts.reason !== undefined ? { reason: opts.reason } : {}) };
  const body: RevocationBody = {
    issuer: fingerprintHex(root.cert),
    sequence: previous === undefined ? 0 : previous.sequence + 1,
    issuedAt: now,
    revoked: [...(previous?.body.revoked ?? []), entry],
  };
  const text = `${JSON.stringify(signRevocations(body, rootKey), null, 2)}\n`;
  verifyRevocations(text, [root.cert]);
  await writeFileAtomic(path, text, { mode: CERTIFICATE_MODE });
  return { path, serial, alreadyRevoked: false, sequence: body.sequence, revokedCount: body.revoked.length };
}

export function describeCertificate(path: string, pem: string): CertificateSummary {
  const x509 = new X509Certificate(pem);
  return {
    path,
    serial: normaliseSerial(x509.serialNumber),
    fingerprint256: fingerprintHex(x509),
    subject: x509.subject.split('\n').join(', '),
    notBefore: new Date(x509.validFrom).toISOString(),
    notAfter: new Date(x509.validTo).toISOString(),
  };
}

async function issuePair(
  dir: string,
  profile: IssuedProfile,
  issuerName: 'root' | 'intermediate',
  fileBase: string,
  commonName: string,
  opts: IssueOptions,
): Promise<IssuedPair> {
  const certPath = join(dir, `${fileBase}.crt`);
  const keyPath = join(dir, `${fileBase}.key`);
  const issuerCert = await loadIssuerCertificate(dir, issuerName);
  await refuseOverwrite([keyPath, certPath], opts.force);
  const passphrase = await optionalPassphrase(opts.passphraseFile);
  const issuerKey = await loadIssuerKey(dir, issuerName, issuerCert, opts.issuerPassphraseFile);

  // A certificate that outlives its issuer is unusable for the difference. The default lifetime
  // is cut to the issuer's end (a 10-year recipient under a 10-year intermediate issued a
  // minute later); an explicit --days that reaches past it is refused rather than silently cut.
  const validity = resolveValidity(profile, { days: opts.days });
  const issuerEnd = new Date(issuerCert.cert.validTo);
  if (validity.notAfter.getTime() > issuerEnd.getTime()) {
    if (opts.days !== undefined || issuerEnd.getTime() <= validity.notBefore.getTime()) {
      throw new KeysError(
        'VALIDITY_INVALID',
        `${fileBase} would be valid until ${validity.notAfter.toISOString()}, after ${issuerCert.certPath} expires ` +
          `(${issuerEnd.toISOString()})`,
      );
    }
    validity.notAfter = issuerEnd;
  }

  const issued = await issueCertificate({
    profile,
    issuerCertPem: issuerCert.pem,
    issuerKeyPem: issuerKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    commonName,
    notBefore: validity.notBefore,
    notAfter: validity.notAfter,
  });
  // Leaves issued by the intermediate carry it, so that a verifier holding only the root can
  // build the chain. The root never goes in: trust in it must come from the keyring.
  const certPems = issuerName === 'intermediate' && profile !== 'intermediate' ? [issued.certPem, issuerCert.pem] : [issued.certPem];
  const written = await writePair({ certPath, keyPath, keyPem: issued.keyPem, certPems, passphrase, force: opts.force });
  return {
    ...written,
    issuer: { name: issuerName, path: issuerCert.certPath, fingerprint256: fingerprintHex(issuerCert.cert) },
  };
}

async function writePair(args: {
  certPath: string;
  keyPath: string;
  keyPem: string;
  certPems: string[];
  passphrase: string | undefined;
  force: boolean | undefined;
}): Promise<WrittenPair> {
  // Key first: a crash between the two leaves a key without a certificate, which the next run
  // reports as KEY_EXISTS, rather than a certificate whose key is lost.
  await writePrivateKey(args.keyPath, args.keyPem, { passphrase: args.passphrase, force: args.force });
  await writeCertificate(args.certPath, args.certPems.join(''), { force: args.force });
  return {
    cert: describeCertificate(args.certPath, args.certPems[0] ?? ''),
    keyPath: args.keyPath,
    keyEncrypted: args.passphrase !== undefined,
    certificatesInFile: args.certPems.length,
  };
}

async function leafIssuer(dir: string): Promise<'root' | 'intermediate'> {
  return (await exists(join(dir, 'intermediate.crt'))) ? 'intermediate' : 'root';
}

export interface IssuerCertificate {
  certPath: string;
  /** The issuer's own certificate, the first block of its file. */
  pem: string;
  cert: X509Certificate;
}

export async function loadIssuerCertificate(dir: string, name: 'root' | 'intermediate'): Promise<IssuerCertificate> {
  const certPath = join(dir, `${name}.crt`);
  if (!(await exists(certPath))) {
    const hint = name === 'root' ? `sonde keys init-ca --dir ${dir}` : `sonde keys issue-intermediate --dir ${dir}`;
    throw new KeysError('ISSUER_MISSING', `${certPath} not found; create it with "${hint}"`);
  }
  const file = await readCertificateFile(certPath);
  const pem = file.pems[0];
  const cert = file.certs[0];
  if (pem === undefined || cert === undefined) throw new KeysError('CERT_UNREADABLE', `${certPath} holds no certificate`);
  return { certPath, pem, cert };
}

export async function loadIssuerKey(
  dir: string,
  name: 'root' | 'intermediate',
  issuer: IssuerCertificate,
  passphraseFile: string | undefined,
): Promise<KeyObject> {
  const keyPath = join(dir, `${name}.key`);
  if (!(await exists(keyPath))) {
    throw new KeysError('ISSUER_MISSING', `${keyPath} not found; the ${name} key must be present to issue or revoke`);
  }
  const key = await loadPrivateKey(keyPath, { passphraseFile });
  if (!issuer.cert.checkPrivateKey(key)) {
    throw new KeysError('ISSUER_KEY_MISMATCH', `${keyPath} is not the key of ${issuer.certPath}`);
  }
  return key;
}

async function optionalPassphrase(file: string | undefined): Promise<string | undefined> {
  return file === undefined ? undefined : readPassphraseFile(file);
}

function checkFileName(name: string, allowed: readonly string[]): string {
  if (!NAME_PATTERN.test(name)) {
    throw new KeysError(
      'NAME_INVALID',
      `"${name}" is not a valid key name: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  if (RESERVED_NAMES.includes(name) && !allowed.includes(name)) {
    throw new KeysError('NAME_INVALID', `"${name}" is reserved in a keys directory`);
  }
  return name;
}

function parseSerial(serial: string): string {
  let hex: string;
  try {
    hex = normaliseSerial(serial.replace(/^0x/i, ''));
  } catch (e) {
    throw new KeysError('SERIAL_INVALID', `"${serial}" is not a hexadecimal serial number`, { cause: e });
  }
  if (hex.length > MAX_SERIAL_HEX_DIGITS) {
    throw new KeysError('SERIAL_INVALID', `serial numbers are at most 20 bytes; "${serial}" is longer`);
  }
  return hex;
}

async function serialOfCertificate(path: string): Promise<string> {
  const file = await readCertificateFile(path);
  const first = file.certs[0];
  if (first === undefined) throw new KeysError('CERT_UNREADABLE', `${path} holds no certificate`);
  return normaliseSerial(first.serialNumber);
}
