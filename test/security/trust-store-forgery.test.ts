import type { X509Certificate } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readExtensions } from '../../pack/src/cert-extensions.js';
import { fingerprintHex } from '../../pack/src/revocations.js';
import { admitTrustPayload, keyringFromCertificates, loadKeyring, verifyChain, verifyTrustPackSigner, type ChainContext } from '../../pack/src/trust.js';
import { oddPki, type OddCert } from '../helpers/odd-pki.js';
import { signedList, verdict } from '../helpers/trust-verdict.js';
import { scratch } from '../helpers/packs.js';

/**
 * The trust store against certificates forged in a trusted certificate's name, chains that carry
 * their root, and the exact words of its refusals: the gaps a mutation run of pack/src/trust.ts
 * found (docs/testing.md). One decision per test, called directly (trust-store.test.ts has the
 * rest).
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let pki: Awaited<ReturnType<typeof oddPki>>;
let root: OddCert;
let other: OddCert;
let inter: OddCert;
let leaf: OddCert;
let rootKey = '';
const ctx: ChainContext = { timeFloor: null, extensionsOf: readExtensions };
const at = (c: X509Certificate): Date => new Date(Date.parse(c.validFrom) + 1000);

async function thrown(p: Promise<unknown>): Promise<Error & { code?: string }> {
  return p.then(
    () => {
      throw new Error('expected a refusal');
    },
    (e: unknown) => e as Error & { code?: string },
  );
}

beforeAll(async () => {
  tmp = await scratch('sonde-trust-forgery-');
  pki = await oddPki(join(tmp.dir, 'pki'));
  root = await pki.make('root', 'root');
  other = await pki.make('other-root', 'root');
  inter = await pki.make('inter', 'ca', root);
  leaf = await pki.make('leaf', 'leaf', inter);
  rootKey = await readFile(root.keyPath, 'utf8');
}, 120_000);
afterAll(() => tmp.cleanup());

describe('certificates forged in a trusted name', () => {
  it('refuses a signer that names the real intermediate as issuer (no key identifier to tell them apart) but was signed by another key', async () => {
    const impostor = await pki.make('impostor-inter', 'ca', undefined, 'inter');
    const forged = await pki.make('forged-under-inter', 'leaf_no_akid', impostor);
    expect(forged.cert.issuer).toBe(inter.cert.subject);
    const v = verdict(() => verifyChain([forged.cert, inter.cert], at(forged.cert), keyringFromCertificates([root.cert]), ctx));
    expect(v).toEqual({ code: 'CHAIN_INVALID', message: `certificate 0 (${forged.cert.subject}) is not issued by the next one in the chain` });
  });

  it('refuses a signer that names the keyring root as issuer (no key identifier) but was signed by another key', async () => {
    const impostor = await pki.make('impostor-root', 'root', undefined, 'root');
    const forged = await pki.make('forged-under-root', 'leaf_no_akid', impostor);
    expect(forged.cert.issuer).toBe(root.cert.subject);
    expect(verdict(() => verifyChain([forged.cert], at(forged.cert), keyringFromCertificates([root.cert]), ctx)).code).toBe('CHAIN_UNTRUSTED');
    // The same kind of signer, really issued by the root, is trusted: only the signature differs.
    const genuine = await pki.make('genuine-under-root', 'leaf_no_akid', root);
    expect(verdict(() => verifyChain([genuine.cert], at(genuine.cert), keyringFromCertificates([root.cert]), ctx)).code).toBe('ok');
  });
});

describe('a chain that carries its root', () => {
  it('does not count the root as a CA below itself: a pathlen:0 root signing the signer directly is trusted with or without itself in the chain', async () => {
    const tight = await pki.make('tight-root-0', 'ca_pathlen0');
    const direct = await pki.make('leaf-under-tight', 'leaf', tight);
    const keyring = keyringFromCertificates([tight.cert]);
    expect(verdict(() => verifyChain([direct.cert], at(direct.cert), keyring, ctx)).code).toBe('ok');
    expect(verdict(() => verifyChain([direct.cert, tight.cert], at(direct.cert), keyring, ctx)).code).toBe('ok');
  });

  it('is judged whole: a revoked signer, or one not valid at creation, is refused even with the root in the chain', () => {
    const revoking = keyringFromCertificates([root.cert], signedList(root, rootKey, 1, [{ fingerprint256: fingerprintHex(leaf.cert) }]));
    expect(verdict(() => verifyChain([leaf.cert, inter.cert, root.cert], at(leaf.cert), revoking, ctx)).code).toBe('CERT_REVOKED');
    const early = new Date(Date.parse(leaf.cert.validFrom) - 1000);
    expect(verdict(() => verifyChain([leaf.cert, inter.cert, root.cert], early, keyringFromCertificates([root.cert]), ctx)).code).toBe('CERT_NOT_VALID_AT_CREATION');
  });

  it('accepts five certificates, the most a signature may carry', async () => {
    const i1 = await pki.make('deep-1', 'ca', root);
    const i2 = await pki.make('deep-2', 'ca', i1);
    const i3 = await pki.make('deep-3', 'ca', i2);
    const deep = await pki.make('deep-leaf', 'leaf', i3);
    expect(verdict(() => verifyChain([deep.cert, i3.cert, i2.cert, i1.cert, root.cert], at(deep.cert), keyringFromCertificates([root.cert]), ctx)).code).toBe('ok');
  });
});

describe('trust packs', () => {
  it('refuse a root signer with a critical extension this verifier does not process, naming it', async () => {
    const odd = await pki.make('odd-root', 'root_unknown_critical');
    const v = verdict(() => verifyTrustPackSigner([odd.cert], at(odd.cert), keyringFromCertificates([odd.cert]), ctx));
    expect(v).toEqual({ code: 'CHAIN_INVALID', message: `certificate ${odd.cert.subject.replace(/\n/g, ', ')} has a critical extension this verifier does not process (1.3.6.1.4.1.55555.2)` });
  });

  it('say in words why a code-signing chain may not change the keyring, and why a root was not valid', () => {
    expect(verdict(() => verifyTrustPackSigner([leaf.cert, inter.cert], at(leaf.cert), keyringFromCertificates([root.cert]), ctx))).toEqual({
      code: 'TRUST_PACK_NOT_ROOT_SIGNED',
      message: 'a trust pack changes the keyring and must be signed by a root of it; O=Odd PKI, CN=leaf is a code-signing certificate',
    });
    const early = new Date(Date.parse(root.cert.validFrom) - 1);
    expect(verdict(() => verifyTrustPackSigner([root.cert], early, keyringFromCertificates([root.cert]), ctx))).toEqual({
      code: 'CERT_NOT_VALID_AT_CREATION',
      message: `root O=Odd PKI, CN=root (valid ${root.cert.validFrom} to ${root.cert.validTo}) was not valid when the pack was created (${early.toISOString()})`,
    });
  });

  it('admit a new root set without a list when the probe holds none, and list the roots in name order whatever order the folder gives', async () => {
    const dir = join(tmp.dir, 'payload-order');
    await mkdir(join(dir, 'roots'), { recursive: true });
    const names = ['h.crt', 'g.pem', 'f.crt', 'e.crt', 'd.pem', 'c.crt', 'b.crt', 'a.crt'];
    for (const n of names) await writeFile(join(dir, 'roots', n), n === 'c.crt' ? root.pem : other.pem);
    const u = await admitTrustPayload(keyringFromCertificates([root.cert]), dir, root.cert);
    expect(u.roots.map((r) => r.name)).toEqual([...names].sort());
    expect(u.revocations).toBeNull();
  });

  it('say which sequence a stale revocation list has and which the probe holds', async () => {
    const dir = join(tmp.dir, 'payload-stale');
    await mkdir(join(dir, 'roots'), { recursive: true });
    await writeFile(join(dir, 'roots', 'root.crt'), root.pem);
    await writeFile(join(dir, 'revocations.json'), signedList(root, rootKey, 2, []));
    const e = await thrown(admitTrustPayload(keyringFromCertificates([root.cert], signedList(root, rootKey, 5, [])), dir, root.cert));
    expect(e.code).toBe('REVOCATIONS_NOT_NEWER');
    expect(e.message).toBe('the trust pack revocation list has sequence 2; the probe holds 5, and a list never goes back');
  });
});

describe('loading a keyring', () => {
  it('keeps the cause of a path it cannot read and of a certificate it cannot parse', async () => {
    const missing = await thrown(loadKeyring(join(tmp.dir, 'no-such-keyring')));
    expect(missing.code).toBe('KEYRING_INVALID');
    expect((missing.cause as { code?: string } | undefined)?.code).toBe('ENOENT');
    const bad = join(tmp.dir, 'bad-root.crt');
    await writeFile(bad, '-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n');
    const unparsable = await thrown(loadKeyring(bad));
    expect(unparsable.code).toBe('KEYRING_INVALID');
    expect(unparsable.cause).toBeInstanceOf(Error);
  });

  it('lists a folder\'s roots in file-name order, whatever order the folder gives', async () => {
    const dir = join(tmp.dir, 'ordered-keyring');
    await mkdir(dir);
    const files: [string, OddCert][] = [
      ['f.crt', other],
      ['e.pem', root],
      ['d.crt', other],
      ['c.crt', root],
      ['b.pem', other],
      ['a.crt', root],
    ];
    for (const [n, c] of files) await copyFile(c.certPath, join(dir, n));
    const k = await loadKeyring(dir);
    const byName = [...files].sort((x, y) => x[0].localeCompare(y[0]));
    expect(k.roots.map(fingerprintHex)).toEqual(byName.map(([, c]) => fingerprintHex(c.cert)));
  });
});
