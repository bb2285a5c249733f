import { afterAll, beforeAll, describe, it } from 'vitest';
import { expectHostileRefused, type HostileCase, type HostileEntries } from '../helpers/hostile-payload.js';
import { scratch } from '../helpers/packs.js';
import { pkiWorld, type PkiWorld } from '../helpers/pki-fixture.js';

/**
 * A path appears once in a payload. A second entry for it, however spelled, is refused as
 * DUPLICATE_ENTRY rather than overwriting the first: replacing a checked file (or turning it into
 * a link) after the fact is how a tar swaps what was inspected for what gets used.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let world: PkiWorld;

beforeAll(async () => {
  tmp = await scratch('sonde-dup-');
  world = await pkiWorld();
});
afterAll(() => tmp.cleanup());

const dup = (entries: HostileEntries): HostileCase => ({ entries, code: 'DUPLICATE_ENTRY' });

describe('duplicate payload entries', () => {
  const cases: [string, HostileCase][] = [
    ['the same file twice', dup(() => [{ path: 'run.sh', data: 'echo good' }, { path: 'run.sh', data: 'echo evil' }])],
    ['a file and ./ the same file', dup(() => [{ path: 'run.sh', data: 'echo good' }, { path: './run.sh', data: 'echo evil' }])],
    ['a file and the same path with a doubled slash', dup(() => [{ path: 'bin/run.sh', data: 'a' }, { path: 'bin//run.sh', data: 'b' }])],
    ['a file replaced by a symlink', dup(() => [{ path: 'run.sh', data: 'a' }, { path: 'other', data: 'b' }, { path: 'run.sh', type: '2', linkpath: 'other' }])],
    ['a symlink replaced by a file', dup(() => [{ path: 'other', data: 'b' }, { path: 'run.sh', type: '2', linkpath: 'other' }, { path: 'run.sh', data: 'a' }])],
    ['a file replaced by a hardlink', dup(() => [{ path: 'a', data: 'a' }, { path: 'b', data: 'b' }, { path: 'b', type: '1', linkpath: 'a' }])],
    ['a file replaced by a folder', dup(() => [{ path: 'x', data: 'a' }, { path: 'x/', type: '5' }])],
    ['a folder replaced by a file', dup(() => [{ path: 'x/', type: '5' }, { path: 'x', data: 'a' }])],
    ['a folder listed twice', dup(() => [{ path: 'x/', type: '5' }, { path: 'x/', type: '5' }])],
  ];
  it.each(cases)('refuses %s', async (_what, c) => {
    await expectHostileRefused(tmp.dir, world, c);
  });
});
