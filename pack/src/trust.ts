import { X509Certificate } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import { exists } from '../../base/src/fs/exists.js';
import { dirname, join } from 'node:path';
import { PackError } from './errors.js';
import { parseCertificates } from './pem.js';
import { fingerprintHex, normaliseSerial, verifyRevocations, type RevocationList } from './revocations.js';
import { MAX_CHAIN_LENGTH } from './format.js';

/**
 * The trust store: the only place in Sonde that says yes to a signer (STYLE.md, after tuf-js).
 * A keyring is a set of vendor root certificates plus the revocation list signed by one of them.
 */
export interface Keyring {
  readonly roots: readonly X509Certificate[];
  readonly revocations: RevocationList | null;
  /** Where it was loaded from, for messages. */
  readonly source: string;
}

export const OID_CODE_SIGNING = '1.3.6.1.5.5.7.3.3';
const OID_ANY_EKU = '2.5.29.37.0';
export const REVOCATIONS_FILE = 'revocations.json';

function isSelfSignedCa(cert: X509Certificate): boolean {
  return cert.ca && cert.checkIssued(cert) && cert.verify(cert.publicKey);
}

/**
 * Loads a keyring from a root certificate file (its directory's revocations.json applies when
 * present) or from a directory of `*.crt` roots plus revocations.json. In a directory, only
 * self-signed CA certificates count as roots, so pointing at a keys folder that also holds signer
 * and recipient certificates never turns those into anchors.
 */
export async function loadKeyring(path: string): Promise<Keyring> {
  let info;
  try {
    info = await stat(path);
  } catch (e) {
    throw new PackError('KEYRING_INVALID', `keyring ${path} cannot be read`, { cause: e });
  }
  const roots: X509Certificate[] = [];
  let dir: string;
  try {
    if (info.isDirectory()) {
      dir = path;
      const names = (await readdir(path)).filter((n) => n.endsWith('.crt') || n.endsWith('.pem')).sort();
      for (const name of names) {
        for (const cert of parseCertificates(await readFile(join(path, name), 'utf8'))) {
          if (isSelfSignedCa(cert)) roots.push(cert);
        }
      }
    } else {
      dir = dirname(path);
      const certs = parseCertificates(await readFile(path, 'utf8'));
      for (const cert of certs) {
        if (!isSelfSignedCa(cert)) {
          throw new PackError('KEYRING_INVALID', `${path} holds a certificate that is not a self-signed CA: ${cert.subject}`);
        }
        roots.push(cert);
      }
    }
  } catch (e) {
    if (e instanceof PackError) throw e;
    throw new PackError('KEYRING_INVALID', `keyring ${path} holds an unreadable certificate`, { cause: e });
  }
  if (roots.length === 0) throw new PackError('KEYRING_INVALID', `keyring ${path} holds no root certificate`);
  let revocations: RevocationList | null = null;
  const revPath = join(dir, REVOCATIONS_FILE);
  let text: string | null = null;
  try {
    text = await readFile(revPath, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new PackError('REVOCATIONS_INVALID', `${revPath} cannot be read`, { cause: e });
    }
  }
  if (text !== null) revocations = verifyRevocations(text, roots);
  return { roots, revocations, source: path };
}

export function keyringFromCertificates(roots: readonly X509Certificate[], revocationsText?: string): Keyring {
  return {
    roots,
    revocations: revocationsText === undefined ? null : verifyRevocations(revocationsText, roots),
    source: 'memory',
  };
}

export interface TrustedChain {
  readonly signer: X509Certificate;
  readonly chain: readonly X509Certificate[];
  readonly root: X509Certificate;
}

function validAt(cert: X509Certificate, at: Date): boolean {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.validTo);
  return Number.isFinite(from) && Number.isFinite(to) && from <= at.getTime() && at.getTime() <= to;
}

function ekuAllowsCodeSigning(cert: X509Certificate): boolean | 'absent' {
  const eku = cert.keyUsage as string[] | undefined;
  if (eku === undefined || eku.length === 0) return 'absent';
  return eku.includes(OID_CODE_SIGNING) || eku.includes(OID_ANY_EKU);
}

/**
 * Decides whether `chain` (signer first, then intermediates) is trusted to sign a pack created at
 * `createdAt`. The steps, in order:
 *  1. each certificate is issued and signed by the next; every issuer is a CA (basic constraints);
 *  2. the last one is a keyring root or is issued and signed by one;
 *  3. the signer carries the code-signing extended key usage and is not a CA, and no intermediate
 *     restricts its usages to exclude code signing;
 *  4. no certificate of the chain is revoked by the keyring's signed list;
 *  5. clock policy: every certificate, root included, was valid at the signed createdAt. The
 *     probe's own clock is not consulted, so an expired signer still verifies the packs it
 *     signed while it was valid, and no probe is bricked by a certificate that expired.
 */
export function verifyChain(chain: readonly X509Certificate[], createdAt: Date, keyring: Keyring): TrustedChain {
  const signer = chain[0];
  if (!signer || chain.length > MAX_CHAIN_LENGTH) {
    throw new PackError('CHAIN_INVALID', `the signature carries ${chain.length} certificates (1 to ${MAX_CHAIN_LENGTH} allowed)`);
  }
  // 1.
  for (let i = 0; i + 1 < chain.length; i++) {
    const child = chain[i]!;
    const issuer = chain[i + 1]!;
    if (!child.checkIssued(issuer) || !child.verify(issuer.publicKey)) {
      throw new PackError('CHAIN_INVALID', `certificate ${i} (${child.subject}) is not issued by the next one in the chain`);
    }
    if (!issuer.ca) throw new PackError('CHAIN_INVALID', `${issuer.subject} signs another certificate but is not a CA`);
  }
  // 2.
  const last = chain[chain.length - 1]!;
  const lastFp = fingerprintHex(last);
  let root = keyring.roots.find((r) => fingerprintHex(r) === lastFp);
  if (!root) root = keyring.roots.find((r) => last.checkIssued(r) && last.verify(r.publicKey));
  if (!root) {
    throw new PackError('CHAIN_UNTRUSTED', `the signer chains to "${last.issuer.replace(/\n/g, ', ')}", which is not a root of keyring ${keyring.source}`);
  }
  // 3.
  if (signer.ca) throw new PackError('SIGNER_NOT_CODE_SIGNING', `the signer ${signer.subject.replace(/\n/g, ', ')} is a CA, not a signing certificate`);
  if (ekuAllowsCodeSigning(signer) !== true) {
    throw new PackError('SIGNER_NOT_CODE_SIGNING', `the signer ${signer.subject.replace(/\n/g, ', ')} lacks the code-signing extended key usage`);
  }
  for (const ca of chain.slice(1)) {
    if (ekuAllowsCodeSigning(ca) === false) {
      throw new PackError('SIGNER_NOT_CODE_SIGNING', `intermediate ${ca.subject.replace(/\n/g, ', ')} restricts its usages to exclude code signing`);
    }
  }
  // 4.
  const revoked = keyring.revocations;
  if (revoked) {
    for (const cert of chain) {
      if (revoked.serials.has(normaliseSerial(cert.serialNumber)) || revoked.fingerprints.has(fingerprintHex(cert))) {
        throw new PackError('CERT_REVOKED', `certificate ${cert.subject.replace(/\n/g, ', ')} (serial ${normaliseSerial(cert.serialNumber)}) is revoked`);
      }
    }
  }
  // 5.
  for (const cert of [...chain, root]) {
    if (!validAt(cert, createdAt)) {
      throw new PackError(
        'CERT_NOT_VALID_AT_CREATION',
        `certificate ${cert.subject.replace(/\n/g, ', ')} (valid ${cert.validFrom} to ${cert.validTo}) was not valid when the pack was created (${createdAt.toISOString()})`,
      );
    }
  }
  return { signer, chain, root };
}

/** What a trust pack may change in a keyring, once admitted: roots to add and a new revocation list. */
export interface TrustUpdate {
  /** New root certificates, each one self-signed CA, by file name. */
  readonly roots: readonly { readonly name: string; readonly pem: string }[];
  /** The new revocation list's text, verified against the keyring's roots plus the new ones. */
  readonly revocations: string | null;
}

/**
 * Admits the payload of a trust pack (DESIGN.md, "Trust": root rotations and revocation lists
 * reach probes in trust packs). The pack itself was verified against the current keyring; here
 * its contents are judged before anything is written:
 *  1. each file under `roots/` has a plain certificate name and holds exactly one self-signed CA;
 *  2. its `revocations.json`, when present, is signed by a root: one of the keyring's, or a new one.
 * Any failure is TRUST_PACK_UNAUTHORISED, and the caller writes nothing.
 */
export async function admitTrustPayload(current: Keyring, payloadDir: string): Promise<TrustUpdate> {
  const rootsDir = join(payloadDir, 'roots');
  const roots: { name: string; pem: string }[] = [];
  const anchors = [...current.roots];
  // 1.
  for (const name of (await readdir(rootsDir).catch(() => [] as string[])).sort()) {
    if (!/^[A-Za-z0-9._-]+\.(crt|pem)$/.test(name)) throw new PackError('TRUST_PACK_UNAUTHORISED', `trust pack root ${name} has an unexpected name`);
    const pem = await readFile(join(rootsDir, name), 'utf8');
    const certs = parseCertificates(pem);
    if (certs.length !== 1 || !isSelfSignedCa(certs[0]!)) {
      throw new PackError('TRUST_PACK_UNAUTHORISED', `trust pack root ${name} is not one self-signed CA certificate`);
    }
    roots.push({ name, pem });
    anchors.push(certs[0]!);
  }
  // 2. Only roots may sign a revocation list.
  const revPath = join(payloadDir, REVOCATIONS_FILE);
  let revocations: string | null = null;
  if (await exists(revPath)) {
    revocations = await readFile(revPath, 'utf8');
    try {
      verifyRevocations(revocations, anchors);
    } catch (e) {
      throw new PackError('TRUST_PACK_UNAUTHORISED', 'the trust pack revocation list is not signed by a keyring root', { cause: e });
    }
  }
  return { roots, revocations };
}
