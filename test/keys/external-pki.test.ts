import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { X509Certificate, createSign, createVerify } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeExternalEcPki, type ExternalEcPki } from '../helpers/external-pki.js';

const CODE_SIGNING = '1.3.6.1.5.5.7.3.3';

function splitPem(text: string): X509Certificate[] {
  return (text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
}

describe('makeExternalEcPki', () => {
  let dir: string;
  let pki: ExternalEcPki;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'sonde-ext-pki-'));
    pki = await makeExternalEcPki(dir);
  }, 60_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('builds a P-256 chain from a code-signing leaf through an intermediate to a self-signed root', () => {
    const root = new X509Certificate(pki.rootPem);
    const [leaf, intermediate, extra] = splitPem(pki.chainPem);
    expect(leaf).toBeDefined();
    expect(intermediate).toBeDefined();
    expect(extra).toBeUndefined();
    if (!leaf || !intermediate) return;

    expect(root.ca).toBe(true);
    expect(root.checkIssued(root)).toBe(true);
    expect(root.verify(root.publicKey)).toBe(true);
    expect(intermediate.ca).toBe(true);
    expect(intermediate.checkIssued(root)).toBe(true);
    expect(intermediate.verify(root.publicKey)).toBe(true);
    expect(leaf.ca).toBe(false);
    expect(leaf.checkIssued(intermediate)).toBe(true);
    expect(leaf.verify(intermediate.publicKey)).toBe(true);
    expect(leaf.verify(root.publicKey)).toBe(false);

    for (const cert of [root, intermediate, leaf]) {
      expect(cert.publicKey.asymmetricKeyType).toBe('ec');
      expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1');
    }
  });

  it('gives the leaf the code-signing extended key usage', () => {
    const [leaf] = splitPem(pki.chainPem);
    expect(leaf?.keyUsage).toContain(CODE_SIGNING);
  });

  it('returns the private key of the leaf', () => {
    const [leaf] = splitPem(pki.chainPem);
    if (!leaf) throw new Error('no leaf');
    expect(leaf.checkPrivateKey(pki.signerKey)).toBe(true);
    const signature = createSign('sha256').update('payload').sign(pki.signerKey);
    expect(createVerify('sha256').update('payload').verify(leaf.publicKey, signature)).toBe(true);
  });

  it('writes the root certificate where rootPath says', async () => {
    expect(await readFile(pki.rootPath, 'utf8')).toBe(pki.rootPem);
  });
});
