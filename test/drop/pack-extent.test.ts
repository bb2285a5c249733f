import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { measurePack } from '../../pack/src/extent.js';
import { scratch } from '../helpers/packs.js';
import { packShaped } from './drop-fixtures.js';

/**
 * The inbox's cheap completeness check: from the tar headers alone, does the file reach the
 * end-of-archive block? Cut points are table-driven over one pack-shaped file.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
const pack = packShaped(3000);
// Offsets in `pack`: marker header 0, marker body 512, manifest header 1024, manifest body 1536,
// sig header 2048, sig body 2560, payload header 3072, payload body 3584..6584 (+ padding to
// 6656), end blocks 6656..7680.
const END = 6656;

beforeAll(async () => {
  tmp = await scratch('sonde-extent-');
});
afterAll(async () => {
  await tmp.cleanup();
});

async function measure(bytes: Buffer): Promise<Awaited<ReturnType<typeof measurePack>>> {
  const path = join(tmp.dir, `f-${Math.random().toString(36).slice(2)}`);
  await writeFile(path, bytes);
  return measurePack(path);
}

describe('measurePack', () => {
  it('finds a whole pack complete, up to its end-of-archive block', async () => {
    expect(pack.length).toBe(END + 1024);
    expect(await measure(pack)).toEqual({ kind: 'complete', packBytes: END + 512 });
  });

  it('finds a pack complete when only the second end block is missing (the reader needs one)', async () => {
    expect(await measure(pack.subarray(0, END + 512))).toEqual({ kind: 'complete', packBytes: END + 512 });
  });

  const cuts: { where: string; at: number; needAtLeast: number }[] = [
    { where: 'an empty file', at: 0, needAtLeast: 512 },
    { where: 'inside the first header', at: 100, needAtLeast: 512 },
    { where: 'inside the marker body', at: 600, needAtLeast: 1536 },
    { where: 'exactly between two entries', at: 1024, needAtLeast: 1536 },
    { where: 'inside the manifest', at: 1600, needAtLeast: 2560 },
    { where: 'inside the payload', at: 4000, needAtLeast: END + 512 },
    { where: 'inside the payload padding', at: 6600, needAtLeast: END + 512 },
    { where: 'before the end block', at: END, needAtLeast: END + 512 },
    { where: 'inside the end block', at: END + 200, needAtLeast: END + 512 },
  ];
  it.each(cuts)('finds a pack cut $where truncated', async ({ at, needAtLeast }) => {
    const r = await measure(pack.subarray(0, at));
    expect(r.kind).toBe('truncated');
    if (r.kind !== 'truncated') return;
    expect(r.haveBytes).toBe(at);
    expect(r.needBytes).toBeGreaterThanOrEqual(needAtLeast);
    expect(r.needBytes).toBeGreaterThan(at);
  });

  it('tells a short file that is not a pack from a pack cut short', async () => {
    expect((await measure(Buffer.from('hello, this is a text file\n'))).kind).toBe('not-a-pack');
  });

  it('leaves a file with a garbled header to the engine as not-a-pack', async () => {
    const garbled = Buffer.from(pack);
    garbled[1024 + 20] = 0x41; // inside the manifest's header name: the checksum no longer matches
    expect((await measure(garbled)).kind).toBe('not-a-pack');
    expect((await measure(Buffer.alloc(2000, 0x41))).kind).toBe('not-a-pack');
  });
});
