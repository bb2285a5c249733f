import { X509Certificate } from 'node:crypto';
import { readFile, readdir, stat } from 'node:fs/promises';
import { exists } from '../../base/src/fs/exists.js';
import { dirname, join } from 'node:path';
import { PackError } from './errors.js';
import { parseCertificates } from './pem.js';
import { fingerprintHex, normaliseSerial, verifyRevocations, type RevocationList } from './revocations.js';
import { MAX_CHAIN_LENGTH } from './format.js';
import type { CertExtensions } from './cert-extensions.js';
import { heldRotationSequence, ROTATIONS_DIR, type RootRotation } from './root-rotation.js';
import { expiredBefore, isRevoked, isSelfSignedCa, nameOf, validAt } from './cert-checks.js';

/**
 * The trust store: the only place in Sonde that says yes to a signer (STYLE.md, after tuf-js).
 * A keyring is a set of vendor root certificates plus the revocation list signed by one of them.
 */
export interface Keyring {
  readonly roots: readonly X509Certificate[];
  readonly revocations: RevocationList | null;
  /**
   * The sequence of the last root rotation the keyring has followed (root-rotation.ts); 0 when it
   * has followed none. Statements up to it are history: a pack's older rotations are skipped.
   */
  readonly rotationSequence: number;
  /** Where it was loaded from, for messages. */
  readonly source: string;
}

export const OID_CODE_SIGNING = '1.3.6.1.5.5.7.3.3';
const OID_ANY_EKU = '2.5.29.37.0';
export const REVOCATIONS_FILE = 'revocations.json';

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
  return { roots, revocations, rotationSequence: await heldRotationSequence(join(dir, ROTATIONS_DIR)), source: path };
}

export function keyringFromCertificates(roots: readonly X509Certificate[], revocationsText?: string): Keyring {
  return {
    roots,
    revocations: revocationsText === undefined ? null : verifyRevocations(revocationsText, roots),
    rotationSequence: 0,
    source: 'memory',
  };
}

export interface TrustedChain {
  readonly signer: X509Certificate;
  readonly chain: readonly X509Certificate[];
  readonly root: X509Certificate;
  /** The keyring the chain was judged against: the probe's, after the pack's root rotations. */
  readonly keyring: Keyring;
  /** The root rotations of a trust pack the probe had not followed yet, in order (root-rotation.ts). */
  readonly rotations: readonly RootRotation[];
}

/** Whether a CA's extended key usages leave code signing open below it (absent: unrestricted). */
function caAllowsCodeSigning(cert: X509Certificate): boolean {
  const eku = cert.keyUsage as string[] | undefined;
  if (eku === undefined || eku.length === 0) return true;
  return eku.includes(OID_CODE_SIGNING) || eku.includes(OID_ANY_EKU);
}

/** Whether the signer itself names code signing. anyExtendedKeyUsage is not code signing. */
function signerIsCodeSigning(cert: X509Certificate): boolean {
  const eku = cert.keyUsage as string[] | undefined;
  return eku !== undefined && eku.includes(OID_CODE_SIGNING);
}

/** What verifyChain needs besides the chain: the probe's time floor and a reader of extensions. */
export interface ChainContext {
  /** The probe's trusted time floor (step 7); null where there is no probe. */
  readonly timeFloor: Date | null;
  /** The extensions node:crypto does not expose (cert-extensions.ts, loaded with the verify pass). */
  readonly extensionsOf: (cert: X509Certificate) => CertExtensions;
}

/** RFC 5280 4.2: a critical extension this verifier does not process makes the certificate unusable. */
function refuseUnknownCritical(certs: readonly X509Certificate[], ctx: ChainContext): void {
  for (const cert of certs) {
    const unknown = ctx.extensionsOf(cert).unknownCritical;
    if (unknown.length > 0) throw new PackError('CHAIN_INVALID', `certificate ${nameOf(cert)} has a critical extension this verifier does not process (${unknown.join(', ')})`);
  }
}

/**
 * A CA that signs the certificate below it (RFC 5280 4.2.1.3, 4.2.1.9): its key usage includes
 * keyCertSign, and its pathLenConstraint allows the `below` intermediate CAs between it and the
 * signer.
 */
function refuseUnfitIssuer(issuer: X509Certificate, below: number, ctx: ChainContext): void {
  if (!issuer.ca) throw new PackError('CHAIN_INVALID', `${issuer.subject} signs another certificate but is not a CA`);
  const ext = ctx.extensionsOf(issuer);
  if (ext.keyUsage === null || !ext.keyUsage.has('keyCertSign')) {
    throw new PackError('CHAIN_INVALID', `${nameOf(issuer)} signs another certificate but its key usage lacks keyCertSign`);
  }
  if (ext.pathLenConstraint !== null && below > ext.pathLenConstraint) {
    throw new PackError('CHAIN_INVALID', `${nameOf(issuer)} allows ${ext.pathLenConstraint} intermediate CA(s) below it; the chain has ${below}`);
  }
}

/**
 * Decides whether `chain` (signer first, then intermediates) is trusted to sign a pack created at
 * `createdAt`. The steps, in order:
 *  1. each certificate is issued and signed by the next; every issuer is a CA (basic constraints)
 *     whose key usage includes keyCertSign and whose pathLenConstraint allows the CAs below it;
 *  2. the last one is a keyring root or is issued and signed by one (which must fit step 1 too);
 *     no certificate, root included, carries a critical extension this verifier does not process;
 *  3. the signer carries the code-signing extended key usage (anyExtendedKeyUsage is not code
 *     signing) and the digitalSignature key usage, and is not a CA; no intermediate restricts its
 *     usages to exclude code signing;
 *  4. no certificate of the chain, nor the root it ends at, is revoked by the keyring's signed list;
 *  5. clock policy: every certificate, root included, was valid at the signed createdAt. The
 *     probe's own clock is not consulted, so an expired signer still verifies the packs it
 *     signed while it was valid, and no probe is bricked by a certificate that expired;
 *  6. but a retired key cannot sign the past: no certificate of the chain, root included, expired
 *     before the probe's trusted time floor (the newest signed createdAt it has accepted), whatever
 *     createdAt the pack claims.
 */
export function verifyChain(chain: readonly X509Certificate[], createdAt: Date, keyring: Keyring, ctx: ChainContext): TrustedChain {
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
    refuseUnfitIssuer(issuer, i, ctx);
  }
  // 2.
  const last = chain[chain.length - 1]!;
  const lastFp = fingerprintHex(last);
  let root = keyring.roots.find((r) => fingerprintHex(r) === lastFp);
  if (!root) {
    root = keyring.roots.find((r) => last.checkIssued(r) && last.verify(r.publicKey));
    if (root) refuseUnfitIssuer(root, chain.length - 1, ctx);
  }
  if (!root) {
    throw new PackError('CHAIN_UNTRUSTED', `the signer chains to "${last.issuer.replace(/\n/g, ', ')}", which is not a root of keyring ${keyring.source}`);
  }
  const all = fingerprintHex(root) === lastFp ? [...chain] : [...chain, root];
  refuseUnknownCritical(all, ctx);
  // 3.
  if (signer.ca) throw new PackError('SIGNER_NOT_CODE_SIGNING', `the signer ${nameOf(signer)} is a CA, not a signing certificate`);
  if (!signerIsCodeSigning(signer)) {
    throw new PackError('SIGNER_NOT_CODE_SIGNING', `the signer ${nameOf(signer)} lacks the code-signing extended key usage`);
  }
  const signerUsage = ctx.extensionsOf(signer).keyUsage;
  if (signerUsage === null || !signerUsage.has('digitalSignature')) {
    throw new PackError('SIGNER_NOT_CODE_SIGNING', `the signer ${nameOf(signer)} lacks the digitalSignature key usage`);
  }
  for (const ca of chain.slice(1)) {
    if (!caAllowsCodeSigning(ca)) {
      throw new PackError('SIGNER_NOT_CODE_SIGNING', `intermediate ${nameOf(ca)} restricts its usages to exclude code signing`);
    }
  }
  // 4.
  refuseRevoked(all, keyring);
  // 5.
  for (const cert of all) {
    if (!validAt(cert, createdAt)) {
      throw new PackError(
        'CERT_NOT_VALID_AT_CREATION',
        `certificate ${nameOf(cert)} (valid ${cert.validFrom} to ${cert.validTo}) was not valid when the pack was created (${createdAt.toISOString()})`,
      );
    }
  }
  // 6.
  refuseRetired(all, ctx.timeFloor);
  return { signer, chain, root, keyring, rotations: [] };
}

/** Step 4: revoked by serial or by fingerprint in the keyring's signed list. */
function refuseRevoked(certs: readonly X509Certificate[], keyring: Keyring): void {
  for (const cert of certs) {
    if (isRevoked(cert, keyring.revocations)) {
      throw new PackError('CERT_REVOKED', `certificate ${nameOf(cert)} (serial ${normaliseSerial(cert.serialNumber)}) is revoked`);
    }
  }
}

/**
 * The trusted time floor (DESIGN.md, "Trust"): a certificate that expired before the newest pack
 * the probe accepted was created is retired, and a retired key must not sign the past.
 */
function refuseRetired(certs: readonly X509Certificate[], timeFloor: Date | null): void {
  for (const cert of certs) {
    if (expiredBefore(cert, timeFloor)) {
      throw new PackError(
        'CERT_EXPIRED_BEFORE_FLOOR',
        `certificate ${nameOf(cert)} expired ${cert.validTo}, before the newest pack this probe accepted was created (${timeFloor!.toISOString()}): a retired key cannot sign the past`,
      );
    }
  }
}

/**
 * Decides whether the signer of a trust pack may change the keyring (DESIGN.md, "Trust"; as TUF's
 * root metadata is signed by root keys). The steps, in order:
 *  1. the signature carries exactly one certificate, and it is a root of the keyring itself (the
 *     same certificate, by fingerprint);
 *  2. that root is not revoked by the keyring's signed list;
 *  3. it was valid at the signed createdAt, and did not expire before the trusted time floor
 *     (the clock policy of verifyChain).
 * A chain that fails step 1 is judged as a code-signing chain first, so an untrusted or revoked
 * signer keeps its own code; one that would be trusted to sign a release is still refused with
 * TRUST_PACK_NOT_ROOT_SIGNED: a stolen code-signing key must never be able to add a root.
 */
export function verifyTrustPackSigner(chain: readonly X509Certificate[], createdAt: Date, keyring: Keyring, ctx: ChainContext): TrustedChain {
  const signer = chain[0];
  // 1.
  const root = signer !== undefined && chain.length === 1 ? keyring.roots.find((r) => fingerprintHex(r) === fingerprintHex(signer)) : undefined;
  if (root === undefined) {
    const judged = verifyChain(chain, createdAt, keyring, ctx);
    throw new PackError(
      'TRUST_PACK_NOT_ROOT_SIGNED',
      `a trust pack changes the keyring and must be signed by a root of it; ${nameOf(judged.signer)} is a code-signing certificate`,
    );
  }
  // 2. (and the root is usable: no critical extension this verifier does not process)
  refuseUnknownCritical([root], ctx);
  refuseRevoked([root], keyring);
  // 3.
  if (!validAt(root, createdAt)) {
    throw new PackError(
      'CERT_NOT_VALID_AT_CREATION',
      `root ${nameOf(root)} (valid ${root.validFrom} to ${root.validTo}) was not valid when the pack was created (${createdAt.toISOString()})`,
    );
  }
  refuseRetired([root], ctx.timeFloor);
  return { signer: root, chain: [root], root, keyring, rotations: [] };
}

/** What a trust pack makes of a keyring, once admitted. */
export interface TrustUpdate {
  /** The complete set of roots after the pack applies, each one self-signed CA, by file name. */
  readonly roots: readonly { readonly name: string; readonly pem: string }[];
  /** The new revocation list's text; null keeps the list the keyring holds. */
  readonly revocations: string | null;
}

/**
 * Admits the payload of a trust pack (DESIGN.md, "Trust"): `roots/*.crt` states the complete set
 * of roots after the pack applies, so a vendor can retire a root, and `revocations.json` may
 * replace the list. `signer` is the root that signed the pack (verifyTrustPackSigner). The
 * contents are judged before anything is written:
 *  1. each root file has a plain certificate name and holds exactly one self-signed CA;
 *  2. the set is not empty, and it keeps the root that signed the pack: a root is retired by a
 *     pack its successor signs, once a pack signed by the retiring root has added the successor;
 *  3. a new revocation list is signed by a root of the new set, and its sequence is greater than
 *     the one the keyring holds (an older list would un-revoke a signer);
 *  4. without a new list, the list the keyring holds must stay verifiable: its issuer stays.
 * Any failure is a PackError, and the caller writes nothing.
 */
export async function admitTrustPayload(current: Keyring, payloadDir: string, signer: X509Certificate): Promise<TrustUpdate> {
  const rootsDir = join(payloadDir, 'roots');
  const roots: { name: string; pem: string }[] = [];
  const anchors: X509Certificate[] = [];
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
  // 2.
  if (anchors.length === 0) throw new PackError('TRUST_PACK_ROOT_SET_INVALID', 'the trust pack states no root: it would leave the probe unable to trust anything');
  if (!anchors.some((r) => fingerprintHex(r) === fingerprintHex(signer))) {
    throw new PackError(
      'TRUST_PACK_ROOT_SET_INVALID',
      `the trust pack drops the root that signed it (${nameOf(signer)}); retire a root with a pack signed by its successor`,
    );
  }
  // 3.
  const revPath = join(payloadDir, REVOCATIONS_FILE);
  if (await exists(revPath)) {
    const revocations = await readFile(revPath, 'utf8');
    let list: RevocationList;
    try {
      list = verifyRevocations(revocations, anchors);
    } catch (e) {
      throw new PackError('TRUST_PACK_UNAUTHORISED', 'the trust pack revocation list is not signed by a root of the keyring it leaves', { cause: e });
    }
    const held = current.revocations;
    if (held !== null && list.sequence <= held.sequence) {
      throw new PackError('REVOCATIONS_NOT_NEWER', `the trust pack revocation list has sequence ${list.sequence}; the probe holds ${held.sequence}, and a list never goes back`);
    }
    return { roots, revocations };
  }
  // 4.
  const held = current.revocations;
  if (held !== null && !anchors.some((r) => fingerprintHex(r) === held.issuer)) {
    throw new PackError('TRUST_PACK_ROOT_SET_INVALID', 'the trust pack drops the root that signed the revocation list the probe holds, and brings no new list');
  }
  return { roots, revocations: null };
}
