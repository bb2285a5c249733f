import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { keyringFromCertificates, loadKeyring } from '../../pack/src/trust.js';
import type { Signer } from '../../pack/src/writer.js';
import { makeExternalEcPki, type ExternalEcPki } from '../helpers/external-pki.js';
import { scratch } from '../helpers/packs.js';
import { pkiWorld, type PkiWorld } from '../helpers/pki-fixture.js';
import { expectSignerAccepted, expectSignerRefused, pemBlocks } from '../helpers/trust-case.js';

/**
 * Only the trust store says yes (trust.ts): a valid signature proves nothing until the signer
 * chains to a keyring root, is a code-signing leaf, and every issuer on the way is a CA. Each
 * pack here carries a perfectly good signature by its signer's key.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let world: PkiWorld;
let ec: ExternalEcPki;
let ecSigner: Signer;

beforeAll(async () => {
  tmp = await scratch('sonde-chain-');
  world = await pkiWorld();
  await mkdir(join(tmp.dir, 'ec'));
  ec = await makeExternalEcPki(join(tmp.dir, 'ec'));
  ecSigner = { key: ec.signerKey, chainPem: pemBlocks(ec.chainPem) };
});
afterAll(() => tmp.cleanup());

describe('verifyPack against the vendor keyring', () => {
  it('accepts the vendor signer (the control case)', async () => {
    await expectSignerAccepted(tmp.dir, world.vendor.signer, world.vendor.keyring);
  });

  it('refuses a pack signed under another root with CHAIN_UNTRUSTED', async () => {
    await expectSignerRefused(tmp.dir, world.other.signer, world.vendor.keyring, 'CHAIN_UNTRUSTED');
  });

  it('refuses a vendor signer whose chain leaves out the intermediate with CHAIN_UNTRUSTED', async () => {
    const leafOnly: Signer = { key: world.vendor.signer.key, chainPem: world.vendor.signer.chainPem.slice(0, 1) };
    await expectSignerRefused(tmp.dir, leafOnly, world.vendor.keyring, 'CHAIN_UNTRUSTED');
  });

  it('refuses a chain whose intermediate was swapped for another CA with CHAIN_INVALID', async () => {
    const swapped: Signer = { key: world.vendor.signer.key, chainPem: [world.vendor.signer.chainPem[0]!, world.variants.caLeaf.chainPem[0]!] };
    await expectSignerRefused(tmp.dir, swapped, world.vendor.keyring, 'CHAIN_INVALID');
  });

  it('refuses a signer with the serverAuth usage only with SIGNER_NOT_CODE_SIGNING', async () => {
    const message = await expectSignerRefused(tmp.dir, world.variants.noCodeSigning, world.vendor.keyring, 'SIGNER_NOT_CODE_SIGNING');
    expect(message).toContain('lacks the code-signing extended key usage');
  });

  it('refuses a signer with no extended key usage at all with SIGNER_NOT_CODE_SIGNING', async () => {
    await expectSignerRefused(tmp.dir, world.variants.noExtendedUsage, world.vendor.keyring, 'SIGNER_NOT_CODE_SIGNING');
  });

  it('refuses a leaf that is a CA, even with the code-signing usage, with SIGNER_NOT_CODE_SIGNING', async () => {
    expect(new X509Certificate(world.variants.caLeaf.chainPem[0]!).ca).toBe(true);
    const message = await expectSignerRefused(tmp.dir, world.variants.caLeaf, world.vendor.keyring, 'SIGNER_NOT_CODE_SIGNING');
    expect(message).toContain('is a CA');
  });

  it('refuses a chain whose intermediate is not a CA with CHAIN_INVALID', async () => {
    expect(new X509Certificate(world.variants.underNonCa.chainPem[1]!).ca).toBe(false);
    await expectSignerRefused(tmp.dir, world.variants.underNonCa, world.vendor.keyring, 'CHAIN_INVALID');
  });

  it('refuses a chain of more certificates than allowed with SIGNATURE_MALFORMED', async () => {
    const long: Signer = { key: world.vendor.signer.key, chainPem: [...world.vendor.signer.chainPem, ...Array(4).fill(world.vendor.signer.chainPem[1]!)] };
    await expectSignerRefused(tmp.dir, long, world.vendor.keyring, 'SIGNATURE_MALFORMED');
  });
});

describe('an ECDSA P-256 chain from an external PKI', () => {
  it('verifies when its root is in an in-memory keyring', async () => {
    await expectSignerAccepted(tmp.dir, ecSigner, keyringFromCertificates([new X509Certificate(ec.rootPem)]));
  });

  it('verifies when its root is in a keyring folder beside the vendor root', async () => {
    const ring = join(tmp.dir, 'ring');
    await mkdir(ring);
    await copyFile(ec.rootPath, join(ring, 'external.crt'));
    await copyFile(join(world.vendor.dir, 'root.crt'), join(ring, 'vendor.crt'));
    const keyring = await loadKeyring(ring);
    await expectSignerAccepted(tmp.dir, ecSigner, keyring);
    await expectSignerAccepted(tmp.dir, world.vendor.signer, keyring);
  });

  it('is refused with CHAIN_UNTRUSTED when its root is not in the keyring', async () => {
    await expectSignerRefused(tmp.dir, ecSigner, world.vendor.keyring, 'CHAIN_UNTRUSTED');
  });
});
