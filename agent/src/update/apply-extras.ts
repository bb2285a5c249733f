import { copyFile, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fsyncDir, writeFileAtomic } from '../../../base/src/fs/atomic.js';
import { admitTrustPayload, REVOCATIONS_FILE, ROTATIONS_DIR, rotationFileName, type VerifiedPack } from '../../../pack/src/index.js';
import type { EngineContext } from './context.js';
import { UpdateError } from './errors.js';
import { exists } from './facts.js';

/**
 * Packs that install without a slot switch (DESIGN.md, "Pack kinds"): a licence replaces
 * <root>/license/license.json; a trust pack replaces the probe's set of roots and may replace its
 * revocation list.
 */
export async function applyLicense(ctx: EngineContext, payloadsDir: string): Promise<void> {
  const src = join(payloadsDir, 'license', 'license.json');
  if (!(await exists(src))) throw new UpdateError('RELEASE_INVALID', 'the license payload has no license.json');
  await mkdir(ctx.layout.licenseDir, { recursive: true });
  await writeFileAtomic(join(ctx.layout.licenseDir, 'license.json'), await readFile(src));
  // The app reads its licence at start.
  const pid = await ctx.runner.running();
  const active = await ctx.slots.active();
  if (pid !== null && active !== null) await ctx.runner.start(ctx.slots.releaseDir(active));
}

/**
 * A trust pack was verified against the current keyring, after the root rotations it carries
 * (pack/src/root-rotation.ts), and signed by one of its roots; what it may change is decided by
 * the trust store (pack/src/trust.ts, admitTrustPayload). This writes the admitted keyring: the
 * new roots first, then the new revocation list, then the rotations followed (rotations/NNNN.json),
 * and only then removes the roots the pack retires. A power cut part-way leaves a keyring that
 * holds every root of both the old and the new set, never one without the root that signed the
 * pack; the install resumes as failed and the vendor's pack can be applied again (its rotations
 * already recorded are then history).
 */
export async function applyTrust(ctx: EngineContext, pack: VerifiedPack, payloadsDir: string): Promise<void> {
  const dir = ctx.layout.keyring;
  const update = await admitTrustPayload(pack.trust.keyring, join(payloadsDir, 'trust'), pack.signer);
  for (const r of update.roots) await writeFileAtomic(join(dir, r.name), r.pem);
  if (update.revocations !== null) await writeFileAtomic(join(dir, REVOCATIONS_FILE), update.revocations);
  if (pack.trust.rotations.length > 0) {
    const rotations = join(dir, ROTATIONS_DIR);
    await mkdir(rotations, { recursive: true });
    for (const s of pack.trust.rotations) {
      await writeFileAtomic(join(rotations, rotationFileName(s.body.sequence)), `${JSON.stringify(s, null, 2)}\n`);
    }
  }
  const keep = new Set(update.roots.map((r) => r.name));
  const retired = (await readdir(dir)).filter((n) => (n.endsWith('.crt') || n.endsWith('.pem')) && !keep.has(n));
  for (const n of retired) await rm(join(dir, n), { force: true });
  if (retired.length > 0) await fsyncDir(dir);
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
    await copyRotations(join(from, ROTATIONS_DIR), join(k, ROTATIONS_DIR));
  } else {
    await copyFile(from, join(k, 'root.crt'));
    const rev = join(from, '..', REVOCATIONS_FILE);
    if (await exists(rev)) await copyFile(rev, join(k, REVOCATIONS_FILE));
    await copyRotations(join(from, '..', ROTATIONS_DIR), join(k, ROTATIONS_DIR));
  }
}

/**
 * A keyring seeded from a vendor's keys folder keeps the rotation history that came with it, so a
 * probe given the newest root does not have to follow rotations signed by roots it never held.
 */
async function copyRotations(from: string, to: string): Promise<void> {
  if (!(await exists(from))) return;
  await mkdir(to, { recursive: true });
  for (const n of await readdir(from)) {
    if (/^[0-9]{4,10}\.json$/.test(n)) await copyFile(join(from, n), join(to, n));
  }
}
