import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { rawTar } from '../helpers/hostile-tar.js';
import { expectRefused, runPack } from '../helpers/pack-run.js';
import { scratch, treeDigest, writeRawPack } from '../helpers/packs.js';
import { pkiWorld, type PkiWorld } from '../helpers/pki-fixture.js';
import { expectNothingEscaped, expectRefusedCleanly, makeSandbox } from '../helpers/sandbox.js';

/**
 * An encrypted pack is opened only with a key it was encrypted for. Without one, extraction
 * refuses before staging is touched; hash-only verification (`sonde verify`, the server's upload
 * check) still checks every stored byte against the signed hashes.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let world: PkiWorld;
let pack: string;
let boxes = 0;
const sandbox = async () => makeSandbox(tmp.dir, `box-${++boxes}`);

beforeAll(async () => {
  tmp = await scratch('sonde-recipient-');
  world = await pkiWorld();
  pack = join(tmp.dir, 'for-fleet.spk');
  const tar = rawTar([{ path: 'secret-sauce.bin', data: 'only the fleet may read this\n' }]);
  await writeRawPack(pack, world.vendor.signer, [{ type: 'app', tar, fileCount: 1 }], { recipients: [world.vendor.fleet.cert] });
});
afterAll(() => tmp.cleanup());

describe('extracting a pack encrypted for the fleet key', () => {
  it('works with the fleet key (the control case)', async () => {
    const box = await sandbox();
    await runPack(pack, { keyring: world.vendor.keyring, key: world.vendor.fleet.key, staging: box.staging });
    expect(Object.keys(await treeDigest(box.staging))).toEqual(['app', 'app/secret-sauce.bin']);
    await expectNothingEscaped(box);
  });

  it('refuses a probe key the pack was not encrypted for with RECIPIENT_NOT_FOUND', async () => {
    const box = await sandbox();
    await expectRefused(pack, { keyring: world.vendor.keyring, key: world.vendor.probe.key, staging: box.staging }, 'RECIPIENT_NOT_FOUND');
    await expectRefusedCleanly(box);
  });

  it('refuses the signer key, which is no recipient either, with RECIPIENT_NOT_FOUND', async () => {
    const box = await sandbox();
    await expectRefused(pack, { keyring: world.vendor.keyring, key: world.vendor.signer.key, staging: box.staging }, 'RECIPIENT_NOT_FOUND');
    await expectRefusedCleanly(box);
  });

  it('refuses to extract without a key with RECIPIENT_KEY_REQUIRED', async () => {
    const box = await sandbox();
    await expectRefused(pack, { keyring: world.vendor.keyring, staging: box.staging }, 'RECIPIENT_KEY_REQUIRED');
    await expectRefusedCleanly(box);
  });

  it('still checks every stored byte without a key in hash-only mode', async () => {
    const result = await runPack(pack, { keyring: world.vendor.keyring, mode: 'hash-only' });
    expect(result.decrypted).toBe(false);
    expect(result.payloads.map((p) => p.dir)).toEqual([null]);
  });
});
