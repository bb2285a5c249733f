import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { scratch } from '../helpers/packs.js';
import { pkiWorld, type PkiWorld } from '../helpers/pki-fixture.js';
import { expectSignerAccepted, expectSignerRefused } from '../helpers/trust-case.js';

/**
 * The clock policy (DESIGN.md, "Trust"): probes often have a bad clock, so certificates are judged
 * at the pack's signed createdAt, never at the probe's "now". A signer that has expired since is
 * still good for the packs it signed while valid; a pack claiming a createdAt outside any chain
 * certificate's validity is refused. The clock chain: root and intermediate valid 2020 to
 * 2039/2040, signer valid during 2021 only.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let world: PkiWorld;

beforeAll(async () => {
  tmp = await scratch('sonde-clock-');
  world = await pkiWorld();
});
afterAll(() => tmp.cleanup());

const at = (iso: string): Date => new Date(iso);

describe('the clock policy', () => {
  it('uses a signer that expired before today', () => {
    const signer = new X509Certificate(world.clock.signer.chainPem[0]!);
    expect(Date.parse(signer.validTo)).toBeLessThan(Date.now());
    expect(new Date(signer.validTo)).toEqual(world.clock.signerValidity.notAfter);
  });

  it('accepts a pack signed while the signer was valid, though the signer is expired now', async () => {
    await expectSignerAccepted(tmp.dir, world.clock.signer, world.clock.keyring, at('2021-06-01T12:00:00Z'));
  });

  it('accepts a pack created at the last second of the signer validity', async () => {
    await expectSignerAccepted(tmp.dir, world.clock.signer, world.clock.keyring, world.clock.signerValidity.notAfter);
  });

  it.each([
    ['one second after the signer expired', '2022-01-01T00:00:01Z', 'Signer Of 2021'],
    ['a year after the signer expired', '2023-01-01T00:00:00Z', 'Signer Of 2021'],
    ['before the signer was issued', '2020-06-01T00:00:00Z', 'Signer Of 2021'],
  ])('refuses a pack created %s with CERT_NOT_VALID_AT_CREATION', async (_when, createdAt, subject) => {
    const message = await expectSignerRefused(tmp.dir, world.clock.signer, world.clock.keyring, 'CERT_NOT_VALID_AT_CREATION', at(createdAt));
    expect(message).toContain(subject);
  });

  it('refuses a pack created before the vendor signer existed, however valid the signer is today', async () => {
    await expectSignerRefused(tmp.dir, world.vendor.signer, world.vendor.keyring, 'CERT_NOT_VALID_AT_CREATION', at('2019-01-01T00:00:00Z'));
  });

  it('refuses a pack created after the vendor signer ends, however far the probe clock lags', async () => {
    const signer = new X509Certificate(world.vendor.signer.chainPem[0]!);
    const after = new Date(Date.parse(signer.validTo) + 86_400_000);
    await expectSignerRefused(tmp.dir, world.vendor.signer, world.vendor.keyring, 'CERT_NOT_VALID_AT_CREATION', after);
  });
});
