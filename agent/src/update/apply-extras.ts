import { copyFile, mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import { admitTrustPayload, loadKeyring, REVOCATIONS_FILE } from '../../../pack/src/index.js';
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
 * What it may change is decided by the trust store (pack/src/trust.ts, admitTrustPayload); this
 * only writes the admitted roots and list into the probe's keyring, each atomically.
 */
export async function applyTrust(ctx: EngineContext, payloadsDir: string): Promise<void> {
  const update = await admitTrustPayload(await loadKeyring(ctx.layout.keyring), join(payloadsDir, 'trust'));
  for (const r of update.roots) await writeFileAtomic(join(ctx.layout.keyring, r.name), r.pem);
  if (update.revocations !== null) await writeFileAtomic(join(ctx.layout.keyring, REVOCATIONS_FILE), update.revocations);
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
