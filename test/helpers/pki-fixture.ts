import { createHash, createPrivateKey, randomBytes, X509Certificate, type KeyObject } from 'node:crypto';
import { cp, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keyringFromCertificates, loadKeyring, type Keyring } from '../../pack/src/trust.js';
import { CODE_SIGNING_OID, createRootCa, issueCertificate, type IssueOptions } from '../../images/src/keys/issue.js';
import { initCa, issueIntermediate, issueRecipient, issueSigner } from '../../images/src/keys/key-dir.js';
import type { Signer } from '../../pack/src/writer.js';
import { loadSigner } from './packs.js';

/**
 * Every certificate the security and fuzz suites need, made once by the real issuance code and
 * cached on disk. An RSA-3072 key costs one to three seconds on a small runner and these suites
 * need fourteen of them; making them in each file would triple the run time. The cache is keyed
 * by the source of the issuance code and of this file, so a change to either rebuilds it, and it
 * is rebuilt when older than 90 days, long before any certificate in it nears its end.
 *
 *   vendor/    `sonde keys` layout: root, intermediate, signer (leaf + intermediate), fleet, probe
 *   other/     another vendor: root and signer, trusted by nobody here
 *   variants/  odd certificates under the vendor's CAs (see PkiWorld.variants)
 *   clock/     a chain with fixed dates: root and intermediate 2020-2040, signer 2021 only
 */
export interface Pair {
  readonly cert: X509Certificate;
  readonly key: KeyObject;
}

export interface PkiWorld {
  readonly vendor: {
    /** The cached keys folder: read it, never write it (copyVendorKeys gives a writable copy). */
    readonly dir: string;
    readonly keyring: Keyring;
    readonly signer: Signer;
    readonly fleet: Pair;
    readonly probe: Pair;
  };
  /** Its cached keys folder (root.crt, root.key, signer.*): read it, never write it. */
  readonly other: { readonly dir: string; readonly keyring: Keyring; readonly signer: Signer };
  readonly variants: {
    /** Issued by the vendor intermediate with the serverAuth usage only. */
    readonly noCodeSigning: Signer;
    /** Issued by the vendor intermediate with no extended key usage at all. */
    readonly noExtendedUsage: Signer;
    /** A CA certificate (issued by the vendor root) that carries the code-signing usage. */
    readonly caLeaf: Signer;
    /** A signer whose chain goes through a non-CA certificate issued by the vendor root. */
    readonly underNonCa: Signer;
  };
  readonly clock: {
    readonly keyring: Keyring;
    /** Valid from 2021-01-01 to 2022-01-01 only. */
    readonly signer: Signer;
    readonly signerValidity: { readonly notBefore: Date; readonly notAfter: Date };
  };
}

const CLOCK_SIGNER_VALIDITY = { notBefore: new Date('2021-01-01T00:00:00Z'), notAfter: new Date('2022-01-01T00:00:00Z') };
const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';
const MAX_AGE_MS = 90 * 86_400_000;
const LOCK_STALE_MS = 5 * 60_000;

export async function pkiWorld(): Promise<PkiWorld> {
  const dir = await cachedWorldDir();
  const vendor = join(dir, 'vendor');
  const pair = async (base: string): Promise<Pair> => ({
    cert: new X509Certificate(await readFile(`${base}.crt`, 'utf8')),
    key: createPrivateKey(await readFile(`${base}.key`, 'utf8')),
  });
  return {
    vendor: {
      dir: vendor,
      keyring: await loadKeyring(join(vendor, 'root.crt')),
      signer: await loadSigner(vendor, 'signer'),
      fleet: await pair(join(vendor, 'fleet')),
      probe: await pair(join(vendor, 'probe')),
    },
    other: {
      dir: join(dir, 'other'),
      keyring: await loadKeyring(join(dir, 'other', 'root.crt')),
      signer: await loadSigner(join(dir, 'other'), 'signer'),
    },
    variants: {
      noCodeSigning: await loadSigner(join(dir, 'variants'), 'no-code-signing'),
      noExtendedUsage: await loadSigner(join(dir, 'variants'), 'no-extended-usage'),
      caLeaf: await loadSigner(join(dir, 'variants'), 'ca-leaf'),
      underNonCa: await loadSigner(join(dir, 'variants'), 'under-non-ca'),
    },
    clock: {
      keyring: keyringFromCertificates([new X509Certificate(await readFile(join(dir, 'clock', 'root.crt'), 'utf8'))]),
      signer: await loadSigner(join(dir, 'clock'), 'signer'),
      signerValidity: CLOCK_SIGNER_VALIDITY,
    },
  };
}

/** A writable copy of the vendor keys folder, for tests that revoke. */
export async function copyVendorKeys(world: PkiWorld, to: string): Promise<string> {
  await cp(world.vendor.dir, to, { recursive: true });
  return to;
}

async function cachedWorldDir(): Promise<string> {
  const sources = [
    new URL('../../images/src/keys/issue.ts', import.meta.url),
    new URL('../../images/src/keys/key-dir.ts', import.meta.url),
    new URL('../../pack/src/key-files.ts', import.meta.url),
    new URL(import.meta.url),
  ];
  const hash = createHash('sha256');
  for (const s of sources) hash.update(await readFile(s));
  const root = await cacheRoot();
  const final = join(root, hash.digest('hex').slice(0, 16));
  const lock = `${final}.lock`;
  for (;;) {
    const built = await stat(join(final, 'ready')).catch(() => null);
    if (built && Date.now() - built.mtimeMs < MAX_AGE_MS) return final;
    try {
      await mkdir(lock);
    } catch {
      // Another test file is building it: wait, unless its lock is stale.
      const held = await stat(lock).catch(() => null);
      if (held && Date.now() - held.mtimeMs > LOCK_STALE_MS) await rm(lock, { recursive: true, force: true });
      await new Promise((r) => setTimeout(r, 250));
      continue;
    }
    try {
      const work = `${final}.build-${randomBytes(4).toString('hex')}`;
      await buildWorld(work);
      await writeFile(join(work, 'ready'), new Date().toISOString());
      await rm(final, { recursive: true, force: true });
      await rename(work, final);
      return final;
    } finally {
      await rm(lock, { recursive: true, force: true });
    }
  }
}

async function cacheRoot(): Promise<string> {
  for (const candidate of [
    new URL('../../node_modules/.cache/sonde-test-pki', import.meta.url).pathname,
    join(tmpdir(), `sonde-test-pki-${process.getuid?.() ?? 'user'}`),
  ]) {
    try {
      await mkdir(candidate, { recursive: true, mode: 0o700 });
      return candidate;
    } catch {
      // read-only node_modules: fall back to the temp folder
    }
  }
  throw new Error('no writable folder for the test PKI cache');
}

async function buildWorld(dir: string): Promise<void> {
  const vendor = join(dir, 'vendor');
  await initCa(vendor, { name: 'Test Vendor Root' });
  await issueIntermediate(vendor, { name: 'Test Vendor Intermediate' });
  await issueSigner(vendor, { name: 'Test Vendor Signer' });
  await issueRecipient(vendor, { name: 'fleet' });
  await issueRecipient(vendor, { name: 'probe' });

  const other = join(dir, 'other');
  await initCa(other, { name: 'Some Other Root' });
  await issueSigner(other, { name: 'Some Other Signer' });

  const variants = join(dir, 'variants');
  await mkdir(variants);
  const root = await issuerFrom(vendor, 'root');
  const intermediate = await issuerFrom(vendor, 'intermediate');
  const save = async (name: string, chain: string[], keyPem: string): Promise<void> => {
    await writeFile(join(variants, `${name}.crt`), chain.join(''));
    await writeFile(join(variants, `${name}.key`), keyPem, { mode: 0o600 });
  };
  const noCs = await issueCertificate({ ...intermediate, profile: 'signer', commonName: 'Server Not Signer', extKeyUsage: [SERVER_AUTH_OID] });
  await save('no-code-signing', [noCs.certPem, intermediate.issuerCertPem], noCs.keyPem);
  const noEku = await issueCertificate({ ...intermediate, profile: 'signer', commonName: 'Signer Without Usage', extKeyUsage: [] });
  await save('no-extended-usage', [noEku.certPem, intermediate.issuerCertPem], noEku.keyPem);
  const caLeaf = await issueCertificate({ ...root, profile: 'intermediate', commonName: 'CA That Signs', extKeyUsage: [CODE_SIGNING_OID] });
  await save('ca-leaf', [caLeaf.certPem], caLeaf.keyPem);
  const nonCa = await issueCertificate({ ...root, profile: 'signer', commonName: 'Leaf Posing As CA' });
  const underNonCa = await issueCertificate({
    profile: 'signer',
    commonName: 'Signer Under A Leaf',
    issuerCertPem: nonCa.certPem,
    issuerKeyPem: nonCa.keyPem,
  });
  await save('under-non-ca', [underNonCa.certPem, nonCa.certPem], underNonCa.keyPem);

  const clock = join(dir, 'clock');
  await mkdir(clock);
  const clockRoot = await createRootCa({
    commonName: 'Clock Root',
    notBefore: new Date('2020-01-01T00:00:00Z'),
    notAfter: new Date('2040-01-01T00:00:00Z'),
  });
  const clockIntermediate = await issueCertificate({
    profile: 'intermediate',
    commonName: 'Clock Intermediate',
    issuerCertPem: clockRoot.certPem,
    issuerKeyPem: clockRoot.keyPem,
    notBefore: new Date('2020-01-01T00:00:00Z'),
    notAfter: new Date('2039-01-01T00:00:00Z'),
  });
  const clockSigner = await issueCertificate({
    profile: 'signer',
    commonName: 'Signer Of 2021',
    issuerCertPem: clockIntermediate.certPem,
    issuerKeyPem: clockIntermediate.keyPem,
    ...CLOCK_SIGNER_VALIDITY,
  });
  await writeFile(join(clock, 'root.crt'), clockRoot.certPem);
  await writeFile(join(clock, 'signer.crt'), clockSigner.certPem + clockIntermediate.certPem);
  await writeFile(join(clock, 'signer.key'), clockSigner.keyPem, { mode: 0o600 });
}

async function issuerFrom(keysDir: string, name: string): Promise<Pick<IssueOptions, 'issuerCertPem' | 'issuerKeyPem'>> {
  const certText = await readFile(join(keysDir, `${name}.crt`), 'utf8');
  const first = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/.exec(certText)?.[0] ?? '';
  return { issuerCertPem: first, issuerKeyPem: await readFile(join(keysDir, `${name}.key`), 'utf8') };
}
