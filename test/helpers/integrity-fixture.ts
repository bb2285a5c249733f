import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { PackCode } from '../../pack/src/errors.js';
import { packFolder } from './pack-assembly.js';
import { layoutOf, type PackLayout } from './pack-layout.js';
import { refusalOf, type RunOptions } from './pack-run.js';
import { writeTree } from './packs.js';
import { expectStagingClean, type Sandbox } from './sandbox.js';
import type { PkiWorld } from './pki-fixture.js';

/**
 * The genuine packs that the tampering, truncation and reordering suites damage: two payloads
 * (app with a 150 KiB file, so that it spans three AEAD chunks when sealed, and config), stored
 * uncompressed so that payload offsets map straight onto tar structure. One plain, one encrypted
 * for the fleet key.
 */
export interface GenuinePack {
  readonly label: 'plain' | 'encrypted';
  readonly path: string;
  readonly bytes: Buffer;
  readonly layout: PackLayout;
  /** How to run it: the recipient key for the encrypted one. */
  readonly run: Omit<RunOptions, 'staging'>;
}

export async function makeGenuinePacks(world: PkiWorld, dir: string): Promise<GenuinePack[]> {
  const src = join(dir, 'src');
  await writeTree(src, {
    'pack.json': JSON.stringify({ payloads: { app: 'app', config: 'config' } }),
    'app/bin/run.sh': '#!/bin/sh\nexec ./probe\n',
    'app/lib/big.bin': randomBytes(150 * 1024),
    'config/probe.conf': 'interval=30\n',
  });
  const out: GenuinePack[] = [];
  for (const label of ['plain', 'encrypted'] as const) {
    const path = join(dir, `${label}.spk`);
    await packFolder(world.vendor.signer, src, path, {
      compression: 'none',
      ...(label === 'encrypted' ? { recipients: [world.vendor.fleet.cert] } : {}),
    });
    const bytes = await readFile(path);
    out.push({
      label,
      path,
      bytes,
      layout: layoutOf(bytes),
      run: { keyring: world.vendor.keyring, ...(label === 'encrypted' ? { key: world.vendor.fleet.key } : {}) },
    });
  }
  return out;
}

/**
 * Runs every mutant through the agent into the sandbox's staging and tallies the codes it is
 * refused with. Fails on an acceptance, on an exception that is not a PackError, and on
 * anything left in staging after a refusal.
 */
export async function tallyRefusals(
  mutants: Iterable<readonly [label: string, bytes: Buffer]>,
  run: Omit<RunOptions, 'staging'>,
  box: Sandbox,
): Promise<Partial<Record<PackCode, number>>> {
  const tally: Partial<Record<PackCode, number>> = {};
  for (const [label, bytes] of mutants) {
    const e = await refusalOf(bytes, { ...run, staging: box.staging }).catch((err: unknown) => {
      throw new Error(`${label}: ${String(err)}`, { cause: err });
    });
    tally[e.code] = (tally[e.code] ?? 0) + 1;
    await expectStagingClean(box);
  }
  return tally;
}
