import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { rawTar } from '../helpers/hostile-tar.js';
import { makeGenuinePacks, type GenuinePack } from '../helpers/integrity-fixture.js';
import { writeSealedPack } from '../helpers/pack-assembly.js';
import { entryNamed, renamed, reordered } from '../helpers/pack-layout.js';
import { expectRefused } from '../helpers/pack-run.js';
import { scratch } from '../helpers/packs.js';
import { pkiWorld, type PkiWorld } from '../helpers/pki-fixture.js';
import { expectRefusedCleanly, makeSandbox } from '../helpers/sandbox.js';

/**
 * The entries of a pack come in one order: marker, manifest.json, manifest.sig, then the payloads
 * in manifest order, then the end of the archive. Any other arrangement of genuine, intact entries
 * is refused as PACK_FORMAT, and chunks of a sealed payload in another order fail the AEAD.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let world: PkiWorld;
let packs: GenuinePack[];
let boxes = 0;

beforeAll(async () => {
  tmp = await scratch('sonde-reorder-');
  world = await pkiWorld();
  packs = await makeGenuinePacks(world, tmp.dir);
});
afterAll(() => tmp.cleanup());

// Entries of the genuine packs, by index: 0 marker, 1 manifest.json, 2 manifest.sig,
// 3 payloads/01-app, 4 payloads/02-config.
const orders: [string, number[]][] = [
  ['the two payloads swapped', [0, 1, 2, 4, 3]],
  ['manifest.json and manifest.sig swapped', [0, 2, 1, 3, 4]],
  ['the marker moved after the manifest', [1, 0, 2, 3, 4]],
  ['the marker moved to the end', [1, 2, 3, 4, 0]],
  ['the marker left out', [1, 2, 3, 4]],
  ['the signature left out', [0, 1, 3, 4]],
  ['a payload left out', [0, 1, 2, 4]],
  ['a payload stored twice', [0, 1, 2, 3, 3, 4]],
  ['a payload repeated after the last one', [0, 1, 2, 3, 4, 4]],
  ['the manifest repeated after the last payload', [0, 1, 2, 3, 4, 1]],
];

describe.each(['plain', 'encrypted'] as const)('a %s pack', (label) => {
  const pack = (): GenuinePack => packs.find((p) => p.label === label)!;

  it('has the entries these cases rearrange', () => {
    expect(pack().layout.entries.map((e) => e.name)).toEqual(['sonde-bundle', 'manifest.json', 'manifest.sig', 'payloads/01-app', 'payloads/02-config']);
  });

  it.each(orders)('refuses a pack with %s as PACK_FORMAT', async (_what, order) => {
    const box = await makeSandbox(tmp.dir, `box-${++boxes}`);
    await expectRefused(reordered(pack().bytes, pack().layout, order), { ...pack().run, staging: box.staging }, 'PACK_FORMAT');
    await expectRefusedCleanly(box);
  });

  it.each([
    ['sonde-bundle', 'sonde-bundle2'],
    ['manifest.json', 'manifest.jsn'],
    ['manifest.sig', 'manifest.sig.bak'],
    ['payloads/02-config', 'payloads/02-configs'],
    ['payloads/01-app', 'payloads/../01-app'],
  ])('refuses a pack whose entry %s was renamed %s as PACK_FORMAT', async (from, to) => {
    const box = await makeSandbox(tmp.dir, `box-${++boxes}`);
    const bytes = renamed(pack().bytes, entryNamed(pack().layout, from), to);
    await expectRefused(bytes, { ...pack().run, staging: box.staging }, 'PACK_FORMAT');
    await expectRefusedCleanly(box);
  });
});

describe('a sealed payload whose chunks were rearranged before signing', () => {
  const tar = rawTar([{ path: 'big.bin', data: randomBytes(200 * 1024) }]);
  it.each([
    ['the first two chunks swapped', (c: Buffer[]) => [c[1]!, c[0]!, ...c.slice(2)], 0],
    ['a chunk repeated', (c: Buffer[]) => [c[0]!, c[0]!, ...c.slice(1)], 1],
    ['the final chunk moved first', (c: Buffer[]) => [c.at(-1)!, ...c.slice(0, -1)], 0],
  ] as const)('is refused by the AEAD with DECRYPT_FAILED: %s', async (what, rework, chunk) => {
    const box = await makeSandbox(tmp.dir, `box-${++boxes}`);
    const out = join(tmp.dir, `chunks-${what.replace(/\W+/g, '-')}.spk`);
    await writeSealedPack(out, { signer: world.vendor.signer, recipient: world.vendor.fleet.cert, tar, fileCount: 1, rework });
    const e = await expectRefused(out, { keyring: world.vendor.keyring, key: world.vendor.fleet.key, staging: box.staging }, 'DECRYPT_FAILED');
    expect(e.message).toContain(`chunk ${chunk} `);
    await expectRefusedCleanly(box);
  });
});
