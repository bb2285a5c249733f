import { copyFile, mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import { parseCertificates } from '../../../pack/src/pem.js';
import { loadKeyring, REVOCATIONS_FILE } from '../../../pack/src/trust.js';
import { verifyRevocations } from '../../../pack/src/revocations.js';
import type { VerifiedPack } from '../../../pack/src/verify.js';
import type { EngineContext } from './context.js';
import { UpdateError } from './errors.js';
import { exists } from './facts.js';

/**
 * Packs that install without a slot switch (DESIGN.md, "Pack kinds"): a licence replaces
 * <root>/license/license.json; a trust pack adds roots to the probe's keyring and replaces its
 * revocation list. Both are written atomically.
 */
export async function applyLicense(ctx: EngineContext, payloadsDir: string): Promise<void> {
  const src = join(payloadsDir, 'license', 'license.json');
  if (!(await exists(src))) throw new UpdateError('RELEASE_INVALID', 'the license payload has no license.json');
  await mkdir(ctx.layout.licenseDir, { recursive: true });
  await writeFileAtomic(join(ctx.layout.licenseDir, 'license.json'), await readFile(src));
  // The app reads its licence at start.
  const pid = await ctx.runner.running();
  const active = await ctx.slots.active();
  if (pid !== null && active !== null) await ctx.runner.start(join(ctx.layout.slotsDir, active));
}

/**
 * A trust pack was verified against the current keyring, so it is signed under a current root.
 * Its new roots must be self-signed CAs, and its revocation list must verify against the
 * resulting set of roots, before anything is written.
 */
export async function applyTrust(ctx: EngineContext, pack: VerifiedPack, payloadsDir: string): Promise<void> {
  const dir = join(payloadsDir, 'trust');
  const rootsDir = join(dir, 'roots');
  const newRoots: { name: string; pem: string }[] = [];
  for (const name of (await readdir(rootsDir).catch(() => [] as string[])).sort()) {
    if (!/^[A-Za-z0-9._-]+\.(crt|pem)$/.test(name)) throw new UpdateError('TRUST_PACK_UNAUTHORISED', `trust pack root ${name} has an unexpected name`);
    const pem = await readFile(join(rootsDir, name), 'utf8');
    const certs = parseCertificates(pem);
    if (certs.length !== 1 || !certs[0]!.ca || !certs[0]!.checkIssued(certs[0]!) || !certs[0]!.verify(certs[0]!.publicKey)) {
      throw new UpdateError('TRUST_PACK_UNAUTHORISED', `trust pack root ${name} is not one self-signed CA certificate`);
    }
    newRoots.push({ name, pem });
  }
  // Only roots may sign a revocation list: the keyring's self-signed CAs plus the new ones.
  const roots = [...(await loadKeyring(ctx.layout.keyring)).roots];
  for (const r of newRoots) roots.push(...parseCertificates(r.pem));
  const revPath = join(dir, REVOCATIONS_FILE);
  let revocations: string | null = null;
  if (await exists(revPath)) {
    revocations = await readFile(revPath, 'utf8');
    try {
      verifyRevocations(revocations, roots);
    } catch (e) {
      throw new UpdateError('TRUST_PACK_UNAUTHORISED', 'the trust pack revocation list is not signed by a keyring root', { cause: e });
    }
  }
  for (const r of newRoots) await writeFileAtomic(join(ctx.layout.keyring, r.name), r.pem);
  if (revocations !== null) await writeFileAtomic(join(ctx.layout.keyring, REVOCATIONS_FILE), revocations);
}

/** The probe's keyring, seeded from --keyring on first use (a root file or a folder). */
export async function seedKeyring(ctx: EngineContext, from: string | undefined): Promise<void> {
  const k = ctx.layout.keyring;
  if (await exists(k)) {
    if ((await readdir(k)).length > 0) return;
  }
  if (!from) throw new UpdateError('PROBE_NOT_INITIALISED', `the probe has no keyring at ${k}; give one with --keyring`);
  await mkdir(k, { recursive: true });
  const { stat } = await import('node:fs/promises');
  if ((await stat(from)).isDirectory()) {
    for (const n of await readdir(from)) {
      if (n.endsWith('.crt') || n.endsWith('.pem') || n === REVOCATIONS_FILE) await copyFile(join(from, n), join(k, n));
    }
  } else {
    await copyFile(from, join(k, 'root.crt'));
    const rev = join(from, '..', REVOCATIONS_FILE);
    if (await exists(rev)) await copyFile(rev, join(k, REVOCATIONS_FILE));
  }
}
