import type { KeyObject, X509Certificate } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { canonicalJson } from './canonical-json.js';
import { expiredBefore, isRevoked, isSelfSignedCa, nameOf, validAt } from './cert-checks.js';
import { PackError } from './errors.js';
import type { RootRotation } from './manifest.js';
import { parseCertificates } from './pem.js';
import { fingerprintHex } from './revocations.js';
import { signBytes, verifyBytes, type SignatureAlgorithm } from './signing.js';
import type { ChainContext, Keyring } from './trust.js';

export type { RootRotation } from './manifest.js';

/**
 * Root rotation (DESIGN.md "Trust", docs/pack-format.md "Root rotation"; after TUF's chain of
 * root metadata). A statement says: "after rotation `sequence`, the roots are exactly these",
 * and is signed by a root of the set before it (the authority) and by every root it adds (the
 * cross-signature: proof that the successor's key exists and agreed). A trust pack carries the
 * vendor's whole history of statements in its manifest, so a probe that was offline across
 * several rotations follows them in order, each judged against the roots it holds at that step,
 * and only then judges the pack's signer. A keyring remembers the last sequence it followed
 * (`rotations/NNNN.json` beside its roots), and older statements are skipped as history: a
 * replayed statement changes nothing.
 */
export const ROTATIONS_DIR = 'rotations';

export function rotationFileName(sequence: number): string {
  return `${String(sequence).padStart(4, '0')}.json`;
}

const ROTATION_FILE = /^([0-9]{4,10})\.json$/;

/** The last rotation a keyring folder followed: the highest `rotations/NNNN.json`; 0 for none. */
export async function heldRotationSequence(dir: string): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ENOTDIR') return 0;
    throw new PackError('KEYRING_INVALID', `${dir} cannot be read`, { cause: e });
  }
  let held = 0;
  for (const n of names) {
    const m = ROTATION_FILE.exec(n);
    if (m) held = Math.max(held, Number(m[1]));
  }
  return held;
}

/** Every statement of a `rotations/` folder (a keys directory's history), oldest first, parsed strictly. */
export async function readRootRotations(dir: string): Promise<RootRotation[]> {
  const { rootRotationSchema } = await import('./manifest.js');
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => ROTATION_FILE.test(n));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new PackError('ROOT_ROTATION_INVALID', `${dir} cannot be read`, { cause: e });
  }
  const out: RootRotation[] = [];
  for (const n of names) {
    const path = join(dir, n);
    let parsed: RootRotation;
    try {
      parsed = rootRotationSchema.parse(JSON.parse(await readFile(path, 'utf8')));
    } catch (e) {
      throw new PackError('ROOT_ROTATION_INVALID', `${path} is not a root rotation statement`, { cause: e });
    }
    if (rotationFileName(parsed.body.sequence) !== n) {
      throw new PackError('ROOT_ROTATION_INVALID', `${path} holds rotation ${parsed.body.sequence}; its name says otherwise`);
    }
    out.push(parsed);
  }
  return out.sort((a, b) => a.body.sequence - b.body.sequence);
}

export interface RotationSigner {
  readonly cert: X509Certificate;
  readonly key: KeyObject;
}

/** Signs a statement's body with each key (the outgoing root, then every root it adds). */
export function signRootRotation(body: RootRotation['body'], signers: readonly RotationSigner[]): RootRotation {
  const message = Buffer.from(canonicalJson(body));
  return {
    format: 'sonde-root-rotation-1',
    body,
    signatures: signers.map(({ cert, key }) => {
      const { algorithm, signature } = signBytes(key, message);
      return { signer: fingerprintHex(cert), algorithm, signature: signature.toString('base64') };
    }),
  };
}

export interface RotationWalk {
  /** The keyring after the statements it had not followed: new roots, same revocation list. */
  readonly keyring: Keyring;
  /** The statements followed, in order. */
  readonly applied: readonly RootRotation[];
  /** Newer statements no usable held root signed (step 4), with why: they changed nothing. */
  readonly skipped: readonly { readonly sequence: number; readonly reason: string }[];
}

function rootsOf(statement: RootRotation): X509Certificate[] {
  const seq = statement.body.sequence;
  const roots: X509Certificate[] = [];
  const seen = new Set<string>();
  for (const pem of statement.body.roots) {
    let certs: X509Certificate[];
    try {
      certs = parseCertificates(pem);
    } catch (e) {
      throw new PackError('ROOT_ROTATION_INVALID', `root rotation ${seq} holds a certificate that does not parse`, { cause: e });
    }
    const cert = certs[0];
    if (certs.length !== 1 || cert === undefined || !isSelfSignedCa(cert)) {
      throw new PackError('ROOT_ROTATION_INVALID', `root rotation ${seq} names something that is not one self-signed CA certificate`);
    }
    const fp = fingerprintHex(cert);
    if (seen.has(fp)) throw new PackError('ROOT_ROTATION_INVALID', `root rotation ${seq} names ${nameOf(cert)} twice`);
    seen.add(fp);
    roots.push(cert);
  }
  return roots;
}

/**
 * Follows the statements a keyring has not followed yet. The steps, for the statement list:
 *  1. sequences strictly increase and issue times never go back, and none was issued after the
 *     pack that carries them was created;
 *  2. statements at or below the keyring's sequence are history and skipped.
 * Then, for each remaining statement, against the roots held at that step:
 *  3. it names one to sixteen distinct self-signed CA roots, and every signature it carries from
 *     a root of either set verifies (one that does not is an altered statement); signatures by
 *     keys the probe cannot identify count for nothing;
 *  4. authority: at least one held root signed it that is not revoked, was valid when the
 *     statement was issued, and had not expired before the probe's trusted time floor (a
 *     retired root cannot rotate anything). A statement without authority changes nothing and
 *     is skipped: a keyring seeded with a newer root than the history starts from (a server
 *     given only the newest root.crt) follows the statements its roots signed, and an
 *     attacker's statement counts for exactly as much as it would if it were absent. The
 *     pack's signer must still be a root afterwards (the caller says ROOT_ROTATION_UNTRUSTED,
 *     with the skipped statements, when it is not);
 *  5. cross-signature: every root it adds signed it, is not revoked and was valid when it was
 *     issued, and at least one root of the new set signed it, so the probe never moves to a set
 *     of roots nobody has shown a key for.
 * Nothing is written: the caller gets the keyring as it would be, and the pack's own signer is
 * judged against it.
 */
export function walkRootRotations(keyring: Keyring, statements: readonly RootRotation[], createdAt: Date, ctx: ChainContext): RotationWalk {
  // 1.
  for (let i = 0; i < statements.length; i++) {
    const s = statements[i]!;
    const issued = Date.parse(s.body.issuedAt);
    if (issued > createdAt.getTime()) {
      throw new PackError('ROOT_ROTATION_INVALID', `root rotation ${s.body.sequence} was issued (${s.body.issuedAt}) after the pack was created`);
    }
    const before = statements[i - 1];
    if (before !== undefined && (s.body.sequence <= before.body.sequence || issued < Date.parse(before.body.issuedAt))) {
      throw new PackError('ROOT_ROTATION_INVALID', `root rotation ${s.body.sequence} follows rotation ${before.body.sequence} out of order`);
    }
  }
  let roots = keyring.roots;
  let sequence = keyring.rotationSequence;
  const applied: RootRotation[] = [];
  const skipped: { sequence: number; reason: string }[] = [];
  for (const s of statements) {
    // 2.
    if (s.body.sequence <= sequence) continue;
    // 3.
    const next = rootsOf(s);
    const issuedAt = new Date(s.body.issuedAt);
    const signedBy = signersOf(s, [...roots, ...next]);
    const held = new Set(roots.map(fingerprintHex));
    // 4.
    const authority = roots.filter((r) => signedBy.has(fingerprintHex(r)) && usable(r, issuedAt, keyring, ctx));
    if (authority.length === 0) {
      skipped.push({ sequence: s.body.sequence, reason: `not signed by a usable root held at that step (${roots.map(nameOf).join('; ')})` });
      continue;
    }
    // 5.
    for (const r of next) {
      if (held.has(fingerprintHex(r))) continue;
      if (!signedBy.has(fingerprintHex(r))) {
        throw new PackError('ROOT_ROTATION_INVALID', `root rotation ${s.body.sequence} adds ${nameOf(r)}, which did not cross-sign it`);
      }
      if (!usable(r, issuedAt, keyring, ctx)) {
        throw new PackError('ROOT_ROTATION_INVALID', `root rotation ${s.body.sequence} adds ${nameOf(r)}, which is revoked, unusable or was not valid when the statement was issued`);
      }
    }
    if (!next.some((r) => signedBy.has(fingerprintHex(r)))) {
      throw new PackError('ROOT_ROTATION_INVALID', `no root of the set rotation ${s.body.sequence} leaves signed it`);
    }
    roots = next;
    sequence = s.body.sequence;
    applied.push(s);
  }
  return { keyring: applied.length === 0 ? keyring : { ...keyring, roots, rotationSequence: sequence }, applied, skipped };
}

/** The fingerprints of the known roots whose signatures over the statement verify. */
function signersOf(s: RootRotation, known: readonly X509Certificate[]): Set<string> {
  const message = Buffer.from(canonicalJson(s.body));
  const out = new Set<string>();
  for (const sig of s.signatures) {
    const cert = known.find((c) => fingerprintHex(c) === sig.signer);
    if (cert === undefined) continue;
    if (!verifyBytes(cert.publicKey, sig.algorithm as SignatureAlgorithm, message, Buffer.from(sig.signature, 'base64'))) {
      throw new PackError('ROOT_ROTATION_INVALID', `the signature of ${nameOf(cert)} on root rotation ${s.body.sequence} does not verify: the statement was altered`);
    }
    out.add(sig.signer);
  }
  return out;
}

/** A root whose signature on a statement counts: not revoked, valid then, not retired, nothing critical unknown. */
function usable(root: X509Certificate, at: Date, keyring: Keyring, ctx: ChainContext): boolean {
  return (
    !isRevoked(root, keyring.revocations) &&
    validAt(root, at) &&
    !expiredBefore(root, ctx.timeFloor) &&
    ctx.extensionsOf(root).unknownCritical.length === 0
  );
}
