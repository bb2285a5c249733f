import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WORKER_THRESHOLD } from '../../pack/src/payload-hash.js';
import { countEntries, rawTar, type RawEntry } from '../helpers/hostile-tar.js';
import { expectRefused, fromBytes, runPack } from '../helpers/pack-run.js';
import { scratch, treeDigest, writeRawPack, type RawPayload } from '../helpers/packs.js';
import { pkiWorld, type PkiWorld } from '../helpers/pki-fixture.js';
import { mulberry32 } from '../helpers/prng.js';
import { expectRefusedCleanly, makeSandbox } from '../helpers/sandbox.js';

/**
 * Payloads of WORKER_THRESHOLD bytes and more are hashed on a worker thread while the main thread
 * decrypts and extracts (pack/src/payload-hash.ts); the other security suites use small
 * packs, which are hashed inline. These cases take the worker's path: the signed hash still
 * decides, and when extraction stops early the rest of the payload is read through the same hash,
 * in order, so the refusal names the real cause. Each case runs on bytes fed as a socket would, and
 * on the pack file itself, which is read into a ring of slots that the worker hashes in place
 * (pack/src/slot-source.ts).
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let world: PkiWorld;
let boxes = 0;
const MiB = 1024 * 1024;
const big = randomBytes(WORKER_THRESHOLD + 2 * MiB);
const entries: RawEntry[] = [
  { path: 'app/', type: '5' },
  { path: 'app/blob.bin', data: big },
  ...Array.from({ length: 40 }, (_, i): RawEntry => ({ path: `app/share/file-${i}.txt`, data: `line ${i}\n`.repeat(50 + i) })),
  { path: 'app/z-last.txt', data: 'the last entry\n' },
];
const tar = rawTar(entries);
const fileCount = countEntries(entries);
const wantTree = (): Record<string, string> => {
  const out: Record<string, string> = { app: 'dir', 'app/share': 'dir' };
  for (const e of entries) {
    if (e.type === '5') continue;
    out[e.path] = createHash('sha256').update(e.data!).digest('hex');
  }
  return out;
};

/** The tar with one byte of the header at `headerAt` changed: its checksum no longer holds. */
function brokenHeaderAt(headerAt: number): Buffer {
  const t = Buffer.from(tar);
  t[headerAt + 10] = t[headerAt + 10]! ^ 0x20;
  return t;
}
const lastHeader = tar.length - 1024 - 512 - 512;

beforeAll(async () => {
  tmp = await scratch('sonde-large-payload-');
  world = await pkiWorld();
});
afterAll(() => tmp.cleanup());

/** The pack as the run reads it: its bytes in slices, or the file it was written to. */
type Source = string | Buffer;

describe.each([
  ['sealed', true, 'bytes'],
  ['plain', false, 'bytes'],
  ['sealed', true, 'file'],
  ['plain', false, 'file'],
] as const)('a %s payload larger than the worker threshold, read from %s', (_label, sealed, from) => {
  const write = async (name: string, payload: Partial<RawPayload> = {}): Promise<Source> => {
    const path = join(tmp.dir, `${name}-${sealed ? 'sealed' : 'plain'}-${from}.spk`);
    const bytes = await writeRawPack(path, world.vendor.signer, [{ type: 'app', tar, fileCount, ...payload }], {
      ...(sealed ? { recipients: [world.vendor.fleet.cert] } : {}),
    });
    expect(bytes.length).toBeGreaterThan(WORKER_THRESHOLD);
    return from === 'file' ? path : bytes;
  };
  const run = (box: { staging: string }) => ({ keyring: world.vendor.keyring, staging: box.staging, ...(sealed ? { key: world.vendor.fleet.key } : {}) });

  it('is extracted byte for byte, whatever the slicing of the stream', async () => {
    const source = await write('genuine');
    const rng = mulberry32(20261122);
    for (const slicing of [() => 64 * 1024, () => rng.between(1, 700 * 1024)]) {
      const box = await makeSandbox(tmp.dir, `box-${++boxes}`);
      const r = await runPack(typeof source === 'string' ? source : fromBytes(source, slicing), run(box));
      expect(r.payloads[0]!.entries).toBe(fileCount);
      expect(await treeDigest(join(box.staging, 'app'))).toEqual(wantTree());
    }
  });

  it('is refused with PAYLOAD_HASH_MISMATCH when its bytes are not the signed ones, though every one of them unpacks', async () => {
    const box = await makeSandbox(tmp.dir, `box-${++boxes}`);
    const bytes = await write('other-hash', { declare: { sha256: createHash('sha256').update('not these bytes').digest('hex') } });
    await expectRefused(bytes, run(box), 'PAYLOAD_HASH_MISMATCH');
    await expectRefusedCleanly(box);
  });

  it.each([
    ['its first header', 0],
    ['its last header, past the large file', lastHeader],
  ])('with a broken tar header (%s) under a correct signed hash is refused as PAYLOAD_TAR_INVALID, not as a hash mismatch', async (_where, at) => {
    const box = await makeSandbox(tmp.dir, `box-${++boxes}`);
    const bytes = await write(`broken-${at}`, { tar: brokenHeaderAt(at) });
    const e = await expectRefused(bytes, run(box), 'PAYLOAD_TAR_INVALID');
    expect(e.message).toContain('checksum');
    await expectRefusedCleanly(box);
  });

  it('has every byte checked against the signed hash in hash-only mode', async () => {
    const good = await write('hash-only');
    const r = await runPack(good, { keyring: world.vendor.keyring, mode: 'hash-only' });
    expect(r.payloads).toHaveLength(1);
    const bad = await write('hash-only-bad', { declare: { sha256: createHash('sha256').update('other').digest('hex') } });
    await expectRefused(bad, { keyring: world.vendor.keyring, mode: 'hash-only' }, 'PAYLOAD_HASH_MISMATCH');
  });
});

describe.each(['bytes', 'file'] as const)('a sealed payload larger than the worker threshold, altered after sealing, read from %s', (from) => {
  it('is refused at the first altered chunk with DECRYPT_FAILED, far into the payload', async () => {
    const bytes = await writeRawPack(join(tmp.dir, 'flip.spk'), world.vendor.signer, [{ type: 'app', tar, fileCount }], { recipients: [world.vendor.fleet.cert] });
    // The sealed payload is the last entry: its stored bytes end 1024 bytes of tar end plus padding before the end.
    const flipped = Buffer.from(bytes);
    const at = bytes.length - 1024 - 3 * MiB;
    flipped[at] = flipped[at]! ^ 0x01;
    const box = await makeSandbox(tmp.dir, `box-${++boxes}`);
    const source = from === 'file' ? join(tmp.dir, 'flipped.spk') : flipped;
    if (typeof source === 'string') await writeFile(source, flipped);
    const e = await expectRefused(source, { keyring: world.vendor.keyring, staging: box.staging, key: world.vendor.fleet.key }, 'DECRYPT_FAILED');
    expect(e.message).toMatch(/chunk \d{3} /);
    await expectRefusedCleanly(box);
  });
});
