import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { AEAD_CHUNK_STORED } from '../../pack/src/format.js';
import { rawTar } from '../helpers/hostile-tar.js';
import { makeGenuinePacks, tallyRefusals, type GenuinePack } from '../helpers/integrity-fixture.js';
import { writeSealedPack } from '../helpers/pack-assembly.js';
import { expectRefused, runPack } from '../helpers/pack-run.js';
import { scratch, treeDigest } from '../helpers/packs.js';
import { pkiWorld, type PkiWorld } from '../helpers/pki-fixture.js';
import { expectNothingEscaped, expectRefusedCleanly, makeSandbox } from '../helpers/sandbox.js';

/**
 * A pack cut short, at any entry boundary or inside an entry, is refused as PACK_TRUNCATED. The
 * byte reader knows every entry's size from its header and every payload's size from the signed
 * manifest, so it notices the missing bytes before the AEAD could: the AEAD's own truncation
 * check (a last chunk without the final flag) answers only when the cut was made before signing,
 * which the last tests show.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let world: PkiWorld;
let packs: GenuinePack[];
let boxes = 0;
const sandbox = async () => makeSandbox(tmp.dir, `box-${++boxes}`);

beforeAll(async () => {
  tmp = await scratch('sonde-cut-');
  world = await pkiWorld();
  packs = await makeGenuinePacks(world, tmp.dir);
});
afterAll(() => tmp.cleanup());

/** Every place a cut can fall that matters: each boundary of each entry, and inside each part. */
function cutPoints(pack: GenuinePack): Map<string, number> {
  const cuts = new Map<string, number>([['nothing at all', 0]]);
  for (const e of pack.layout.entries) {
    cuts.set(`${e.name}: at its header`, e.header);
    cuts.set(`${e.name}: inside its header`, e.header + 200);
    cuts.set(`${e.name}: at its data`, e.data);
    cuts.set(`${e.name}: inside its data`, e.data + Math.floor((e.dataEnd - e.data) / 2));
    cuts.set(`${e.name}: at its data end`, e.dataEnd);
    if (e.end > e.dataEnd + 1) cuts.set(`${e.name}: inside its padding`, e.dataEnd + 1);
    if (e.name.startsWith('payloads/')) {
      for (let at = e.data + AEAD_CHUNK_STORED; at < e.dataEnd; at += AEAD_CHUNK_STORED) {
        cuts.set(`${e.name}: at a chunk boundary +${at - e.data}`, at);
        cuts.set(`${e.name}: inside a chunk +${at - e.data - 1000}`, at - 1000);
      }
    }
  }
  cuts.set('at the end-of-archive block', pack.layout.endMarker);
  cuts.set('inside the end-of-archive block', pack.layout.endMarker + 300);
  return cuts;
}

describe.each(['plain', 'encrypted'] as const)('a %s pack', (label) => {
  it('refuses a cut at every entry boundary and inside every entry with PACK_TRUNCATED', async () => {
    const pack = packs.find((p) => p.label === label)!;
    const box = await sandbox();
    const cuts = [...cutPoints(pack)].map(([what, at]) => [what, pack.bytes.subarray(0, at)] as const);
    expect(cuts.length).toBeGreaterThan(30);
    expect(await tallyRefusals(cuts, pack.run, box)).toEqual({ PACK_TRUNCATED: cuts.length });
    await expectRefusedCleanly(box);
  });

  it('accepts a pack whose second zero block is missing: after the end-of-archive block, only tar padding follows', async () => {
    const pack = packs.find((p) => p.label === label)!;
    const genuine = await sandbox();
    await runPack(pack.bytes, { ...pack.run, staging: genuine.staging });
    const box = await sandbox();
    await runPack(pack.bytes.subarray(0, pack.layout.endMarker + 512), { ...pack.run, staging: box.staging });
    expect(await treeDigest(box.staging)).toEqual(await treeDigest(genuine.staging));
    await expectNothingEscaped(box);
  });
});

describe('a sealed payload cut before it was signed', () => {
  const tar = rawTar([{ path: 'big.bin', data: randomBytes(150 * 1024) }]);
  const cases: [string, (chunks: Buffer[]) => Buffer[]][] = [
    ['without its final chunk', (c) => c.slice(0, -1)],
    ['cut inside its last chunk', (c) => [...c.slice(0, -1), c.at(-1)!.subarray(0, 100)]],
    ['cut inside a middle chunk', (c) => [c[0]!, c[1]!.subarray(0, 5000)]],
  ];
  it.each(cases)('is refused by the AEAD with DECRYPT_FAILED when %s', async (what, rework) => {
    const box = await sandbox();
    const out = join(tmp.dir, `sealed-${what.replace(/\W+/g, '-')}.spk`);
    await writeSealedPack(out, { signer: world.vendor.signer, recipient: world.vendor.fleet.cert, tar, fileCount: 1, rework });
    const e = await expectRefused(out, { keyring: world.vendor.keyring, key: world.vendor.fleet.key, staging: box.staging }, 'DECRYPT_FAILED');
    expect(e.message).toMatch(/chunk \d+ failed authentication/);
    await expectRefusedCleanly(box);
  });
});
