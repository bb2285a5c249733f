import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { RATIO_CAP, RATIO_SLACK } from '../../pack/src/format.js';
import { rawTar } from '../helpers/hostile-tar.js';
import { expectHostileRefused } from '../helpers/hostile-payload.js';
import { runPack } from '../helpers/pack-run.js';
import { scratch, treeDigest, writeRawPack } from '../helpers/packs.js';
import { pkiWorld, type PkiWorld } from '../helpers/pki-fixture.js';
import { expectNothingEscaped, makeSandbox } from '../helpers/sandbox.js';

/**
 * A gzip payload that inflates past RATIO_CAP:1 (plus RATIO_SLACK) is a bomb, refused while it
 * inflates: COMPRESSION_RATIO_EXCEEDED. The manifest declares the bomb's size honestly here, so
 * it is the ratio guard that fires, not the size bound. 64 MiB of zeros gzip to about 64 KiB
 * (about 1000:1), so the guard fires near 200 x 64 KiB + 16 MiB, half-way through.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let world: PkiWorld;
const MiB = 1024 * 1024;
const bomb = rawTar([{ path: 'zeros.bin', data: Buffer.alloc(64 * MiB) }]);

beforeAll(async () => {
  tmp = await scratch('sonde-bomb-');
  world = await pkiWorld();
});
afterAll(() => tmp.cleanup());

describe('a gzip payload', () => {
  it.each([
    ['plain', false],
    ['encrypted', true],
  ])('refuses a %s decompression bomb whose size is declared honestly with COMPRESSION_RATIO_EXCEEDED', async (_what, encrypted) => {
    expect(bomb.length).toBeGreaterThan(RATIO_SLACK + 2 * MiB);
    const e = await expectHostileRefused(tmp.dir, world, {
      tar: () => bomb,
      fileCount: 1,
      compression: 'gzip',
      declare: { unpackedSize: bomb.length },
      code: 'COMPRESSION_RATIO_EXCEEDED',
      encrypted,
    });
    expect(e.message).toContain(`${RATIO_CAP}:1`);
  });

  it('accepts zeros that stay within the slack (the control case)', async () => {
    const box = await makeSandbox(tmp.dir, 'control');
    const tar = rawTar([{ path: 'zeros.bin', data: Buffer.alloc(8 * MiB) }]);
    const out = join(tmp.dir, 'control.spk');
    await writeRawPack(out, world.vendor.signer, [{ type: 'app', tar, fileCount: 1, compression: 'gzip' }]);
    await runPack(out, { keyring: world.vendor.keyring, staging: box.staging });
    expect(Object.keys(await treeDigest(box.staging))).toEqual(['app', 'app/zeros.bin']);
    await expectNothingEscaped(box);
  });
});
