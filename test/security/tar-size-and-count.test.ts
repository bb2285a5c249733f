import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rawTar } from '../helpers/hostile-tar.js';
import { expectHostileRefused, type HostileCase } from '../helpers/hostile-payload.js';
import { scratch } from '../helpers/packs.js';
import { pkiWorld, type PkiWorld } from '../helpers/pki-fixture.js';

/**
 * The signed manifest bounds each payload: its tar is exactly `unpackedSize` bytes and holds
 * exactly `fileCount` entries. Extraction stops as soon as a payload passes either bound, so a
 * signed but hostile payload cannot fill the disk or hide entries; and the tar must end with
 * its end-of-archive marker, with nothing after it.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let world: PkiWorld;

beforeAll(async () => {
  tmp = await scratch('sonde-bounds-');
  world = await pkiWorld();
});
afterAll(() => tmp.cleanup());

const KiB = 1024;
const file = (path: string, bytes: number) => ({ path, data: Buffer.alloc(bytes, 0x61) });
const threeFiles = () => [file('a', 8 * KiB), file('b', 8 * KiB), file('c', 8 * KiB)];
const tarOf = (entries: ReturnType<typeof threeFiles>) => rawTar(entries).length;

describe('the declared unpackedSize', () => {
  const cases: [string, HostileCase][] = [
    ['an entry larger than the whole declared payload', { entries: () => [file('big.bin', 64 * KiB)], declare: { unpackedSize: 16 * KiB }, code: 'UNPACKED_SIZE_MISMATCH' }],
    ['entries that add up past the declared size', { entries: threeFiles, declare: { unpackedSize: tarOf(threeFiles()) - 4 * KiB }, code: 'UNPACKED_SIZE_MISMATCH' }],
    ['entries that add up past the declared size, encrypted', { entries: threeFiles, declare: { unpackedSize: tarOf(threeFiles()) - 4 * KiB }, code: 'UNPACKED_SIZE_MISMATCH', encrypted: true }],
    ['a payload smaller than declared', { entries: threeFiles, declare: { unpackedSize: tarOf(threeFiles()) + 512 }, code: 'UNPACKED_SIZE_MISMATCH' }],
    // The header claims more than the payload holds: the tar ends inside that entry.
    ['an entry whose header claims more bytes than the payload holds', { entries: () => [{ path: 'big.bin', data: 'tiny', declaredSize: 64 * 1024 * 1024 }], code: 'PAYLOAD_TAR_INVALID' }],
  ];
  it.each(cases)('refuses %s', async (_what, c) => {
    await expectHostileRefused(tmp.dir, world, c);
  });

  it('stops as soon as the payload passes its declared size', async () => {
    const e = await expectHostileRefused(tmp.dir, world, { entries: () => [file('big.bin', 64 * KiB)], declare: { unpackedSize: 16 * KiB }, code: 'UNPACKED_SIZE_MISMATCH' });
    expect(e.message).toContain('more than the 16384 bytes');
  });
});

describe('the declared fileCount', () => {
  const cases: [string, HostileCase][] = [
    ['more entries than declared', { entries: threeFiles, declare: { fileCount: 2 }, code: 'FILE_COUNT_MISMATCH' }],
    ['more entries than declared, encrypted', { entries: threeFiles, declare: { fileCount: 2 }, code: 'FILE_COUNT_MISMATCH', encrypted: true }],
    ['fewer entries than declared', { entries: threeFiles, declare: { fileCount: 4 }, code: 'FILE_COUNT_MISMATCH' }],
    ['folders and links that are not counted', { entries: () => [{ path: 'd/', type: '5' }, { path: 'l', type: '2', linkpath: 'd' }, file('f', 10)], declare: { fileCount: 1 }, code: 'FILE_COUNT_MISMATCH' }],
  ];
  it.each(cases)('refuses %s', async (_what, c) => {
    await expectHostileRefused(tmp.dir, world, c);
  });
});

describe('the end of the payload tar', () => {
  const hidden = () => file('hidden.sh', 100);
  const cases: [string, HostileCase][] = [
    ['an entry after the end-of-archive marker', { tar: () => Buffer.concat([rawTar([file('a', 100)]), rawTar([hidden()])]), fileCount: 1, code: 'PAYLOAD_TAR_INVALID' }],
    ['an entry after a single zero block', { tar: () => Buffer.concat([rawTar([file('a', 100)], { end: false }), Buffer.alloc(512), rawTar([hidden()])]), fileCount: 2, code: 'PAYLOAD_TAR_INVALID' }],
    ['bytes after the end-of-archive marker', { tar: () => Buffer.concat([rawTar([file('a', 100)]), Buffer.from('trailing garbage')]), fileCount: 1, code: 'PAYLOAD_TAR_INVALID' }],
    ['no end-of-archive marker', { tar: () => rawTar([file('a', 100)], { end: false }), fileCount: 1, code: 'PAYLOAD_TAR_INVALID' }],
    ['a symlink that carries data', { entries: () => [{ path: 'l', type: '2', linkpath: 'x', data: 'payload hidden in a link' }], code: 'PAYLOAD_TAR_INVALID' }],
    ['a header with a bad checksum', { tar: () => { const t = rawTar([file('a', 100)]); t[0] = 0x62; return t; }, fileCount: 1, code: 'PAYLOAD_TAR_INVALID' }],
  ];
  it.each(cases)('refuses %s', async (_what, c) => {
    await expectHostileRefused(tmp.dir, world, c);
  });
});
