import { afterAll, beforeAll, describe, it } from 'vitest';
import { expectHostileRefused, type HostileCase } from '../helpers/hostile-payload.js';
import { scratch } from '../helpers/packs.js';
import { pkiWorld, type PkiWorld } from '../helpers/pki-fixture.js';

/**
 * Packs carry files, folders and links. A device node, a FIFO or any other entry type is refused
 * before anything is created for it (UNSAFE_ENTRY_TYPE); a global pax header, whose settings
 * would silently apply to every later entry, is a malformed payload (PAYLOAD_TAR_INVALID).
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let world: PkiWorld;

beforeAll(async () => {
  tmp = await scratch('sonde-types-');
  world = await pkiWorld();
});
afterAll(() => tmp.cleanup());

const first = { path: 'ok.txt', data: 'an honest file first\n' };

describe('payload entry types', () => {
  const cases: [string, HostileCase][] = [
    ['a character device (/dev/mem, say)', { entries: () => [first, { path: 'mem', type: '3' }], code: 'UNSAFE_ENTRY_TYPE' }],
    ['a block device', { entries: () => [first, { path: 'sda', type: '4' }], code: 'UNSAFE_ENTRY_TYPE' }],
    ['a FIFO', { entries: () => [first, { path: 'pipe', type: '6' }], code: 'UNSAFE_ENTRY_TYPE' }],
    ['a GNU sparse file', { entries: () => [first, { path: 'sparse', type: 'S', data: 'x' }], code: 'UNSAFE_ENTRY_TYPE' }],
    ['a device node that climbs out', { entries: () => [{ path: '../../sentinel/mem', type: '3' }], code: 'UNSAFE_ENTRY_TYPE' }],
    ['a global pax header', { entries: () => [{ path: 'pax_global_header', type: 'g', data: '17 path=../evil\n' }, first], code: 'PAYLOAD_TAR_INVALID' }],
    ['a global pax header after a file', { entries: () => [first, { path: 'pax_global_header', type: 'g', data: '17 uid=0000001\n' }], code: 'PAYLOAD_TAR_INVALID' }],
  ];
  it.each(cases)('refuses %s', async (_what, c) => {
    await expectHostileRefused(tmp.dir, world, c);
  });
});
