import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { cp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PackError } from '../../pack/src/errors.js';
import { fingerprintHex } from '../../pack/src/revocations.js';
import { keyringFromCertificates, loadKeyring } from '../../pack/src/trust.js';
import { revoke } from '../../images/src/keys/key-dir.js';
import { scratch } from '../helpers/packs.js';
import { copyVendorKeys, pkiWorld, type PkiWorld } from '../helpers/pki-fixture.js';
import { expectSignerAccepted, expectSignerRefused } from '../helpers/trust-case.js';

/**
 * `sonde keys revoke` adds a serial to revocations.json beside the root and signs the list with
 * the root key. A keyring reloaded after that refuses every chain holding a revoked certificate,
 * and a list that was altered after signing makes the whole keyring unusable (fail closed).
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let world: PkiWorld;
/** A copy of the vendor keys whose signer is revoked; its revocations.json is the genuine list. */
let revokedSignerKeys: string;
let genuineList: string;

beforeAll(async () => {
  tmp = await scratch('sonde-revoke-');
  world = await pkiWorld();
  revokedSignerKeys = await copyVendorKeys(world, join(tmp.dir, 'keys-signer-revoked'));
  await revoke(revokedSignerKeys, { cert: join(revokedSignerKeys, 'signer.crt'), reason: 'key compromise' });
  genuineList = await readFile(join(revokedSignerKeys, 'revocations.json'), 'utf8');
});
afterAll(() => tmp.cleanup());

describe('a revoked certificate in the signer chain', () => {
  it('refuses a pack by a revoked signer with CERT_REVOKED once the keyring is reloaded', async () => {
    await expectSignerAccepted(tmp.dir, world.vendor.signer, await loadKeyring(join(world.vendor.dir, 'root.crt')));
    const message = await expectSignerRefused(tmp.dir, world.vendor.signer, await loadKeyring(join(revokedSignerKeys, 'root.crt')), 'CERT_REVOKED');
    expect(message).toContain('Test Vendor Signer');
  });

  it('refuses a pack whose signer was issued by a revoked intermediate with CERT_REVOKED', async () => {
    const keys = await copyVendorKeys(world, join(tmp.dir, 'keys-intermediate-revoked'));
    await revoke(keys, { cert: join(keys, 'intermediate.crt') });
    const message = await expectSignerRefused(tmp.dir, world.vendor.signer, await loadKeyring(keys), 'CERT_REVOKED');
    expect(message).toContain('Test Vendor Intermediate');
  });

  it('still accepts other signers under the same root', async () => {
    const keyring = await loadKeyring(join(revokedSignerKeys, 'root.crt'));
    // Issued by the same intermediate; refused for its usages, not for the revocation.
    await expectSignerRefused(tmp.dir, world.variants.noCodeSigning, keyring, 'SIGNER_NOT_CODE_SIGNING');
    await expectSignerRefused(tmp.dir, world.variants.caLeaf, keyring, 'SIGNER_NOT_CODE_SIGNING');
  });
});

describe('a tampered revocations.json', () => {
  type Edit = (file: Record<string, any>) => void;
  const edits: [string, Edit | string][] = [
    ['the revoked entry removed (un-revoking the signer)', (f) => void (f.body.revoked = [])],
    ['the revoked serial changed', (f) => void (f.body.revoked[0].serial = '1234ABCD')],
    ['the sequence number raised', (f) => void (f.body.sequence += 1)],
    ['the issue date moved', (f) => void (f.body.issuedAt = '2030-01-01T00:00:00.000Z')],
    ['a byte of the signature changed', (f) => void (f.signature = `${f.signature[0] === 'A' ? 'B' : 'A'}${f.signature.slice(1)}`)],
    ['the algorithm switched to ECDSA', (f) => void (f.algorithm = 'ecdsa-p256-sha256')],
    ['an unknown key added', (f) => void (f.comment = 'harmless?')],
    ['an unknown key added inside the body', (f) => void (f.body.note = 'harmless?')],
    ['the issuer set to a root that is not in the keyring', (f) => void (f.body.issuer = '0'.repeat(64))],
    ['the format renamed', (f) => void (f.format = 'sonde-revocations-2')],
    ['the file cut in half', 'HALF'],
    ['the file emptied', ''],
  ];

  it.each(edits)('makes loadKeyring refuse the keyring with REVOCATIONS_INVALID: %s', async (what, edit) => {
    const keys = join(tmp.dir, `tampered-${what.replace(/\W+/g, '-')}`);
    await cp(revokedSignerKeys, keys, { recursive: true });
    let text: string;
    if (typeof edit === 'function') {
      const file = JSON.parse(genuineList) as Record<string, any>;
      edit(file);
      text = JSON.stringify(file, null, 2);
    } else text = edit === 'HALF' ? genuineList.slice(0, genuineList.length / 2) : edit;
    await writeFile(join(keys, 'revocations.json'), text);
    for (const path of [join(keys, 'root.crt'), keys]) {
      const e = await loadKeyring(path).catch((err: unknown) => err);
      expect(e, path).toBeInstanceOf(PackError);
      expect((e as PackError).code).toBe('REVOCATIONS_INVALID');
    }
  });

  it('refuses a list genuinely signed by another root with REVOCATIONS_INVALID', async () => {
    const otherKeys = join(tmp.dir, 'other-keys');
    await cp(world.other.dir, otherKeys, { recursive: true });
    await revoke(otherKeys, { serial: 'ABCDEF' });
    const foreign = await readFile(join(otherKeys, 'revocations.json'), 'utf8');
    const vendorRoot = new X509Certificate(await readFile(join(world.vendor.dir, 'root.crt'), 'utf8'));
    expect(() => keyringFromCertificates([vendorRoot], foreign)).toThrow(expect.objectContaining({ code: 'REVOCATIONS_INVALID' }));
    // Even with the issuer field pointed at the vendor root, the signature gives it away.
    const relabelled = JSON.parse(foreign) as { body: { issuer: string } };
    relabelled.body.issuer = fingerprintHex(vendorRoot);
    expect(() => keyringFromCertificates([vendorRoot], JSON.stringify(relabelled))).toThrow(
      expect.objectContaining({ code: 'REVOCATIONS_INVALID', message: expect.stringContaining('does not verify') }),
    );
    await rm(otherKeys, { recursive: true });
  });
});
