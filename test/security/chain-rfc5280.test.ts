import { createPrivateKey } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fingerprintHex, signRevocations } from '../../pack/src/revocations.js';
import { keyringFromCertificates, type Keyring } from '../../pack/src/trust.js';
import { scratch } from '../helpers/packs.js';
import { oddPki, type OddCert } from '../helpers/odd-pki.js';
import { expectSignerAccepted, expectSignerRefused } from '../helpers/trust-case.js';

/**
 * Chains that a careless verifier would accept, each built by openssl the way a misconfigured or
 * hostile CA would issue it, and each refused where RFC 5280 says so (pack/src/trust.ts,
 * verifyChain; extensions read by pack/src/cert-extensions.ts):
 * - an intermediate limited to issuing leaves (pathLenConstraint 0) that issued another CA;
 * - a CA whose key usage lacks keyCertSign;
 * - a signer whose only extended key usage is anyExtendedKeyUsage, or that lacks digitalSignature;
 * - a certificate with a critical extension the verifier does not process;
 * - a root revoked by fingerprint, when the pack's chain leaves the root out.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let root: OddCert;
let intermediate: OddCert;
let keyring: Keyring;
let pki: Awaited<ReturnType<typeof oddPki>>;

beforeAll(async () => {
  tmp = await scratch('sonde-rfc5280-');
  pki = await oddPki(join(tmp.dir, 'pki'));
  root = await pki.make('root', 'root');
  intermediate = await pki.make('intermediate', 'ca_pathlen0', root);
  keyring = keyringFromCertificates([root.cert]);
}, 60_000);
afterAll(() => tmp.cleanup());

describe('verifyChain against RFC 5280', () => {
  it('accepts the well-formed chain the others are variations of', async () => {
    const leaf = await pki.make('good-leaf', 'leaf', intermediate);
    await expectSignerAccepted(tmp.dir, await pki.signer(leaf, intermediate), keyring);
  });

  it('refuses a CA issued under an intermediate whose pathLenConstraint is 0 (CHAIN_INVALID)', async () => {
    const sub = await pki.make('sub-ca', 'ca', intermediate);
    const leaf = await pki.make('leaf-under-sub-ca', 'leaf', sub);
    const message = await expectSignerRefused(tmp.dir, await pki.signer(leaf, sub, intermediate), keyring, 'CHAIN_INVALID');
    expect(message).toContain('allows 0 intermediate CA(s) below it');
  });

  it('refuses a chain through a CA whose key usage lacks keyCertSign (CHAIN_INVALID)', async () => {
    const ca = await pki.make('ca-no-cert-sign', 'ca_no_cert_sign', root);
    const leaf = await pki.make('leaf-under-no-cert-sign', 'leaf', ca);
    // OpenSSL's issuer check (X509Certificate.checkIssued) already refuses such an issuer; the
    // trust store's own keyCertSign check stands behind it.
    await expectSignerRefused(tmp.dir, await pki.signer(leaf, ca), keyring, 'CHAIN_INVALID');
  });

  it('refuses a signer whose only extended key usage is anyExtendedKeyUsage (SIGNER_NOT_CODE_SIGNING)', async () => {
    const leaf = await pki.make('leaf-any-eku', 'leaf_any_eku', intermediate);
    await expectSignerRefused(tmp.dir, await pki.signer(leaf, intermediate), keyring, 'SIGNER_NOT_CODE_SIGNING');
  });

  it('refuses a code-signing certificate whose key usage lacks digitalSignature (SIGNER_NOT_CODE_SIGNING)', async () => {
    const leaf = await pki.make('leaf-no-digital-signature', 'leaf_no_digital_signature', intermediate);
    const message = await expectSignerRefused(tmp.dir, await pki.signer(leaf, intermediate), keyring, 'SIGNER_NOT_CODE_SIGNING');
    expect(message).toContain('digitalSignature');
  });

  it('refuses a certificate carrying a critical extension it does not process (CHAIN_INVALID)', async () => {
    const leaf = await pki.make('leaf-unknown-critical', 'leaf_unknown_critical', intermediate);
    const message = await expectSignerRefused(tmp.dir, await pki.signer(leaf, intermediate), keyring, 'CHAIN_INVALID');
    expect(message).toContain('1.3.6.1.4.1.55555.1');
  });

  it('refuses a chain that leaves out a root the keyring revokes by fingerprint (CERT_REVOKED)', async () => {
    const leaf = await pki.make('leaf-under-revoked-root', 'leaf', intermediate);
    const list = signRevocations(
      { issuer: fingerprintHex(root.cert), sequence: 1, issuedAt: new Date().toISOString(), revoked: [{ fingerprint256: fingerprintHex(root.cert), revokedAt: new Date().toISOString(), reason: 'root key lost' }] },
      createPrivateKey(await readFile(root.keyPath, 'utf8')),
    );
    const revoking = keyringFromCertificates([root.cert], JSON.stringify(list));
    await expectSignerRefused(tmp.dir, await pki.signer(leaf, intermediate), revoking, 'CERT_REVOKED');
  });
});
