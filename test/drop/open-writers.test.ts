import { mkdir, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openForWriting, type WatchedFile } from '../../agent/src/drop/open-writers.js';
import { scratch } from '../helpers/packs.js';
import { holdForReading, holdForWriting, release, releaseAll } from './drop-fixtures.js';

/** The kernel's view of who holds a file open, and how: /proc/<pid>/fd and fdinfo. */
let tmp: { dir: string; cleanup: () => Promise<void> };

beforeAll(async () => {
  tmp = await scratch('sonde-writers-');
});
afterEach(releaseAll);
afterAll(async () => {
  await tmp.cleanup();
});

async function watched(path: string): Promise<WatchedFile> {
  const st = await stat(path);
  return { path, dev: st.dev, ino: st.ino };
}

describe('openForWriting', () => {
  it('finds a file another process holds open for writing, and forgets it once closed', async () => {
    const path = join(tmp.dir, 'writing.spk');
    await writeFile(path, 'x');
    const writer = await holdForWriting(path);
    expect(await openForWriting([await watched(path)])).toEqual(new Set([path]));
    await release(writer);
    expect(await openForWriting([await watched(path)])).toEqual(new Set());
  });

  it('does not count a process that holds the file open read-only', async () => {
    const path = join(tmp.dir, 'reading.spk');
    await writeFile(path, 'x');
    await holdForReading(path);
    expect(await openForWriting([await watched(path)])).toEqual(new Set());
  });

  it('follows the file when it is renamed under its writer (the .part convention)', async () => {
    const part = join(tmp.dir, 'renamed.spk.part');
    const done = join(tmp.dir, 'renamed.spk');
    await writeFile(part, 'x');
    await holdForWriting(part);
    await rename(part, done);
    expect(await openForWriting([await watched(done)])).toEqual(new Set([done]));
  });

  it('matches by inode, not by name alone', async () => {
    const held = join(tmp.dir, 'same-name.spk');
    const twin = join(tmp.dir, 'twin', 'same-name.spk');
    await mkdir(join(tmp.dir, 'twin'));
    await writeFile(held, 'x');
    await writeFile(twin, 'y');
    await holdForWriting(held);
    // Same name, another inode: not the file being written.
    expect(await openForWriting([await watched(twin)])).toEqual(new Set());
    expect(await openForWriting([await watched(held), await watched(twin)])).toEqual(new Set([held]));
  });

  it('answers none without /proc (the size rule alone then applies)', async () => {
    expect(await openForWriting([{ path: '/x', dev: 1, ino: 1 }], join(tmp.dir, 'no-proc'))).toEqual(new Set());
  });
});
