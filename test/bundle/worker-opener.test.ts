import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BundleError } from '../../agent/src/bundle/errors.js';
import { AEAD_CHUNK_PLAIN, AEAD_CHUNK_STORED } from '../../agent/src/bundle/format.js';
import { SlotFileSource } from '../../agent/src/bundle/slot-source.js';
import { StreamSealer } from '../../agent/src/bundle/stream-aead.js';
import { WorkerOpener } from '../../agent/src/bundle/worker-opener.js';
import { scratch } from '../helpers/packs.js';

/**
 * A large sealed payload is decrypted on a worker, out of the pack file's slot ring, into a ring
 * of the worker's own (agent/src/bundle/worker-opener.ts). It must give back exactly the plaintext
 * the sealer took, wherever the chunk and slot boundaries fall, stop at the first chunk out of
 * place, and leave no slot of the pack's ring pinned behind it.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
const MiB = 1024 * 1024;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const key = randomBytes(32);
let files = 0;

beforeAll(async () => {
  tmp = await scratch('sonde-worker-opener-');
});
afterAll(() => tmp.cleanup());

function seal(plain: Buffer): Buffer {
  const sealer = new StreamSealer(key);
  const parts: Buffer[] = [];
  for (let at = 0; at < plain.length; at += 100_003) parts.push(...sealer.push(plain.subarray(at, at + 100_003)));
  parts.push(sealer.end());
  return Buffer.concat(parts);
}

/** Feeds the file through a WorkerOpener as extraction does; returns the plaintext's digest and size. */
async function open(stored: Buffer, openKey = key): Promise<{ digest: string; bytes: number; source: SlotFileSource }> {
  const path = join(tmp.dir, `sealed-${++files}.bin`);
  await writeFile(path, stored);
  const source = new SlotFileSource(path);
  const opener = new WorkerOpener(openKey, stored.length, source);
  const feeding = (async () => {
    try {
      for await (const view of source) opener.feed(view);
    } catch (e) {
      opener.fail(e as Error);
    }
  })();
  const digest = createHash('sha256');
  let bytes = 0;
  try {
    for (let plain = await opener.next(); plain !== null; plain = await opener.next()) {
      expect(plain.buffer).not.toBe(source.shared);
      digest.update(plain);
      bytes += plain.length;
    }
    await feeding;
    return { digest: digest.digest('hex'), bytes, source };
  } finally {
    opener.dispose();
    await feeding;
    await source.close();
  }
}

describe('decrypting a sealed payload on a worker, out of the pack file slot ring', () => {
  it.each([
    ['an odd size spanning many slots', 9 * MiB + 12_345],
    ['a whole number of chunks (the final chunk is full)', 150 * AEAD_CHUNK_PLAIN],
    ['one byte', 1],
    ['nothing (one empty final chunk)', 0],
  ])('gives back exactly the sealed plaintext: %s', async (_label, size) => {
    const plain = randomBytes(size);
    const r = await open(seal(plain));
    expect(r.bytes).toBe(size);
    expect(r.digest).toBe(sha(plain));
  });

  it('hands out the plaintext before the first altered chunk, then refuses with DECRYPT_FAILED naming that chunk', async () => {
    const plain = randomBytes(3 * MiB);
    const stored = seal(plain);
    stored[40 * AEAD_CHUNK_STORED + 77] ^= 0x01;
    const path = join(tmp.dir, 'altered.bin');
    await writeFile(path, stored);
    const source = new SlotFileSource(path);
    const opener = new WorkerOpener(key, stored.length, source);
    const feeding = (async () => {
      for await (const view of source) opener.feed(view);
    })().catch((e: Error) => opener.fail(e));
    const got: Buffer[] = [];
    const e = await (async () => {
      for (let p = await opener.next(); p !== null; p = await opener.next()) got.push(Buffer.from(p));
    })().catch((caught: unknown) => caught);
    opener.dispose();
    await feeding;
    expect(e).toBeInstanceOf(BundleError);
    expect((e as BundleError).code).toBe('DECRYPT_FAILED');
    expect((e as BundleError).message).toContain('chunk 40 ');
    const before = Buffer.concat(got);
    // Whole megabyte slots are handed out: everything up to the slot that holds chunk 40, no more.
    expect(before.length).toBeLessThanOrEqual(40 * AEAD_CHUNK_PLAIN);
    expect(before.equals(plain.subarray(0, before.length))).toBe(true);
    await source.close();
  });

  it('refuses two chunks swapped, and a stream whose final chunk was dropped', async () => {
    const stored = seal(randomBytes(2 * MiB + 5));
    const swapped = Buffer.from(stored);
    stored.copy(swapped, 3 * AEAD_CHUNK_STORED, 4 * AEAD_CHUNK_STORED, 5 * AEAD_CHUNK_STORED);
    stored.copy(swapped, 4 * AEAD_CHUNK_STORED, 3 * AEAD_CHUNK_STORED, 4 * AEAD_CHUNK_STORED);
    await expect(open(swapped)).rejects.toMatchObject({ code: 'DECRYPT_FAILED', message: expect.stringContaining('chunk 3 ') });
    // Cut after a whole number of chunks: the last one left does not carry the final flag.
    const cut = stored.subarray(0, 32 * AEAD_CHUNK_STORED);
    await expect(open(cut)).rejects.toMatchObject({ code: 'DECRYPT_FAILED', message: expect.stringContaining('chunk 31 ') });
  });

  it('refuses a wrong key at the first chunk', async () => {
    const stored = seal(randomBytes(MiB));
    await expect(open(stored, randomBytes(32))).rejects.toMatchObject({ code: 'DECRYPT_FAILED', message: expect.stringContaining('chunk 0 ') });
  });

  it('passes a failure of the reader on to the consumer, and leaves no slot of the ring pinned', async () => {
    // Longer than the ring: had the worker kept its first slots pinned, reading on would stall.
    const stored = seal(randomBytes(12 * MiB));
    const path = join(tmp.dir, 'reader-fails.bin');
    await writeFile(path, stored);
    const source = new SlotFileSource(path);
    const it = source[Symbol.asyncIterator]();
    const opener = new WorkerOpener(key, stored.length, source);
    let read = 0;
    for (let i = 0; i < 2; i++) {
      const view = (await it.next()).value as Buffer;
      read += view.length;
      opener.feed(view);
    }
    opener.fail(new BundleError('PACK_TRUNCATED', 'the pack ends inside the test payload'));
    await expect(
      (async () => {
        for (let p = await opener.next(); p !== null; p = await opener.next());
      })(),
    ).rejects.toMatchObject({ code: 'PACK_TRUNCATED' });
    opener.dispose();
    for (let r = await it.next(); !r.done; r = await it.next()) read += r.value.length;
    expect(read).toBe(stored.length);
  });
});
