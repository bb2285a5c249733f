import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { countEntries, rawTar, type RawEntry } from '../helpers/hostile-tar.js';
import { expectHostileRefused, paxRecord, type HostileCase, type HostileEntries } from '../helpers/hostile-payload.js';
import { runPack } from '../helpers/pack-run.js';
import { scratch, treeDigest, writeRawPack } from '../helpers/packs.js';
import { pkiWorld, type PkiWorld } from '../helpers/pki-fixture.js';
import { expectNothingEscaped, makeSandbox } from '../helpers/sandbox.js';

/**
 * Entries that would land outside staging (node-tar's list): absolute paths, `..`, symlinks and
 * hardlinks that point outside, writes through a symlink, and link chains that only escape once
 * resolved. Each payload is signed by the vendor; each is refused with UNSAFE_PATH, nothing
 * appears outside staging, and staging is left empty. Absolute targets aim at the sandbox's
 * sentinel folder, where a write that slipped through would be seen.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let world: PkiWorld;

beforeAll(async () => {
  tmp = await scratch('sonde-escape-');
  world = await pkiWorld();
});
afterAll(() => tmp.cleanup());

const unsafe = (entries: HostileEntries): HostileCase => ({ entries, code: 'UNSAFE_PATH' });
const first = { path: 'ok.txt', data: 'an honest file first, so there is something to clean up\n' };

describe('paths', () => {
  const cases: [string, HostileCase][] = [
    ['an absolute path', unsafe((box) => [first, { path: `${box.sentinel}/pwned`, data: 'x' }])],
    ['a path that starts with ..', unsafe(() => [first, { path: '../pwned', data: 'x' }])],
    ['a path that climbs to the sentinel with ../..', unsafe(() => [first, { path: '../../sentinel/pwned', data: 'x' }])],
    ['a path with .. in the middle', unsafe(() => [first, { path: 'a/../../sentinel/pwned', data: 'x' }])],
    ['a path with .. after a real folder', unsafe(() => [{ path: 'a/', type: '5' }, { path: 'a/b/../../../pwned', data: 'x' }])],
    ['a directory entry that climbs out', unsafe(() => [{ path: '../newdir/', type: '5' }])],
    ['an absolute path given in a pax header', unsafe((box) => [{ path: 'PaxHeader', type: 'x', data: paxRecord('path', `${box.sentinel}/pwned`) }, { path: 'innocent', data: 'x' }])],
    ['a .. path given in a pax header', unsafe(() => [{ path: 'PaxHeader', type: 'x', data: paxRecord('path', 'sub/../../pwned') }, { path: 'innocent', data: 'x' }])],
    ['a .. path given as a GNU long name', unsafe(() => [{ path: '././@LongLink', type: 'L', data: '../../sentinel/pwned\0' }, { path: 'innocent', data: 'x' }])],
    ['a path with a NUL byte (from a pax header)', unsafe(() => [{ path: 'PaxHeader', type: 'x', data: paxRecord('path', 'ok\0/../../pwned') }, { path: 'innocent', data: 'x' }])],
    ['a path longer than 4096 bytes', unsafe(() => [{ path: 'PaxHeader', type: 'x', data: paxRecord('path', 'd/'.repeat(2100) + 'f') }, { path: 'innocent', data: 'x' }])],
    ['a name longer than 255 bytes', unsafe(() => [{ path: 'PaxHeader', type: 'x', data: paxRecord('path', 'n'.repeat(256)) }, { path: 'innocent', data: 'x' }])],
  ];
  it.each(cases)('refuses %s', async (_what, c) => {
    await expectHostileRefused(tmp.dir, world, c);
  });
});

describe('symlinks', () => {
  const cases: [string, HostileCase][] = [
    ['a symlink to an absolute path', unsafe((box) => [first, { path: 'evil', type: '2', linkpath: box.sentinel }])],
    ['a symlink to ../..', unsafe(() => [first, { path: 'evil', type: '2', linkpath: '../..' }])],
    ['a nested symlink that climbs one level too many', unsafe(() => [{ path: 'a/b/evil', type: '2', linkpath: '../../../sentinel' }])],
    ['a symlink whose absolute target comes from a pax header', unsafe((box) => [{ path: 'PaxHeader', type: 'x', data: paxRecord('linkpath', box.secret) }, { path: 'evil', type: '2', linkpath: 'harmless' }])],
    ['a file written through a symlink to an absolute folder (d -> /sentinel, then d/file)', unsafe((box) => [{ path: 'd', type: '2', linkpath: box.sentinel }, { path: 'd/pwned', data: 'x' }])],
    ['a file written through a symlink to .. (d -> .., then d/file)', unsafe(() => [{ path: 'd', type: '2', linkpath: '..' }, { path: 'd/pwned', data: 'x' }])],
    ['a file written through a symlink that stays inside (d -> real, then d/file)', unsafe(() => [{ path: 'real/', type: '5' }, { path: 'd', type: '2', linkpath: 'real' }, { path: 'd/pwned', data: 'x' }])],
    ['a folder made through a symlink (d -> ., then d/sub/)', unsafe(() => [{ path: 'd', type: '2', linkpath: '.' }, { path: 'd/sub/', type: '5' }])],
    ['a file under a regular file (f, then f/x)', unsafe(() => [first, { path: 'ok.txt/x', data: 'x' }])],
    ['a chain that escapes only once resolved (a -> ., then b -> a/..)', unsafe(() => [{ path: 'a', type: '2', linkpath: '.' }, { path: 'b', type: '2', linkpath: 'a/..' }])],
    ['a chain that reaches the sentinel once resolved (d/e/a -> ../.., then b -> d/e/a/../../sentinel)', unsafe(() => [
      { path: 'd/e/a', type: '2', linkpath: '../..' },
      { path: 'b', type: '2', linkpath: 'd/e/a/../../sentinel' },
    ])],
    ['a dangling chain that points outside once resolved (b -> d/e/a/../../nowhere)', unsafe(() => [
      { path: 'd/e/a', type: '2', linkpath: '../..' },
      { path: 'b', type: '2', linkpath: 'd/e/a/../../nowhere' },
    ])],
    ['a chain that leaves and comes back by the payload folder name (a -> ., then b -> a/../app/ok.txt)', unsafe(() => [
      first,
      { path: 'a', type: '2', linkpath: '.' },
      { path: 'b', type: '2', linkpath: 'a/../app/ok.txt' },
    ])],
    ['a dangling chain through a link made later (b -> a/../x, then a -> .)', unsafe(() => [
      { path: 'b', type: '2', linkpath: 'a/../nowhere' },
      { path: 'a', type: '2', linkpath: '.' },
    ])],
  ];
  it.each(cases)('refuses %s', async (_what, c) => {
    await expectHostileRefused(tmp.dir, world, c);
  });
});

describe('honest links', () => {
  it('are extracted when every step stays inside, dangling ones included', async () => {
    const box = await makeSandbox(tmp.dir, 'honest');
    const out = join(tmp.dir, 'honest.spk');
    const entries: RawEntry[] = [
      { path: 'lib/libprobe.so.1', data: 'ELF' },
      { path: 'lib/libprobe.so', type: '2', linkpath: 'libprobe.so.1' },
      { path: 'bin/probe', type: '2', linkpath: '../lib/libprobe.so' },
      { path: 'bin/self', type: '2', linkpath: '.' },
      { path: 'bin/again', type: '2', linkpath: 'self/self/probe' },
      { path: 'current', type: '2', linkpath: 'releases/v3' },
      { path: 'h', type: '1', linkpath: 'lib/libprobe.so.1' },
    ];
    await writeRawPack(out, world.vendor.signer, [{ type: 'app', tar: rawTar(entries), fileCount: countEntries(entries) }]);
    await runPack(out, { keyring: world.vendor.keyring, staging: box.staging });
    expect(await readFile(join(box.staging, 'app', 'bin', 'again'), 'utf8')).toBe('ELF');
    expect((await treeDigest(box.staging))['app/current']).toBe('link:releases/v3');
    await expectNothingEscaped(box);
  });
});

describe('hardlinks', () => {
  const cases: [string, HostileCase][] = [
    ['a hardlink to an absolute path outside', unsafe((box) => [first, { path: 'h', type: '1', linkpath: box.secret }])],
    ['a hardlink to ../../sentinel/secret.txt', unsafe(() => [first, { path: 'h', type: '1', linkpath: '../../sentinel/secret.txt' }])],
    ['a hardlink to a path not extracted yet', unsafe(() => [{ path: 'h', type: '1', linkpath: 'later.txt' }, { path: 'later.txt', data: 'x' }])],
    ['a hardlink to a symlink', unsafe(() => [first, { path: 's', type: '2', linkpath: 'ok.txt' }, { path: 'h', type: '1', linkpath: 's' }])],
    ['a hardlink to a folder', unsafe(() => [{ path: 'dir/', type: '5' }, { path: 'h', type: '1', linkpath: 'dir' }])],
    ['a hardlink through a symlinked folder', unsafe(() => [
      { path: 'real/f', data: 'x' },
      { path: 'd', type: '2', linkpath: 'real' },
      { path: 'h', type: '1', linkpath: 'd/f' },
    ])],
  ];
  it.each(cases)('refuses %s', async (_what, c) => {
    await expectHostileRefused(tmp.dir, world, c);
  });

  it('names the entry in the message', async () => {
    const e = await expectHostileRefused(tmp.dir, world, unsafe(() => [first, { path: '../pwned', data: 'x' }]));
    expect(e.message).toContain('../pwned');
  });
});
