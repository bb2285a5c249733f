import { describe, it, expect, beforeAll } from 'vitest';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import {
  CODE_SIGNING_OID,
  createRootCa,
  issueCertificate,
  randomSerialHex,
  type IssuedCertificate,
} from '../../images/src/keys/issue.js';
import { KeysError } from '../../pack/src/keys-errors.js';

const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';
const YEAR_MS = 365 * 86_400_000;

/** openssl's rendering of the named extensions: a second, independent reading of the DER. */
function opensslExtensions(pem: string): string {
  const out = spawnSync('openssl', ['x509', '-noout', '-ext', 'basicConstraints,keyUsage,extendedKeyUsage'], {
    input: pem,
    encoding: 'utf8',
    env: { ...process.env, OPENSSL_CONF: '/dev/null' },
  });
  if (out.status !== 0) throw new Error(out.stderr);
  return out.stdout.replace(/\s+/g, ' ').trim();
}

async function expectKeysError(promise: Promise<unknown>, code: string): Promise<void> {
  await expect(promise).rejects.toBeInstanceOf(KeysError);
  await expect(promise).rejects.toMatchObject({ code });
}

describe('createRootCa', { timeout: 30_000 }, () => {
  let root: IssuedCertificate;
  beforeAll(async () => {
    root = await createRootCa();
  }, 30_000);

  it('makes a self-signed CA named "Sonde Root CA" valid for 20 years', () => {
    const cert = new X509Certificate(root.certPem);
    expect(cert.ca).toBe(true);
    expect(cert.checkIssued(cert)).toBe(true);
    expect(cert.verify(cert.publicKey)).toBe(true);
    expect(cert.subject).toBe('CN=Sonde Root CA\nO=Sonde');
    expect(cert.keyUsage).toBeUndefined();
    const life = Date.parse(cert.validTo) - Date.parse(cert.validFrom);
    expect(life).toBeGreaterThanOrEqual(20 * YEAR_MS);
    expect(life).toBeLessThan(20 * YEAR_MS + 6 * 86_400_000);
    expect(Date.parse(cert.validFrom)).toBeLessThanOrEqual(Date.now());
  });

  it('marks the root critical CA:true for certificate and CRL signing only', () => {
    expect(opensslExtensions(root.certPem)).toBe(
      'X509v3 Basic Constraints: critical CA:TRUE X509v3 Key Usage: critical Certificate Sign, CRL Sign',
    );
  });

  it('returns an unencrypted PKCS#8 RSA-3072 key with exponent 65537 that matches the certificate', () => {
    expect(root.keyPem.startsWith('-----BEGIN PRIVATE KEY-----\n')).toBe(true);
    expect(root.keyPem).not.toContain('\r');
    const key = createPrivateKey(root.keyPem);
    expect(key.asymmetricKeyType).toBe('rsa');
    expect(key.asymmetricKeyDetails).toEqual({ modulusLength: 3072, publicExponent: 65537n });
    expect(new X509Certificate(root.certPem).checkPrivateKey(key)).toBe(true);
  });

  it('reports the serial as the certificate carries it', () => {
    expect(root.serial).toBe(new X509Certificate(root.certPem).serialNumber.replace(/^0+/, ''));
  });

  it('uses the given common name', async () => {
    const named = await createRootCa({ commonName: 'Acme Probes Root', days: 30 });
    const cert = new X509Certificate(named.certPem);
    expect(cert.subject).toBe('CN=Acme Probes Root\nO=Sonde');
    expect(Date.parse(cert.validTo) - Date.parse(cert.validFrom)).toBe(30 * 86_400_000);
  });

  it.each([
    { what: 'an empty name', opts: { commonName: '' }, code: 'NAME_INVALID' },
    { what: 'a name over 64 characters', opts: { commonName: 'x'.repeat(65) }, code: 'NAME_INVALID' },
    { what: 'a name with a newline', opts: { commonName: 'Root\nCA' }, code: 'NAME_INVALID' },
    { what: 'zero days', opts: { days: 0 }, code: 'VALIDITY_INVALID' },
    { what: 'a fractional number of days', opts: { days: 1.5 }, code: 'VALIDITY_INVALID' },
    { what: 'an end before the start', opts: { notBefore: new Date('2030-01-01'), notAfter: new Date('2029-01-01') }, code: 'VALIDITY_INVALID' },
    { what: 'both days and an end date', opts: { days: 10, notAfter: new Date('2040-01-01') }, code: 'VALIDITY_INVALID' },
  ])('refuses $what with $code', async ({ opts, code }) => {
    await expectKeysError(createRootCa(opts), code);
  });
});

describe('issueCertificate', { timeout: 30_000 }, () => {
  let root: IssuedCertificate;
  let intermediate: IssuedCertificate;
  let rootCert: X509Certificate;
  let intermediateCert: X509Certificate;

  beforeAll(async () => {
    root = await createRootCa();
    intermediate = await issueCertificate({
      profile: 'intermediate',
      issuerCertPem: root.certPem,
      issuerKeyPem: root.keyPem,
      commonName: 'Sonde Intermediate CA',
    });
    rootCert = new X509Certificate(root.certPem);
    intermediateCert = new X509Certificate(intermediate.certPem);
  }, 30_000);

  const fromIntermediate = (
    profile: 'signer' | 'recipient',
    extra: Partial<Parameters<typeof issueCertificate>[0]> = {},
  ): Promise<IssuedCertificate> =>
    issueCertificate({
      profile,
      issuerCertPem: intermediate.certPem,
      issuerKeyPem: intermediate.keyPem,
      commonName: `test ${profile}`,
      ...extra,
    });

  it('makes an intermediate CA under the root that may issue leaves only, for 10 years', () => {
    expect(intermediateCert.ca).toBe(true);
    expect(intermediateCert.checkIssued(rootCert)).toBe(true);
    expect(intermediateCert.verify(rootCert.publicKey)).toBe(true);
    expect(intermediateCert.keyUsage).toBeUndefined();
    expect(intermediateCert.issuer).toBe(rootCert.subject);
    expect(opensslExtensions(intermediate.certPem)).toBe(
      'X509v3 Basic Constraints: critical CA:TRUE, pathlen:0 X509v3 Key Usage: critical Certificate Sign, CRL Sign',
    );
    const life = Date.parse(intermediateCert.validTo) - Date.parse(intermediateCert.validFrom);
    expect(life).toBeGreaterThanOrEqual(10 * YEAR_MS);
    expect(life).toBeLessThan(10 * YEAR_MS + 4 * 86_400_000);
  });

  it('makes a signer that is not a CA and may only sign code, for 3 years', async () => {
    const signer = await fromIntermediate('signer');
    const cert = new X509Certificate(signer.certPem);
    expect(cert.ca).toBe(false);
    expect(cert.keyUsage).toEqual([CODE_SIGNING_OID]);
    expect(cert.checkIssued(intermediateCert)).toBe(true);
    expect(cert.verify(intermediateCert.publicKey)).toBe(true);
    expect(cert.verify(rootCert.publicKey)).toBe(false);
    expect(cert.checkPrivateKey(createPrivateKey(signer.keyPem))).toBe(true);
    expect(opensslExtensions(signer.certPem)).toBe(
      'X509v3 Basic Constraints: critical CA:FALSE X509v3 Key Usage: critical Digital Signature X509v3 Extended Key Usage: Code Signing',
    );
    const life = Date.parse(cert.validTo) - Date.parse(cert.validFrom);
    expect(life).toBeGreaterThanOrEqual(3 * YEAR_MS);
    expect(life).toBeLessThan(3 * YEAR_MS + 2 * 86_400_000);
  });

  it('makes a recipient for key encipherment with no extended usage', async () => {
    const recipient = await fromIntermediate('recipient');
    const cert = new X509Certificate(recipient.certPem);
    expect(cert.ca).toBe(false);
    expect(cert.keyUsage).toBeUndefined();
    expect(cert.verify(intermediateCert.publicKey)).toBe(true);
    expect(opensslExtensions(recipient.certPem)).toBe(
      'X509v3 Basic Constraints: critical CA:FALSE X509v3 Key Usage: critical Key Encipherment',
    );
  });

  it('links each certificate to its issuer by key identifier', () => {
    const text = (pem: string): string =>
      spawnSync('openssl', ['x509', '-noout', '-ext', 'subjectKeyIdentifier,authorityKeyIdentifier'], {
        input: pem,
        encoding: 'utf8',
        env: { ...process.env, OPENSSL_CONF: '/dev/null' },
      }).stdout;
    const ski = (pem: string): string | undefined => /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(text(pem))?.[1];
    const aki = (pem: string): string | undefined =>
      /Authority Key Identifier:\s*\n\s*(?:keyid:)?([0-9A-F:]+)/.exec(text(pem))?.[1];
    expect(ski(root.certPem)).toMatch(/^[0-9A-F:]{59}$/);
    expect(aki(intermediate.certPem)).toBe(ski(root.certPem));
    expect(ski(intermediate.certPem)).not.toBe(ski(root.certPem));
  });

  it('issues a signer without the code-signing usage when given another extended key usage list', async () => {
    const none = new X509Certificate((await fromIntermediate('signer', { extKeyUsage: [] })).certPem);
    expect(none.keyUsage).toBeUndefined();
    expect(none.ca).toBe(false);
    const serverAuth = new X509Certificate((await fromIntermediate('signer', { extKeyUsage: [SERVER_AUTH_OID] })).certPem);
    expect(serverAuth.keyUsage).toEqual([SERVER_AUTH_OID]);
  });

  it('issues expired and not-yet-valid signers for explicit dates', async () => {
    const expired = new X509Certificate(
      (
        await fromIntermediate('signer', {
          notBefore: new Date('2020-01-01T00:00:00Z'),
          notAfter: new Date('2021-01-01T00:00:00Z'),
        })
      ).certPem,
    );
    expect(new Date(expired.validFrom).toISOString()).toBe('2020-01-01T00:00:00.000Z');
    expect(new Date(expired.validTo).toISOString()).toBe('2021-01-01T00:00:00.000Z');

    const future = new X509Certificate(
      (await fromIntermediate('signer', { notBefore: new Date('2090-06-01T12:00:00Z'), days: 10 })).certPem,
    );
    expect(new Date(future.validFrom).toISOString()).toBe('2090-06-01T12:00:00.000Z');
    expect(new Date(future.validTo).toISOString()).toBe('2090-06-11T12:00:00.000Z');
    expect(future.verify(intermediateCert.publicKey)).toBe(true);
  });

  it('refuses an issuer key that does not belong to the issuer certificate', async () => {
    await expectKeysError(
      issueCertificate({ profile: 'signer', issuerCertPem: root.certPem, issuerKeyPem: intermediate.keyPem, commonName: 'x' }),
      'ISSUER_KEY_MISMATCH',
    );
  });

  it.each([
    { what: 'an issuer certificate that is not PEM', cert: 'nonsense', key: null, code: 'CERT_UNREADABLE' },
    { what: 'an issuer key that is not PEM', cert: null, key: 'nonsense', code: 'KEY_UNREADABLE' },
  ])('refuses $what with $code', async ({ cert, key, code }) => {
    await expectKeysError(
      issueCertificate({
        profile: 'signer',
        issuerCertPem: cert ?? root.certPem,
        issuerKeyPem: key ?? root.keyPem,
        commonName: 'x',
      }),
      code,
    );
  });
});

describe('randomSerialHex', () => {
  it('gives positive 16-byte serials without a leading zero byte, each different', () => {
    const serials = Array.from({ length: 2000 }, () => randomSerialHex());
    for (const s of serials) {
      expect(s).toMatch(/^[0-7][0-9a-f]{31}$/);
      expect(s.startsWith('00')).toBe(false);
    }
    expect(new Set(serials).size).toBe(serials.length);
  });
});
