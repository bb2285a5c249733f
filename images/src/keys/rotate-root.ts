import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import { exists } from '../../../base/src/fs/exists.js';
import { CliError } from '../../../base/src/cli/cli-error.js';
import {
  PackError,
  fingerprintHex,
  followRootRotations,
  keyringFromCertificates,
  readRootRotations,
  rotationFileName,
  signRevocations,
  signRootRotation,
  verifyRevocations,
  ROTATIONS_DIR,
  type RootRotation,
} from '../../../pack/src/index.js';
import { CERTIFICATE_MODE, refuseOverwrite } from './key-write.js';
import { loadIssuerCertificate, loadIssuerKey } from './key-dir.js';

/**
 * `sonde keys rotate-root` (docs/keys.md, "Rotating the root"): hands the probes' trust from the
 * root of keys directory K to the root of keys directory S (its successor, made with `sonde keys
 * init-ca --dir S`). It writes the next root rotation statement, signed by both roots, into S's
 * history (S/rotations/: K's history plus the new statement), and carries K's revocation list
 * over to S, signed by S's root with the next sequence. S then holds everything a trust pack
 * needs: its root, the whole rotation history (which `sonde pack --kind trust` carries) and the
 * newest revocation list. Every keys directory's history thus ends with the statement that made
 * its root, so a probe seeded from it starts at the right sequence.
 *
 * K records the hand-over in K/rotated.json, and a root already rotated away cannot rotate
 * again: the history stays one line rather than a fork.
 */
/** K's record that its root was rotated away (the hand-over is refused a second time). */
export const ROTATED_FILE = 'rotated.json';

export interface RotateRootOptions {
  /** The successor's keys directory; it holds root.crt and root.key. */
  readonly to: string;
  /** Passphrase file of K/root.key. */
  readonly issuerPassphraseFile?: string | undefined;
  /** Passphrase file of S/root.key. */
  readonly successorPassphraseFile?: string | undefined;
  /** Keep K's root in the set after the rotation (both trusted until a later rotation drops it). */
  readonly keepOld?: boolean | undefined;
  readonly force?: boolean | undefined;
}

export interface RotateRootResult {
  readonly sequence: number;
  readonly from: string;
  readonly to: string;
  /** The statement, in the successor's history. */
  readonly statement: string;
  /** K's record of the hand-over. */
  readonly record: string;
  /** The roots after the rotation, by fingerprint. */
  readonly roots: readonly string[];
  /** The successor's history now holds this many statements (what its trust packs carry). */
  readonly history: number;
  readonly revocations: { readonly path: string; readonly sequence: number } | null;
}

export async function rotateRoot(dir: string, opts: RotateRootOptions): Promise<RotateRootResult> {
  const current = await loadIssuerCertificate(dir, 'root');
  const successor = await loadIssuerCertificate(opts.to, 'root');
  if (fingerprintHex(current.cert) === fingerprintHex(successor.cert)) {
    throw new CliError('USAGE', `${successor.certPath} is the root of ${dir} itself; make the successor with "sonde keys init-ca --dir ${opts.to}"`);
  }
  const record = join(dir, ROTATED_FILE);
  if (await exists(record)) {
    throw new PackError('ROOT_ROTATION_INVALID', `${current.certPath} was already rotated away (${record}); rotate from the newest keys directory`);
  }
  const history = await readRootRotations(join(dir, ROTATIONS_DIR));
  const last = history[history.length - 1];
  if (last !== undefined && !last.body.roots.some((pem) => sameCert(pem, current.pem))) {
    throw new PackError('ROOT_ROTATION_INVALID', `${current.certPath} is not a root of rotation ${last.body.sequence}, the last of ${dir}'s history`);
  }
  const sequence = (last?.body.sequence ?? 0) + 1;
  const target = join(opts.to, ROTATIONS_DIR, rotationFileName(sequence));
  const revIn = join(dir, 'revocations.json');
  const revOut = join(opts.to, 'revocations.json');
  const carryList = await exists(revIn);
  await refuseOverwrite([target, ...(carryList ? [revOut] : [])], opts.force);
  const successorHistory = await readRootRotations(join(opts.to, ROTATIONS_DIR));
  if (successorHistory.some((s) => s.body.sequence < sequence && !history.some((h) => JSON.stringify(h) === JSON.stringify(s)))) {
    throw new PackError('ROOT_ROTATION_INVALID', `${join(opts.to, ROTATIONS_DIR)} holds a history that is not ${dir}'s`);
  }

  const currentKey = await loadIssuerKey(dir, 'root', current, opts.issuerPassphraseFile);
  const successorKey = await loadIssuerKey(opts.to, 'root', successor, opts.successorPassphraseFile);
  const issuedAt = new Date().toISOString();
  const roots = opts.keepOld === true ? [current.pem, successor.pem] : [successor.pem];
  const statement = signRootRotation({ sequence, issuedAt, roots: roots.map(withNewline) }, [
    { cert: current.cert, key: currentKey },
    { cert: successor.cert, key: successorKey },
  ]);

  // Check the history as a probe holding K's root would follow it, before anything is written.
  const walk = await followRootRotations({ ...keyringFromCertificates([current.cert]), rotationSequence: sequence - 1 }, [statement], new Date(issuedAt));
  if (!walk.keyring.roots.some((r) => fingerprintHex(r) === fingerprintHex(successor.cert))) {
    throw new PackError('ROOT_ROTATION_INVALID', 'the new statement does not lead to the successor root');
  }

  let revocations: RotateRootResult['revocations'] = null;
  let listText: string | null = null;
  if (carryList) {
    const previous = verifyRevocations(await readFile(revIn, 'utf8'), [current.cert]);
    const body = { ...previous.body, issuer: fingerprintHex(successor.cert), sequence: previous.sequence + 1, issuedAt };
    listText = `${JSON.stringify(signRevocations(body, successorKey), null, 2)}\n`;
    verifyRevocations(listText, [successor.cert]);
    revocations = { path: revOut, sequence: body.sequence };
  }

  // The successor's history first (its trust packs need it), then K's record that it handed over.
  const text = `${JSON.stringify(statement, null, 2)}\n`;
  await mkdir(join(opts.to, ROTATIONS_DIR), { recursive: true, mode: 0o755 });
  for (const h of history) {
    const path = join(opts.to, ROTATIONS_DIR, rotationFileName(h.body.sequence));
    if (!(await exists(path))) await writeFileAtomic(path, `${JSON.stringify(h, null, 2)}\n`, { mode: CERTIFICATE_MODE });
  }
  await writeFileAtomic(target, text, { mode: CERTIFICATE_MODE });
  if (listText !== null) await writeFileAtomic(revOut, listText, { mode: CERTIFICATE_MODE });
  const handedOver = { sequence, to: fingerprintHex(successor.cert), toDir: opts.to, at: issuedAt };
  await writeFileAtomic(record, `${JSON.stringify(handedOver, null, 2)}\n`, { mode: CERTIFICATE_MODE });
  return {
    sequence,
    from: fingerprintHex(current.cert),
    to: fingerprintHex(successor.cert),
    statement: target,
    record,
    roots: walk.keyring.roots.map(fingerprintHex),
    history: history.length + 1,
    revocations,
  };
}

function withNewline(pem: string): string {
  return pem.endsWith('\n') ? pem : `${pem}\n`;
}

function sameCert(a: string, b: string): boolean {
  const strip = (p: string): string => p.replace(/\s+/g, '');
  return strip(a) === strip(b);
}

export type { RootRotation };
