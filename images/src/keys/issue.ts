import forge from 'node-forge';
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { assertNever } from '../../../base/src/errors/sonde-error.js';
import { normaliseSerial, KeysError } from '../../../pack/src/index.js';

/**
 * Issuance of Sonde's own PKI (DESIGN.md, "Trust"): RSA-3072 keys and SHA-256 certificates made
 * with node-forge. Only issuance lives here; verification never loads node-forge and reads
 * certificates with node:crypto alone. Functions take and return PEM text and touch no files,
 * so that key-dir.ts decides where things go and the tests can build odd certificates (expired,
 * not yet valid, without the code-signing usage) without a directory.
 */

export type IssuedProfile = 'intermediate' | 'signer' | 'recipient';
export type CertificateProfile = 'root' | IssuedProfile;

export const RSA_BITS = 3072;
export const CODE_SIGNING_OID = '1.3.6.1.5.5.7.3.3';
export const ORGANIZATION = 'Sonde';
export const DEFAULT_ROOT_NAME = 'Sonde Root CA';

/** Default lifetimes in calendar years, so that leap days do not shorten them. */
export const DEFAULT_YEARS: Readonly<Record<CertificateProfile, number>> = Object.freeze({
  root: 20,
  intermediate: 10,
  signer: 3,
  recipient: 10,
});

export interface ValidityOptions {
  /** Start of validity; defaults to now. */
  notBefore?: Date | undefined;
  /** End of validity; excludes `days`. Defaults to notBefore plus the profile's years. */
  notAfter?: Date | undefined;
  /** Lifetime in days from notBefore; excludes `notAfter`. */
  days?: number | undefined;
}

export interface RootCaOptions extends ValidityOptions {
  commonName?: string | undefined;
}

export interface IssueOptions extends ValidityOptions {
  profile: IssuedProfile;
  issuerCertPem: string;
  /** Unencrypted PKCS#8 (or PKCS#1) PEM of the issuer's RSA key. */
  issuerKeyPem: string;
  commonName: string;
  /**
   * extendedKeyUsage OIDs, replacing the profile's list (signer: code signing; others: none).
   * An empty list leaves the extension out.
   */
  extKeyUsage?: readonly string[] | undefined;
}

export interface IssuedCertificate {
  certPem: string;
  /** Unencrypted PKCS#8 PEM; key-files.ts encrypts it on the way to disk when asked. */
  keyPem: string;
  /** Upper-case hex without leading zeros, as revocations.json compares serials. */
  serial: string;
}

export async function createRootCa(opts: RootCaOptions = {}): Promise<IssuedCertificate> {
  const commonName = checkCommonName(opts.commonName ?? DEFAULT_ROOT_NAME);
  const validity = resolveValidity('root', opts);
  const keys = await generateRsaKeyPair();
  const cert = buildCertificate({
    publicKey: keys.publicKey,
    subject: subjectFor(commonName),
    issuer: null,
    validity,
    extensions: profileExtensions('root', null, undefined),
    signingKey: keys.privateKey,
  });
  return { certPem: cert.pem, keyPem: privateKeyToPkcs8Pem(keys.privateKey), serial: cert.serial };
}

export async function issueCertificate(opts: IssueOptions): Promise<IssuedCertificate> {
  const commonName = checkCommonName(opts.commonName);
  const validity = resolveValidity(opts.profile, opts);
  const issuer = readIssuer(opts.issuerCertPem, opts.issuerKeyPem);
  const keys = await generateRsaKeyPair();
  const cert = buildCertificate({
    publicKey: keys.publicKey,
    subject: subjectFor(commonName),
    issuer: issuer.cert.subject.attributes,
    validity,
    extensions: profileExtensions(opts.profile, issuer.keyIdentifier, opts.extKeyUsage),
    signingKey: issuer.key,
  });
  return { certPem: cert.pem, keyPem: privateKeyToPkcs8Pem(keys.privateKey), serial: cert.serial };
}

/**
 * 16 random bytes with the high bit cleared, so the INTEGER is positive. A zero first byte is
 * drawn again: DER forbids a leading zero octet before one without its high bit, and forge
 * writes the hex as given.
 */
export function randomSerialHex(): string {
  for (;;) {
    const bytes = randomBytes(16);
    bytes[0] = (bytes[0] ?? 0) & 0x7f;
    if (bytes[0] !== 0) return bytes.toString('hex');
  }
}

export function resolveValidity(profile: CertificateProfile, opts: ValidityOptions): { notBefore: Date; notAfter: Date } {
  // Certificates carry whole seconds; truncating keeps notBefore at or before "now".
  const notBefore = new Date(Math.floor((opts.notBefore ?? new Date()).getTime() / 1000) * 1000);
  if (Number.isNaN(notBefore.getTime())) throw new KeysError('VALIDITY_INVALID', 'notBefore is not a valid date');
  if (opts.days !== undefined && opts.notAfter !== undefined) {
    throw new KeysError('VALIDITY_INVALID', 'give a lifetime in days or an end date, not both');
  }
  let notAfter: Date;
  if (opts.notAfter !== undefined) {
    notAfter = opts.notAfter;
  } else if (opts.days !== undefined) {
    if (!Number.isSafeInteger(opts.days) || opts.days <= 0) {
      throw new KeysError('VALIDITY_INVALID', `a lifetime must be a positive whole number of days, not ${opts.days}`);
    }
    notAfter = new Date(notBefore.getTime() + opts.days * 86_400_000);
  } else {
    notAfter = new Date(notBefore);
    notAfter.setUTCFullYear(notAfter.getUTCFullYear() + DEFAULT_YEARS[profile]);
  }
  if (Number.isNaN(notAfter.getTime()) || notAfter.getTime() <= notBefore.getTime()) {
    throw new KeysError('VALIDITY_INVALID', 'the certificate would end before it starts');
  }
  // GeneralizedTime stops at year 9999; beyond that forge would write a malformed date.
  if (notAfter.getUTCFullYear() > 9999) throw new KeysError('VALIDITY_INVALID', 'the certificate would end after year 9999');
  return { notBefore, notAfter };
}

function checkCommonName(name: string): string {
  // X.520 bounds a common name at 64 characters; control characters have no place in one.
  if (name.length === 0 || name.length > 64 || /[\u0000-\u001f\u007f]/.test(name)) {
    throw new KeysError('NAME_INVALID', 'a certificate name must be 1 to 64 printable characters');
  }
  return name;
}

function subjectFor(commonName: string): forge.pki.CertificateField[] {
  // UTF8String rather than forge's default PrintableString, which cannot hold '_', '@' or accents.
  const utf8 = forge.asn1.Type.UTF8 as unknown as forge.asn1.Class;
  return [
    { name: 'commonName', value: commonName, valueTagClass: utf8 },
    { name: 'organizationName', value: ORGANIZATION, valueTagClass: utf8 },
  ];
}

type Extension = Record<string, unknown> & { name: string };

/** The four profiles of docs/keys.md, one place. */
function profileExtensions(
  profile: CertificateProfile,
  issuerKeyIdentifier: string | null,
  extKeyUsage: readonly string[] | undefined,
): Extension[] {
  const exts: Extension[] = [];
  let defaultEku: readonly string[];
  switch (profile) {
    case 'root':
      exts.push({ name: 'basicConstraints', critical: true, cA: true });
      exts.push({ name: 'keyUsage', critical: true, keyCertSign: true, cRLSign: true });
      defaultEku = [];
      break;
    case 'intermediate':
      // pathLen 0: the intermediate issues leaves only, never another CA.
      exts.push({ name: 'basicConstraints', critical: true, cA: true, pathLenConstraint: 0 });
      exts.push({ name: 'keyUsage', critical: true, keyCertSign: true, cRLSign: true });
      defaultEku = [];
      break;
    case 'signer':
      exts.push({ name: 'basicConstraints', critical: true, cA: false });
      exts.push({ name: 'keyUsage', critical: true, digitalSignature: true });
      defaultEku = [CODE_SIGNING_OID];
      break;
    case 'recipient':
      exts.push({ name: 'basicConstraints', critical: true, cA: false });
      exts.push({ name: 'keyUsage', critical: true, keyEncipherment: true });
      defaultEku = [];
      break;
    default:
      return assertNever(profile, 'certificate profile');
  }
  const eku = extKeyUsage ?? defaultEku;
  if (eku.length > 0) {
    const ext: Extension = { name: 'extKeyUsage' };
    for (const oid of eku) {
      if (!/^[0-2](\.(0|[1-9][0-9]*))+$/.test(oid)) throw new TypeError(`not an OID: ${oid}`);
      // forge looks each key up in its OID table first, so a known OID must go in by name.
      const known = (forge.pki.oids as Record<string, string | undefined>)[oid];
      ext[known ?? oid] = true;
    }
    exts.push(ext);
  }
  exts.push({ name: 'subjectKeyIdentifier' });
  // forge's `keyIdentifier: true` would take the subject's own key, so the issuer's is passed.
  if (issuerKeyIdentifier !== null) exts.push({ name: 'authorityKeyIdentifier', keyIdentifier: issuerKeyIdentifier });
  return exts;
}

interface Issuer {
  cert: forge.pki.Certificate;
  key: forge.pki.rsa.PrivateKey;
  /** Raw bytes (forge binary string) of the issuer's subjectKeyIdentifier. */
  keyIdentifier: string;
}

function readIssuer(certPem: string, keyPem: string): Issuer {
  let x509: X509Certificate;
  let cert: forge.pki.Certificate;
  try {
    x509 = new X509Certificate(certPem);
    cert = forge.pki.certificateFromPem(certPem);
  } catch (e) {
    throw new KeysError('CERT_UNREADABLE', 'the issuer certificate is not an RSA certificate in PEM form', { cause: e });
  }
  let key: forge.pki.rsa.PrivateKey;
  try {
    if (!x509.checkPrivateKey(createPrivateKey(keyPem))) {
      throw new KeysError('ISSUER_KEY_MISMATCH', 'the issuer key does not belong to the issuer certificate');
    }
    key = forge.pki.privateKeyFromPem(keyPem) as forge.pki.rsa.PrivateKey;
  } catch (e) {
    if (e instanceof KeysError) throw e;
    throw new KeysError('KEY_UNREADABLE', 'the issuer key is not an unencrypted RSA private key in PEM form', { cause: e });
  }
  const ski = cert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined;
  const keyIdentifier =
    ski?.subjectKeyIdentifier !== undefined
      ? forge.util.hexToBytes(ski.subjectKeyIdentifier)
      : cert.generateSubjectKeyIdentifier().getBytes();
  return { cert, key, keyIdentifier };
}

function buildCertificate(args: {
  publicKey: forge.pki.rsa.PublicKey;
  subject: forge.pki.CertificateField[];
  /** null for a self-signed certificate. */
  issuer: forge.pki.CertificateField[] | null;
  validity: { notBefore: Date; notAfter: Date };
  extensions: Extension[];
  signingKey: forge.pki.rsa.PrivateKey;
}): { pem: string; serial: string } {
  const cert = forge.pki.createCertificate();
  cert.publicKey = args.publicKey;
  cert.serialNumber = randomSerialHex();
  cert.validity.notBefore = args.validity.notBefore;
  cert.validity.notAfter = args.validity.notAfter;
  cert.setSubject(args.subject);
  cert.setIssuer(args.issuer ?? args.subject);
  cert.setExtensions(args.extensions);
  cert.sign(args.signingKey, forge.md.sha256.create());
  return { pem: unixLines(forge.pki.certificateToPem(cert)), serial: normaliseSerial(cert.serialNumber) };
}

function privateKeyToPkcs8Pem(key: forge.pki.rsa.PrivateKey): string {
  return unixLines(forge.pki.privateKeyInfoToPem(forge.pki.wrapRsaPrivateKey(forge.pki.privateKeyToAsn1(key))));
}

/** Uses Node's native generator underneath (forge detects it), about a second for 3072 bits. */
function generateRsaKeyPair(): Promise<forge.pki.rsa.KeyPair> {
  return new Promise((resolve, reject) => {
    forge.pki.rsa.generateKeyPair({ bits: RSA_BITS, e: 0x10001 }, (err, keys) => (err ? reject(err) : resolve(keys)));
  });
}

/** forge writes PEM with CRLF; Sonde's files use LF like openssl does. */
function unixLines(pem: string): string {
  return pem.replace(/\r\n/g, '\n');
}
