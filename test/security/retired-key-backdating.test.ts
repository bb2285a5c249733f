import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectRefused, runPack } from '../helpers/pack-run.js';
import { scratch, treeDigest } from '../helpers/packs.js';
import { pkiWorld, type PkiWorld } from '../helpers/pki-fixture.js';
import { makeSandbox, expectRefusedCleanly } from '../helpers/sandbox.js';
import { signedPack } from '../helpers/trust-case.js';

/**
 * An attacker holds the key of a signer that was retired (expired) years ago. The clock policy
 * accepts an expired signer for packs whose signed createdAt lies inside its validity, so the
 * attacker backdates the pack. The probe's trusted time floor (the newest createdAt it has
 * accepted) stops it: a certificate that expired before the floor signs nothing more, whatever
 * createdAt the pack claims (pack/src/trust.ts, verifyChain step 6; docs/pack-format.md).
 * The clock chain: root 2020-2040, signer 2021 only.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let world: PkiWorld;

beforeAll(async () => {
  tmp = await scratch('sonde-backdating-');
  world = await pkiWorld();
});
afterAll(() => tmp.cleanup());

const at = (iso: string): Date => new Date(iso);

describe('a retired signing key', () => {
  it('cannot sign a backdated pack once the probe has accepted a newer one: CERT_EXPIRED_BEFORE_FLOOR, nothing written', async () => {
    const backdated = await signedPack(tmp.dir, world.clock.signer, at('2021-06-01T12:00:00Z'));
    const box = await makeSandbox(tmp.dir, 'floor-2023');
    const e = await expectRefused(backdated, { keyring: world.clock.keyring, staging: box.staging, timeFloor: at('2023-01-01T00:00:00Z') }, 'CERT_EXPIRED_BEFORE_FLOOR');
    expect(e.message).toContain('Signer Of 2021');
    await expectRefusedCleanly(box);
  });

  it('still verifies the packs it signed while the probe has accepted nothing newer than its end', async () => {
    const pack = await signedPack(tmp.dir, world.clock.signer, at('2021-06-01T12:00:00Z'));
    const box = await makeSandbox(tmp.dir, 'floor-2021');
    await runPack(pack, { keyring: world.clock.keyring, staging: box.staging, timeFloor: at('2021-12-31T00:00:00Z') });
    expect(Object.keys(await treeDigest(box.staging))).toEqual(['app', 'app/hello.txt']);
  });

  it('is judged by its notAfter, not by the claimed createdAt: the floor one second after its end refuses it', async () => {
    const signer = new X509Certificate(world.clock.signer.chainPem[0]!);
    const floor = new Date(Date.parse(signer.validTo) + 1000);
    const pack = await signedPack(tmp.dir, world.clock.signer, at('2021-03-01T00:00:00Z'));
    await expectRefused(pack, { keyring: world.clock.keyring, staging: join(tmp.dir, 'unused'), timeFloor: floor }, 'CERT_EXPIRED_BEFORE_FLOOR');
  });
});
