import { lstat, mkdir, readdir, readFile, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InnerHeader } from '../../pack/src/payload-tar.js';
import { SafeExtractor, safeComponents } from '../../pack/src/safe-extract.js';
import { scratch } from '../helpers/packs.js';

/**
 * The extractor itself (pack/src/safe-extract.ts), entry by entry, each test named after the
 * attack it stops. The tar-* security tests drive whole hostile packs, where a second layer (the
 * tar reader, the final symlink walk) can hide a check that stopped working; here each check
 * stands alone (docs/testing.md, mutation testing).
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let n = 0;
beforeAll(async () => {
  tmp = await scratch('sonde-safe-extractor-');
});
afterAll(() => tmp.cleanup());

async function fresh(fileCount = 100, flushLargeFiles = false): Promise<{ x: SafeExtractor; root: string }> {
  const root = join(tmp.dir, `root-${++n}`);
  await mkdir(root);
  return { x: new SafeExtractor(root, { fileCount, flushLargeFiles }), root };
}

const file = (path: string, size = 0, mode = 0o644): InnerHeader => ({ path, type: 'file', size, mode, linkpath: '' });
const dir = (path: string): InnerHeader => ({ path, type: 'directory', size: 0, mode: 0o755, linkpath: '' });
const symlink = (path: string, linkpath: string): InnerHeader => ({ path, type: 'symlink', size: 0, mode: 0o777, linkpath });
const hardlink = (path: string, linkpath: string): InnerHeader => ({ path, type: 'hardlink', size: 0, mode: 0o644, linkpath });

async function refusal(p: Promise<unknown> | (() => unknown)): Promise<{ code: string; message: string }> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    return { code: (e as { code?: string }).code ?? 'none', message: (e as Error).message };
  }
  return { code: 'ok', message: '' };
}

async function write(x: SafeExtractor, h: InnerHeader, ...chunks: string[]): Promise<void> {
  await x.entry(h);
  for (const c of chunks) x.data(Buffer.from(c));
  x.entryEnd();
}

describe('paths', () => {
  it('refuses a NUL byte, an absolute path and a climb, naming what the path was for', async () => {
    expect(await refusal(() => safeComponents('a\0b'))).toEqual({ code: 'UNSAFE_PATH', message: 'entry path contains a NUL byte' });
    expect(await refusal(() => safeComponents('/etc/passwd', 'hardlink target'))).toEqual({ code: 'UNSAFE_PATH', message: 'hardlink target "/etc/passwd" is an absolute path' });
    expect(await refusal(() => safeComponents('a/../../x'))).toEqual({ code: 'UNSAFE_PATH', message: `entry "a/../../x" climbs out with '..'` });
    expect(safeComponents('./a//b/./c')).toEqual(['a', 'b', 'c']);
  });

  it('takes a path of 4096 bytes and a name of 255, and refuses one byte more of either', async () => {
    const name255 = 'n'.repeat(255);
    expect(safeComponents(name255)).toEqual([name255]);
    expect(await refusal(() => safeComponents('n'.repeat(256)))).toEqual({ code: 'UNSAFE_PATH', message: `entry "${'n'.repeat(256)}" has a name that is too long` });
    const long = `${Array.from({ length: 20 }, () => 'p'.repeat(200)).join('/')}/${'q'.repeat(76)}`;
    expect(Buffer.byteLength(long)).toBe(4096);
    expect(safeComponents(long)).toHaveLength(21);
    expect(await refusal(() => safeComponents(`${long}q`))).toEqual({ code: 'UNSAFE_PATH', message: 'entry path is too long' });
  });
});

describe('entries', () => {
  it('stops at one entry more than the manifest declares (a tar bomb by count)', async () => {
    const { x } = await fresh(2);
    await write(x, file('a'));
    await write(x, file('b'));
    expect(await refusal(x.entry(file('c')))).toEqual({ code: 'FILE_COUNT_MISMATCH', message: 'the payload holds more than the 2 entries its manifest declares' });
  });

  it('skips the "./" folder entry itself, and refuses any other entry without a path', async () => {
    const { x } = await fresh();
    await x.entry(dir('./'));
    expect(x.created).toBe(0);
    expect(await refusal(x.entry(file('./')))).toEqual({ code: 'UNSAFE_PATH', message: 'file entry with an empty path' });
  });

  it('refuses a path that appears twice (an overwrite), but lets a folder entry follow the folder its files implied', async () => {
    const { x, root } = await fresh();
    await write(x, file('d/inner.txt'), 'in');
    await x.entry(dir('d'));
    expect(x.created).toBe(2);
    expect((await stat(join(root, 'd'))).isDirectory()).toBe(true);
    expect(await refusal(x.entry(dir('d')))).toEqual({ code: 'DUPLICATE_ENTRY', message: '"d" appears twice in the payload' });
    await write(x, file('f'), 'one');
    expect(await refusal(x.entry(file('f')))).toEqual({ code: 'DUPLICATE_ENTRY', message: '"f" appears twice in the payload' });
    const { x: y } = await fresh();
    await write(y, file('e/x'));
    expect(await refusal(y.entry(file('e')))).toMatchObject({ code: 'DUPLICATE_ENTRY' });
    expect(await readFile(join(root, 'f'), 'utf8')).toBe('one');
  });

  it('makes folders 0755 and files with the mode the entry names, whatever the umask, writing each chunk where it belongs', async () => {
    const umask = process.umask(0);
    try {
      const { x: y, root: r } = await fresh();
      await write(y, file('implied/deeper/f', 1, 0o600), 'x');
      await y.entry(dir('made'));
      await y.finish();
      for (const d of ['implied', 'implied/deeper', 'made']) expect((await stat(join(r, d))).mode & 0o777, d).toBe(0o755);
      expect((await stat(join(r, 'implied/deeper/f'))).mode & 0o777).toBe(0o600);
    } finally {
      process.umask(umask);
    }
    const { x, root } = await fresh();
    await x.entry(dir('conf'));
    await write(x, file('conf/app.json', 10, 0o640), 'hello ', 'world');
    await x.finish();
    expect((await stat(join(root, 'conf'))).mode & 0o777).toBe(0o755);
    expect((await stat(join(root, 'conf/app.json'))).mode & 0o777).toBe(0o640);
    expect(await readFile(join(root, 'conf/app.json'), 'utf8')).toBe('hello world');
    expect(x.bytesWritten).toBe(11);
    expect(x.entries).toBe(2);
  });

  it('writes a large file whole when it is flushed early, and refuses data outside a file', async () => {
    const { x, root } = await fresh(10, true);
    const big = 'b'.repeat(300 * 1024);
    await write(x, file('big.bin', big.length), big.slice(0, 1000), big.slice(1000));
    await x.finish();
    expect((await readFile(join(root, 'big.bin'), 'utf8')).length).toBe(big.length);
    expect(await refusal(() => x.data(Buffer.from('stray')))).toEqual({ code: 'PAYLOAD_TAR_INVALID', message: 'data outside a file entry' });
  });
});

describe('links', () => {
  it('refuses a symlink that is empty, absolute, or climbs out, and keeps one that stays inside', async () => {
    const { x, root } = await fresh();
    await write(x, file('data/f'));
    expect(await refusal(x.entry(symlink('l0', '')))).toEqual({ code: 'UNSAFE_PATH', message: 'symlink "l0" points to an absolute path ""' });
    expect(await refusal(x.entry(symlink('l1', '/etc/shadow')))).toEqual({ code: 'UNSAFE_PATH', message: 'symlink "l1" points to an absolute path "/etc/shadow"' });
    expect(await refusal(x.entry(symlink('data/l2', '../../x')))).toEqual({ code: 'UNSAFE_PATH', message: 'symlink "data/l2" points outside the payload ("../../x")' });
    expect(await refusal(x.entry(symlink('l3', '..')))).toMatchObject({ code: 'UNSAFE_PATH', message: expect.stringContaining('points outside the payload') });
    await write(x, symlink('data/ok', '../data/f'));
    await write(x, symlink('dots..name', 'data/f'));
    await x.finish();
    expect(await readlink(join(root, 'data/ok'))).toBe('../data/f');
    expect((await lstat(join(root, 'dots..name'))).isSymbolicLink()).toBe(true);
  });

  it('never writes through a symlink or under a file, at any depth, a hardlink counting as a file', async () => {
    const { x } = await fresh();
    await write(x, symlink('l', 'data'));
    expect(await refusal(x.entry(file('l/evil')))).toEqual({ code: 'UNSAFE_PATH', message: '"l/evil" would be written through the symlink "l"' });
    await write(x, file('f'));
    expect(await refusal(x.entry(file('f/evil')))).toEqual({ code: 'UNSAFE_PATH', message: '"f/evil" would be written under the file "f"' });
    await write(x, symlink('a/b', '../data'));
    expect(await refusal(x.entry(file('a/b/c/evil')))).toEqual({ code: 'UNSAFE_PATH', message: '"a/b/c/evil" would be written through the symlink "a/b"' });
    await write(x, hardlink('h', 'f'));
    expect(await refusal(x.entry(file('h/evil')))).toEqual({ code: 'UNSAFE_PATH', message: '"h/evil" would be written under the file "h"' });
  });

  it('leaves no file open, small or large, flushed early or not, finished or aborted (a daemon would run out)', async () => {
    const openFiles = async (): Promise<number> => (await readdir('/proc/self/fd')).length;
    const before = await openFiles();
    for (const flush of [false, true]) {
      const { x } = await fresh(10, flush);
      await write(x, file('small'), 'x');
      await write(x, file('large', 300 * 1024), 'y'.repeat(300 * 1024));
      await x.finish();
      const { x: cut } = await fresh(10, flush);
      await cut.entry(file('half', 10));
      cut.data(Buffer.from('half'));
      await cut.abort();
    }
    expect(await openFiles()).toBe(before);
  });

  it('makes a hardlink only to a regular file extracted before it', async () => {
    const { x, root } = await fresh();
    await write(x, file('orig'), 'shared');
    await write(x, hardlink('copy', 'orig'));
    expect((await stat(join(root, 'copy'))).ino).toBe((await stat(join(root, 'orig'))).ino);
    await x.entry(dir('d'));
    await write(x, symlink('s', 'orig'));
    for (const target of ['d', 's', 'missing']) {
      expect(await refusal(x.entry(hardlink(`h-${target}`, target)))).toEqual({
        code: 'UNSAFE_PATH',
        message: `hardlink "h-${target}" must point to a regular file extracted earlier, not "${target}"`,
      });
    }
    expect(await refusal(x.entry(hardlink('h-up', '../outside')))).toEqual({ code: 'UNSAFE_PATH', message: `hardlink target "../outside" climbs out with '..'` });
  });

  it('after the tar, refuses a link that climbs out through another link, or through a folder that does not exist', async () => {
    const chained = await fresh();
    await write(chained.x, symlink('a', '.'));
    await write(chained.x, symlink('b', 'a/..'));
    expect(await refusal(chained.x.finish())).toEqual({ code: 'UNSAFE_PATH', message: 'symlink "b" resolves outside the payload through another link' });
    const dangling = await fresh();
    await write(dangling.x, symlink('c', 'missing/../c2'));
    expect(await refusal(dangling.x.finish())).toEqual({ code: 'UNSAFE_PATH', message: `symlink "c" climbs with '..' through a path that does not exist` });
    const fine = await fresh();
    await write(fine.x, file('real/f'));
    await write(fine.x, symlink('real/back', './f'));
    await write(fine.x, symlink('nowhere', 'missing/deeper'));
    // A '..' before the part that does not exist, staying inside, is fine.
    await write(fine.x, symlink('real/up-then-missing', '../real/missing'));
    expect(await refusal(fine.x.finish())).toEqual({ code: 'ok', message: '' });
  });

  it('closes an open file when the extraction is aborted', async () => {
    const { x } = await fresh();
    await x.entry(file('half', 10));
    x.data(Buffer.from('half'));
    await x.abort();
    expect(await refusal(() => x.data(Buffer.from('more')))).toMatchObject({ code: 'PAYLOAD_TAR_INVALID' });
  });
});
