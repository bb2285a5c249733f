import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  initCa,
  issueIntermediate,
  issueRecipient,
  issueSigner,
  revoke,
  type WrittenPair,
} from '../../images/src/keys/key-dir.js';
import { loadPrivateKey } from '../../pack/src/key-files.js';
import { CODE_SIGNING_OID } from '../../images/src/keys/issue.js';
import { SondeError } from '../../base/src/errors/sonde-error.js';
import { verifyRevocations } from '../../pack/src/revocations.js';

function certsIn(text: string): X509Certificate[] {
  return (text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
}

async function certsOf(path: string): Promise<X509Certificate[]> {
  return certsIn(await readFile(path, 'utf8'));
}

async function first(path: string): Promise<X509Certificate> {
  const [cert] = await certsOf(path);
  if (!cert) throw new Error(`no certificate in ${path}`);
  return cert;
}

async function mode(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (e) {
    expect(e).toBeInstanceOf(SondeError);
    return (e as SondeError).code;
  }
  throw new Error('expected a refusal');
}

let base: string;
let counter = 0;
async function freshDir(): Promise<string> {
  counter += 1;
  return join(base, `k${counter}`);
}

/** A keys directory with a root CA, made once; tests that do not test initCa start from a copy. */
let sharedRoot: string;
async function dirWithRoot(): Promise<string> {
  const dir = await freshDir();
  await mkdir(dir);
  for (const f of ['root.crt', 'root.key']) await copyFile(join(sharedRoot, f), join(dir, f));
  return dir;
}

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'sonde-key-dir-'));
  sharedRoot = await freshDir();
  await initCa(sharedRoot, { name: 'Shared Test Root' });
}, 60_000);

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

describe('initCa', { timeout: 60_000 }, () => {
  it('creates the directory and writes a self-signed root CA with its key', async () => {
    const dir = join(await freshDir(), 'nested');
    const result = await initCa(dir);
    expect(result.cert.path).toBe(join(dir, 'root.crt'));
    expect(result.keyPath).toBe(join(dir, 'root.key'));
    expect(result.keyEncrypted).toBe(false);
    expect((await readdir(dir)).sort()).toEqual(['root.crt', 'root.key']);
    expect(await mode(join(dir, 'root.key'))).toBe(0o600);
    expect(await mode(join(dir, 'root.crt'))).toBe(0o644);

    const root = await first(join(dir, 'root.crt'));
    expect(root.ca).toBe(true);
    expect(root.checkIssued(root)).toBe(true);
    expect(root.verify(root.publicKey)).toBe(true);
    expect(root.subject).toBe('CN=Sonde Root CA\nO=Sonde');
    expect(result.cert.fingerprint256).toBe(root.fingerprint256.replace(/:/g, '').toLowerCase());
    expect(result.cert.serial).toBe(root.serialNumber.replace(/^0+/, ''));
    expect(root.checkPrivateKey(await loadPrivateKey(join(dir, 'root.key')))).toBe(true);
  });

  it('refuses to overwrite an existing root with KEY_EXISTS unless forced', async () => {
    const dir = await freshDir();
    await initCa(dir, { name: 'First Root', days: 30 });
    const before = await readFile(join(dir, 'root.crt'), 'utf8');
    expect(await codeOf(initCa(dir))).toBe('KEY_EXISTS');
    expect(await readFile(join(dir, 'root.crt'), 'utf8')).toBe(before);

    await initCa(dir, { name: 'Second Root', days: 30, force: true });
    expect((await first(join(dir, 'root.crt'))).subject).toBe('CN=Second Root\nO=Sonde');
  });

  it('refuses when only the key is left over, without generating anything', async () => {
    const dir = await dirWithRoot();
    await rm(join(dir, 'root.crt'));
    expect(await codeOf(initCa(dir))).toBe('KEY_EXISTS');
    expect(await readdir(dir)).toEqual(['root.key']);
  });

  it('encrypts the root key with the passphrase file', async () => {
    const dir = await freshDir();
    const pass = join(base, `pass-${counter}`);
    await writeFile(pass, 'correct horse battery staple\n');
    const result = await initCa(dir, { passphraseFile: pass, days: 30 });
    expect(result.keyEncrypted).toBe(true);
    expect(await readFile(join(dir, 'root.key'), 'utf8')).toContain('ENCRYPTED PRIVATE KEY');
    expect(await codeOf(loadPrivateKey(join(dir, 'root.key')))).toBe('KEY_PASSPHRASE_WRONG');
    const root = await first(join(dir, 'root.crt'));
    expect(root.checkPrivateKey(await loadPrivateKey(join(dir, 'root.key'), { passphraseFile: pass }))).toBe(true);

    // Issuing from an encrypted root needs its passphrase.
    expect(await codeOf(issueRecipient(dir, { name: 'fleet' }))).toBe('KEY_PASSPHRASE_WRONG');
    const fleet = await issueRecipient(dir, { name: 'fleet', issuerPassphraseFile: pass });
    expect(fleet.keyEncrypted).toBe(false);
  });
});

describe('issueSigner', { timeout: 60_000 }, () => {
  let dir: string;
  let root: X509Certificate;
  let intermediateResult: WrittenPair;

  beforeAll(async () => {
    dir = await freshDir();
    await initCa(dir);
    root = await first(join(dir, 'root.crt'));
    intermediateResult = await issueIntermediate(dir);
  }, 60_000);

  it('refuses with ISSUER_MISSING in a directory without a CA', async () => {
    const empty = await freshDir();
    expect(await codeOf(issueSigner(empty))).toBe('ISSUER_MISSING');
    expect(await codeOf(issueRecipient(empty, { name: 'fleet' }))).toBe('ISSUER_MISSING');
    expect(await codeOf(issueIntermediate(empty))).toBe('ISSUER_MISSING');
  });

  it('chains the signer to the root through the intermediate', async () => {
    const result = await issueSigner(dir);
    expect(result.issuer.name).toBe('intermediate');
    expect(result.issuer.path).toBe(join(dir, 'intermediate.crt'));
    expect(result.certificatesInFile).toBe(2);

    const chain = await certsOf(join(dir, 'signer.crt'));
    expect(chain).toHaveLength(2);
    const [leaf, intermediate] = chain as [X509Certificate, X509Certificate];
    expect(intermediate.fingerprint256).toBe((await first(join(dir, 'intermediate.crt'))).fingerprint256);
    expect(chain.some((c) => c.fingerprint256 === root.fingerprint256)).toBe(false);

    expect(leaf.ca).toBe(false);
    expect(leaf.keyUsage).toEqual([CODE_SIGNING_OID]);
    expect(leaf.checkIssued(intermediate)).toBe(true);
    expect(leaf.verify(intermediate.publicKey)).toBe(true);
    expect(intermediate.ca).toBe(true);
    expect(intermediate.checkIssued(root)).toBe(true);
    expect(intermediate.verify(root.publicKey)).toBe(true);
    expect(Date.parse(leaf.validTo)).toBeLessThanOrEqual(Date.parse(intermediate.validTo));

    expect(await mode(join(dir, 'signer.key'))).toBe(0o600);
    expect(leaf.checkPrivateKey(await loadPrivateKey(join(dir, 'signer.key')))).toBe(true);
    expect(result.cert.fingerprint256).toBe(leaf.fingerprint256.replace(/:/g, '').toLowerCase());
  });

  it('makes the intermediate a CA that cannot issue further CAs', async () => {
    const intermediate = await first(join(dir, 'intermediate.crt'));
    expect(intermediateResult.cert.subject).toBe('CN=Sonde Intermediate CA, O=Sonde');
    expect(intermediate.keyUsage).toBeUndefined();
    expect(await mode(join(dir, 'intermediate.key'))).toBe(0o600);
  });

  it('issues from the root, with the leaf alone in signer.crt, when there is no intermediate', async () => {
    const solo = await dirWithRoot();
    const result = await issueSigner(solo, { days: 30 });
    expect(result.issuer.name).toBe('root');
    const chain = await certsOf(join(solo, 'signer.crt'));
    expect(chain).toHaveLength(1);
    const soloRoot = await first(join(solo, 'root.crt'));
    expect(chain[0]?.checkIssued(soloRoot)).toBe(true);
    expect(chain[0]?.verify(soloRoot.publicKey)).toBe(true);
  });

  it('keeps working with the root key offline once the intermediate exists', async () => {
    const offline = await dirWithRoot();
    await issueIntermediate(offline, { days: 180 });
    await rm(join(offline, 'root.key'));
    const result = await issueSigner(offline, { days: 30, out: 'release-2026' });
    expect(result.issuer.name).toBe('intermediate');
    expect(await certsOf(join(offline, 'release-2026.crt'))).toHaveLength(2);
    expect(await codeOf(issueIntermediate(offline, { force: true }))).toBe('ISSUER_MISSING');
  });

  it('cuts the default lifetime to the issuer and refuses explicit days that outlive it', async () => {
    const short = await freshDir();
    await initCa(short, { days: 100 });
    const defaulted = await issueSigner(short);
    const rootEnd = Date.parse((await first(join(short, 'root.crt'))).validTo);
    expect(Date.parse(defaulted.cert.notAfter)).toBe(rootEnd);
    expect(await codeOf(issueRecipient(short, { name: 'fleet', days: 365 }))).toBe('VALIDITY_INVALID');
  });

  it('refuses an issuer key that belongs to another certificate', async () => {
    // K/root.key replaced by the root key of another directory.
    const mixed = await dirWithRoot();
    await writeFile(join(mixed, 'root.key'), await readFile(join(dir, 'root.key')));
    expect(await codeOf(issueSigner(mixed))).toBe('ISSUER_KEY_MISMATCH');
  });
});

describe('issueRecipient', { timeout: 60_000 }, () => {
  let dir: string;
  beforeAll(async () => {
    dir = await dirWithRoot();
  });

  it('writes <name>.crt and <name>.key for key encipherment, issued by the root', async () => {
    const result = await issueRecipient(dir, { name: 'fleet' });
    expect(result.issuer.name).toBe('root');
    expect(result.cert.path).toBe(join(dir, 'fleet.crt'));
    const cert = await first(join(dir, 'fleet.crt'));
    const root = await first(join(dir, 'root.crt'));
    expect(cert.ca).toBe(false);
    expect(cert.keyUsage).toBeUndefined();
    expect(cert.subject).toBe('CN=fleet\nO=Sonde');
    expect(cert.checkIssued(root)).toBe(true);
    expect(cert.verify(root.publicKey)).toBe(true);
    expect(await mode(join(dir, 'fleet.key'))).toBe(0o600);
    expect(await mode(join(dir, 'fleet.crt'))).toBe(0o644);
    expect(cert.checkPrivateKey(await loadPrivateKey(join(dir, 'fleet.key')))).toBe(true);
  });

  it('refuses to replace an existing recipient unless forced', async () => {
    await issueRecipient(dir, { name: 'group-lyon', days: 30 });
    expect(await codeOf(issueRecipient(dir, { name: 'group-lyon', days: 30 }))).toBe('KEY_EXISTS');
    await issueRecipient(dir, { name: 'group-lyon', days: 30, force: true });
  });

  it.each(['', 'root', 'intermediate', 'signer', 'revocations', '../escape', '.hidden', 'a/b', 'x'.repeat(65), 'probe 1'])(
    'refuses the name %j with NAME_INVALID',
    async (name) => {
      expect(await codeOf(issueRecipient(dir, { name }))).toBe('NAME_INVALID');
    },
  );
});

describe('revoke', { timeout: 60_000 }, () => {
  let dir: string;
  let root: X509Certificate;
  let signerSerial: string;

  beforeAll(async () => {
    dir = await dirWithRoot();
    root = await first(join(dir, 'root.crt'));
    signerSerial = (await issueSigner(dir, { days: 30 })).cert.serial;
  }, 60_000);

  const listPath = (): string => join(dir, 'revocations.json');

  it('writes a list signed by the root that verifyRevocations accepts', async () => {
    const result = await revoke(dir, { cert: join(dir, 'signer.crt'), reason: 'key compromise' });
    expect(result).toMatchObject({ serial: signerSerial, sequence: 0, alreadyRevoked: false, revokedCount: 1 });
    expect(await mode(listPath())).toBe(0o644);
    const list = verifyRevocations(await readFile(listPath(), 'utf8'), [root]);
    expect(list.sequence).toBe(0);
    expect([...list.serials]).toEqual([signerSerial]);
    expect(list.body.revoked[0]?.reason).toBe('key compromise');
    expect(list.issuer).toBe(root.fingerprint256.replace(/:/g, '').toLowerCase());
  });

  it('extends the list with sequence + 1 on a second revocation', async () => {
    const result = await revoke(dir, { serial: '0a:bc:de:f0' });
    expect(result).toMatchObject({ serial: 'ABCDEF0', sequence: 1, alreadyRevoked: false, revokedCount: 2 });
    const list = verifyRevocations(await readFile(listPath(), 'utf8'), [root]);
    expect(list.sequence).toBe(1);
    expect(new Set(list.serials)).toEqual(new Set([signerSerial, 'ABCDEF0']));
  });

  it('does nothing, and says so, for a serial that is already revoked', async () => {
    const before = await readFile(listPath(), 'utf8');
    const result = await revoke(dir, { serial: signerSerial.toLowerCase() });
    expect(result).toMatchObject({ alreadyRevoked: true, sequence: 1, revokedCount: 2 });
    expect(await readFile(listPath(), 'utf8')).toBe(before);
  });

  it.each([
    { what: 'a serial that is not hex', opts: { serial: 'xyz' }, code: 'SERIAL_INVALID' },
    { what: 'a serial longer than 20 bytes', opts: { serial: '1'.repeat(41) }, code: 'SERIAL_INVALID' },
    { what: 'neither a serial nor a certificate', opts: {}, code: 'USAGE' },
    { what: 'both a serial and a certificate', opts: { serial: '01', cert: 'x.crt' }, code: 'USAGE' },
    { what: 'a certificate file that is not one', opts: { cert: '/nonexistent/x.crt' }, code: 'CERT_UNREADABLE' },
  ])('refuses $what with $code', async ({ opts, code }) => {
    expect(await codeOf(revoke(dir, opts))).toBe(code);
  });

  it('refuses to extend a list that was tampered with on disk', async () => {
    const good = await readFile(listPath(), 'utf8');
    const tampered = JSON.parse(good) as { body: { revoked: unknown[] } };
    tampered.body.revoked.pop();
    await writeFile(listPath(), JSON.stringify(tampered, null, 2));
    try {
      expect(await codeOf(revoke(dir, { serial: 'DEAD' }))).toBe('REVOCATIONS_INVALID');
      expect(JSON.parse(await readFile(listPath(), 'utf8'))).toEqual(tampered);
    } finally {
      await writeFile(listPath(), good);
    }
  });

  it('refuses to extend a list signed by another root', async () => {
    const other = await freshDir();
    await initCa(other, { days: 30 });
    await revoke(other, { serial: '01' });
    const foreign = await readFile(join(other, 'revocations.json'), 'utf8');
    const good = await readFile(listPath(), 'utf8');
    await writeFile(listPath(), foreign);
    try {
      expect(await codeOf(revoke(dir, { serial: 'BEEF' }))).toBe('REVOCATIONS_INVALID');
    } finally {
      await writeFile(listPath(), good);
    }
  });

  it('needs the root key', async () => {
    const offline = await dirWithRoot();
    await rm(join(offline, 'root.key'));
    expect(await codeOf(revoke(offline, { serial: '01' }))).toBe('ISSUER_MISSING');
  });
});
