import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ByteReader } from '../../pack/src/byte-reader.js';
import { PackError } from '../../pack/src/errors.js';
import { SLOT_BYTES, SLOTS, SlotFileSource } from '../../pack/src/slot-source.js';
import { scratch } from '../helpers/packs.js';

/**
 * The pack file is read into a ring of reused slots (pack/src/slot-source.ts). What it
 * lends must stay intact for as long as the contract says, and a slot a worker still hashes must
 * not be refilled under it.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
const MiB = 1024 * 1024;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const openFds = async (): Promise<number> => (await readdir('/proc/self/fd')).length;

beforeAll(async () => {
  tmp = await scratch('sonde-slot-source-');
});
afterAll(() => tmp.cleanup());

async function fileOf(name: string, bytes: Buffer): Promise<string> {
  const path = join(tmp.dir, name);
  await writeFile(path, bytes);
  return path;
}

describe('the slot ring that reads a pack file', () => {
  it('hands out every byte of a file several rings long, in order, and keeps the previous buffer intact while the next is read', async () => {
    const bytes = randomBytes(SLOTS * SLOT_BYTES * 2 + 12345);
    const source = new SlotFileSource(await fileOf('long.bin', bytes));
    const whole = createHash('sha256');
    let previous: { view: Buffer; digest: string } | null = null;
    let total = 0;
    for await (const view of source) {
      expect(view.buffer).toBe(source.shared);
      // The buffer before this one is still the consumer's (the AEAD chunker keeps its tail).
      if (previous) expect(sha(previous.view)).toBe(previous.digest);
      whole.update(view);
      total += view.length;
      previous = { view, digest: sha(view) };
    }
    expect(total).toBe(bytes.length);
    expect(whole.digest('hex')).toBe(sha(bytes));
  });

  it('does not refill a pinned slot until it is released, then goes on', async () => {
    const bytes = randomBytes((SLOTS + 3) * SLOT_BYTES);
    const source = new SlotFileSource(await fileOf('pinned.bin', bytes));
    const it = source[Symbol.asyncIterator]();
    const first = (await it.next()).value as Buffer;
    const release = source.pin(first);
    const firstDigest = sha(first);
    for (let i = 1; i < SLOTS; i++) await it.next();
    // The next buffer needs the first slot again: it must wait for the pin.
    let settled = false;
    const pending = it.next().then((r) => {
      settled = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(settled).toBe(false);
    expect(sha(first)).toBe(firstDigest);
    release();
    const r = await pending;
    expect(r.done).toBe(false);
    expect(sha(r.value as Buffer)).toBe(sha(bytes.subarray(SLOTS * SLOT_BYTES, (SLOTS + 1) * SLOT_BYTES)));
    await it.return!();
  });

  it('yields nothing for an empty file, and fails for a missing one', async () => {
    const empty = new SlotFileSource(await fileOf('empty.bin', Buffer.alloc(0)));
    const got: Buffer[] = [];
    for await (const v of empty) got.push(v);
    expect(got).toEqual([]);
    const missing = new SlotFileSource(join(tmp.dir, 'no-such-file'));
    await expect(missing[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: 'ENOENT' });
    await missing.close();
  });

  it('closes its file at the end of it, without being asked', async () => {
    const path = await fileOf('to-the-end.bin', randomBytes(SLOT_BYTES + 99));
    const before = await openFds();
    for (let i = 0; i < 3; i++) {
      let n = 0;
      for await (const view of new SlotFileSource(path)) n += view.length;
      expect(n).toBe(SLOT_BYTES + 99);
    }
    expect(await openFds()).toBe(before);
  });

  it('closes its file when the reader stops early, with reads still in flight', async () => {
    const path = await fileOf('early.bin', randomBytes(4 * SLOT_BYTES));
    const before = await openFds();
    for (let i = 0; i < 5; i++) {
      const source = new SlotFileSource(path);
      const reader = new ByteReader(source, source);
      await reader.readExact(10, 'the start');
      await reader.close();
    }
    expect(await openFds()).toBe(before);
  });

  it('behind a ByteReader: readExact copies out of the ring, stream lends, and a short file is PACK_TRUNCATED', async () => {
    const bytes = randomBytes(3 * MiB);
    const source = new SlotFileSource(await fileOf('reader.bin', bytes));
    const reader = new ByteReader(source, source);
    const head = await reader.readExact(512, 'a header');
    expect(head.buffer).not.toBe(source.shared);
    expect(head.equals(bytes.subarray(0, 512))).toBe(true);
    let lent = 0;
    const streamed = createHash('sha256');
    for await (const chunk of reader.stream(2 * MiB, 'a payload')) {
      if (chunk.buffer === source.shared) lent += 1;
      streamed.update(chunk);
    }
    expect(lent).toBeGreaterThan(0);
    expect(streamed.digest('hex')).toBe(sha(bytes.subarray(512, 512 + 2 * MiB)));
    const e = await reader.readExact(MiB, 'the rest').catch((x: unknown) => x);
    expect(e).toBeInstanceOf(PackError);
    expect((e as PackError).code).toBe('PACK_TRUNCATED');
    await reader.close();
  });
});
