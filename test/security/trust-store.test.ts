import type { X509Certificate } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readExtensions } from '../../pack/src/cert-extensions.js';
import { fingerprintHex, normaliseSerial } from '../../pack/src/revocations.js';
import { admitTrustPayload, keyringFromCertificates, loadKeyring, verifyChain, verifyTrustPackSigner, type ChainContext, type Keyring } from '../../pack/src/trust.js';
import { oddPki, type OddCert } from '../helpers/odd-pki.js';
import { averdict, signedList, verdict } from '../helpers/trust-verdict.js';
import { scratch } from '../helpers/packs.js';

/**
 * The trust store (pack/src/trust.ts) called directly, one decision per test, so that deleting or
 * loosening any of its checks fails a test by name (issue 25: a check no test can fail is a check
 * a refactor can silently remove). The CLI-level attacks are in the other security tests.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let pki: Awaited<ReturnType<typeof oddPki>>;
let root: OddCert;
let other: OddCert;
let inter: OddCert;
let leaf: OddCert;
let sharedKeyring: Keyring | null = null;
/**
 * Built on first use inside a test, not in beforeAll: vitest skips every test of a file whose
 * beforeAll throws, and a mutant that breaks keyringFromCertificates would then pass unnoticed
 * (docs/testing.md).
 */
const keyringOf = (): Keyring => (sharedKeyring ??= keyringFromCertificates([root.cert]));
const ctx = (timeFloor: Date | null = null): ChainContext => ({ timeFloor, extensionsOf: readExtensions });
const at = (c: X509Certificate): Date => new Date(Date.parse(c.validFrom) + 1000);

function list(issuer: OddCert, sequence: number, revoked: { serial?: string; fingerprint256?: string }[]): string {
  return signedList(issuer, readFileSyncCache.get(issuer.keyPath)!, sequence, revoked);
}
const readFileSyncCache = new Map<string, string>();

beforeAll(async () => {
  tmp = await scratch('sonde-trust-store-');
  pki = await oddPki(join(tmp.dir, 'pki'));
  root = await pki.make('root', 'root');
  other = await pki.make('other-root', 'root');
  inter = await pki.make('inter', 'ca', root);
  leaf = await pki.make('leaf', 'leaf', inter);
  for (const c of [root, other]) readFileSyncCache.set(c.keyPath, await readFile(c.keyPath, 'utf8'));
}, 120_000);
afterAll(() => tmp.cleanup());

describe('loadKeyring', () => {
  it('takes a root file, or the self-signed CAs of a folder only (a signer certificate there never becomes a root)', async () => {
    expect((await loadKeyring(root.certPath)).roots.map(fingerprintHex)).toEqual([fingerprintHex(root.cert)]);
    const dir = join(tmp.dir, 'keys-folder');
    await mkdir(dir);
    await copyFile(root.certPath, join(dir, 'root.crt'));
    await copyFile(other.certPath, join(dir, 'other.pem'));
    await copyFile(leaf.certPath, join(dir, 'signer.crt'));
    await copyFile(inter.certPath, join(dir, 'intermediate.crt'));
    await writeFile(join(dir, 'notes.txt'), 'not a certificate');
    // A root certificate kept aside under another extension is not a root.
    await copyFile(root.certPath, join(dir, 'retired.crt.bak'));
    const third = await pki.make('third-root', 'root');
    await copyFile(third.certPath, join(dir, 'third.crt.bak'));
    const k = await loadKeyring(dir);
    expect(k.roots.map(fingerprintHex).sort()).toEqual([fingerprintHex(root.cert), fingerprintHex(other.cert)].sort());
    expect(k).toMatchObject({ revocations: null, rotationSequence: 0, source: dir });
  });

  it('refuses a root file that holds a certificate that is not a self-signed CA, naming it', async () => {
    const v = await averdict(() => loadKeyring(leaf.certPath));
    expect(v.code).toBe('KEYRING_INVALID');
    expect(v.message).toContain('is not a self-signed CA');
  });

  it('refuses a missing path, an unreadable certificate and a folder without a root', async () => {
    expect(await averdict(() => loadKeyring(join(tmp.dir, 'nowhere')))).toEqual({ code: 'KEYRING_INVALID', message: `keyring ${join(tmp.dir, 'nowhere')} cannot be read` });
    const bad = join(tmp.dir, 'bad.crt');
    await writeFile(bad, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
    const v = await averdict(() => loadKeyring(bad));
    expect(v).toMatchObject({ code: 'KEYRING_INVALID' });
    expect(v.message).toContain('unreadable certificate');
    const empty = join(tmp.dir, 'no-roots');
    await mkdir(empty);
    await copyFile(leaf.certPath, join(empty, 'signer.crt'));
    expect(await averdict(() => loadKeyring(empty))).toEqual({ code: 'KEYRING_INVALID', message: `keyring ${empty} holds no root certificate` });
  });

  it('reads the revocation list beside the roots, and refuses one that cannot be read rather than ignore it', async () => {
    const dir = join(tmp.dir, 'with-list');
    await mkdir(dir);
    await copyFile(root.certPath, join(dir, 'root.crt'));
    await writeFile(join(dir, 'revocations.json'), list(root, 4, [{ serial: leaf.cert.serialNumber }]));
    const k = await loadKeyring(join(dir, 'root.crt'));
    expect(k.revocations?.sequence).toBe(4);
    expect(k.revocations?.serials.has(normaliseSerial(leaf.cert.serialNumber))).toBe(true);
    const unreadable = join(tmp.dir, 'list-is-a-folder');
    await mkdir(join(unreadable, 'revocations.json'), { recursive: true });
    await copyFile(root.certPath, join(unreadable, 'root.crt'));
    const e = await loadKeyring(unreadable).then(() => null, (x: unknown) => x as Error & { code: string });
    expect(e).toMatchObject({ code: 'REVOCATIONS_INVALID', message: `${join(unreadable, 'revocations.json')} cannot be read` });
    expect((e!.cause as { code?: string }).code).toBe('EISDIR');
  });
});

describe('keyringFromCertificates', () => {
  it('holds the roots, no list unless given one, and follows no rotation', () => {
    expect(keyringFromCertificates([root.cert])).toMatchObject({ revocations: null, rotationSequence: 0, source: 'memory' });
    expect(keyringFromCertificates([root.cert], list(root, 2, [])).revocations?.sequence).toBe(2);
  });
});

describe('verifyChain', () => {
  it('accepts a well-formed chain and says which root it ends at, with or without the root in it', () => {
    const ok = verifyChain([leaf.cert, inter.cert], at(leaf.cert), keyringOf(), ctx());
    expect(fingerprintHex(ok.root)).toBe(fingerprintHex(root.cert));
    expect(ok).toMatchObject({ rotations: [], keyring: keyringOf() });
    expect(ok.signer.serialNumber).toBe(leaf.cert.serialNumber);
    expect(verifyChain([leaf.cert, inter.cert, root.cert], at(leaf.cert), keyringOf(), ctx()).chain).toHaveLength(3);
  });

  it('refuses an empty chain and one longer than five certificates, saying how many it carries', () => {
    expect(verdict(() => verifyChain([], new Date(), keyringOf(), ctx()))).toEqual({ code: 'CHAIN_INVALID', message: 'the signature carries 0 certificates (1 to 5 allowed)' });
    const six = verdict(() => verifyChain([leaf.cert, inter.cert, inter.cert, inter.cert, inter.cert, root.cert], at(leaf.cert), keyringOf(), ctx()));
    expect(six).toEqual({ code: 'CHAIN_INVALID', message: 'the signature carries 6 certificates (1 to 5 allowed)' });
  });

  it('refuses certificates out of order (each must be issued by the next)', async () => {
    const v = verdict(() => verifyChain([inter.cert, leaf.cert], at(leaf.cert), keyringOf(), ctx()));
    expect(v.code).toBe('CHAIN_INVALID');
    expect(v.message).toContain('is not issued by the next one');
    // Issued by the next one in name, but not signed by its key: an intermediate of the same name from another root.
    const twin = await (await oddPki(join(tmp.dir, 'twins-inter'))).make('inter', 'ca', other);
    expect(verdict(() => verifyChain([leaf.cert, twin.cert], at(leaf.cert), keyringFromCertificates([root.cert, other.cert]), ctx())).code).toBe('CHAIN_INVALID');
  });

  it('refuses a chain that ends at a root the keyring does not hold, naming its issuer', () => {
    const v = verdict(() => verifyChain([leaf.cert, inter.cert], at(leaf.cert), keyringFromCertificates([other.cert]), ctx()));
    expect(v.code).toBe('CHAIN_UNTRUSTED');
    expect(v.message).toBe('the signer chains to "O=Odd PKI, CN=root", which is not a root of keyring memory');
  });

  it('refuses an intermediate that names the root as issuer but is signed by another key', async () => {
    // The twin root has the same name as the keyring's root: checkIssued passes, the signature does not.
    const twins = await oddPki(join(tmp.dir, 'twins-root'));
    const twinRoot = await twins.make('root', 'root');
    const underTwin = await twins.make('inter-under-twin', 'ca', twinRoot);
    const signer = await twins.make('leaf-under-twin', 'leaf', underTwin);
    expect(verdict(() => verifyChain([signer.cert, underTwin.cert], at(signer.cert), keyringOf(), ctx())).code).toBe('CHAIN_UNTRUSTED');
  });

  it('judges the keyring root the chain ends at as an issuer too (pathLenConstraint and keyCertSign)', async () => {
    const tightRoot = await pki.make('tight-root', 'ca_pathlen0');
    const mid = await pki.make('mid-under-tight', 'ca', tightRoot);
    const signer = await pki.make('leaf-under-mid', 'leaf', mid);
    const v = verdict(() => verifyChain([signer.cert, mid.cert], at(signer.cert), keyringFromCertificates([tightRoot.cert]), ctx()));
    expect(v.code).toBe('CHAIN_INVALID');
    expect(v.message).toContain('allows 0 intermediate CA(s) below it; the chain has 1');
    // The same root with the signer right under it: allowed.
    const direct = await pki.make('leaf-under-tight', 'leaf', tightRoot);
    expect(verdict(() => verifyChain([direct.cert], at(direct.cert), keyringFromCertificates([tightRoot.cert]), ctx())).code).toBe('ok');
  });

  it('refuses a CA:FALSE intermediate whose key usage would let it pass checkIssued', async () => {
    const fake = await pki.make('ca-false', 'ca_false', root);
    const under = await pki.make('leaf-under-ca-false', 'leaf', fake);
    const v = verdict(() => verifyChain([under.cert, fake.cert], at(under.cert), keyringOf(), ctx()));
    expect(v.code).toBe('CHAIN_INVALID');
    expect(v.message).toMatch(/is not issued by the next one|is not a CA/);
  });

  it('refuses an intermediate without a keyUsage extension to issue (keyCertSign required)', async () => {
    const ca = await pki.make('ca-no-ku', 'ca_no_key_usage', root);
    const under = await pki.make('leaf-under-ca-no-ku', 'leaf', ca);
    const v = verdict(() => verifyChain([under.cert, ca.cert], at(under.cert), keyringOf(), ctx()));
    expect(v).toMatchObject({ code: 'CHAIN_INVALID' });
    expect(v.message).toContain('keyCertSign');
  });

  it('refuses a signer that is a CA, that names no code signing, or that lacks a key usage', async () => {
    for (const [profile, why] of [['leaf_ca', 'is a CA'], ['leaf_no_eku', 'code-signing extended key usage'], ['leaf_no_key_usage', 'digitalSignature']] as const) {
      const bad = await pki.make(`signer-${profile}`, profile, inter);
      const v = verdict(() => verifyChain([bad.cert, inter.cert], at(bad.cert), keyringOf(), ctx()));
      expect(v.code, profile).toBe('SIGNER_NOT_CODE_SIGNING');
      expect(v.message, profile).toContain(why);
    }
  });

  it('refuses a signer under an intermediate whose extended key usage excludes code signing, and accepts one under anyExtendedKeyUsage or codeSigning', async () => {
    const server = await pki.make('ca-eku-server', 'ca_eku_server', root);
    const underServer = await pki.make('leaf-under-server-ca', 'leaf', server);
    const v = verdict(() => verifyChain([underServer.cert, server.cert], at(underServer.cert), keyringOf(), ctx()));
    expect(v.code).toBe('SIGNER_NOT_CODE_SIGNING');
    expect(v.message).toContain('restricts its usages');
    for (const profile of ['ca_eku_any', 'ca_eku_code'] as const) {
      const ca = await pki.make(`ca-${profile}`, profile, root);
      const under = await pki.make(`leaf-under-${profile}`, 'leaf', ca);
      expect(verdict(() => verifyChain([under.cert, ca.cert], at(under.cert), keyringOf(), ctx())).code, profile).toBe('ok');
    }
  });

  it('refuses a revoked signer (by serial), intermediate (by fingerprint) and root (by fingerprint, left out of the chain)', () => {
    const by = (r: { serial?: string; fingerprint256?: string }) => keyringFromCertificates([root.cert], list(root, 1, [r]));
    expect(verdict(() => verifyChain([leaf.cert, inter.cert], at(leaf.cert), by({ serial: leaf.cert.serialNumber }), ctx())).code).toBe('CERT_REVOKED');
    expect(verdict(() => verifyChain([leaf.cert, inter.cert], at(leaf.cert), by({ fingerprint256: fingerprintHex(inter.cert) }), ctx())).code).toBe('CERT_REVOKED');
    expect(verdict(() => verifyChain([leaf.cert, inter.cert], at(leaf.cert), by({ fingerprint256: fingerprintHex(root.cert) }), ctx())).code).toBe('CERT_REVOKED');
    expect(verdict(() => verifyChain([leaf.cert, inter.cert], at(leaf.cert), by({ serial: 'ABCDEF' }), ctx())).code).toBe('ok');
  });

  it('judges validity at the signed createdAt, both ends inclusive to the millisecond', () => {
    // The chain's own window: openssl dates to the second, and the three were issued in turn.
    const chainCerts = [leaf.cert, inter.cert, root.cert];
    const from = Math.max(...chainCerts.map((c) => Date.parse(c.validFrom)));
    const to = Math.min(...chainCerts.map((c) => Date.parse(c.validTo)));
    const check = (t: number): string => verdict(() => verifyChain([leaf.cert, inter.cert], new Date(t), keyringOf(), ctx())).code;
    expect(check(from)).toBe('ok');
    expect(check(from - 1)).toBe('CERT_NOT_VALID_AT_CREATION');
    expect(check(to)).toBe('ok');
    expect(check(to + 1)).toBe('CERT_NOT_VALID_AT_CREATION');
  });

  it('refuses a certificate that expired before the trusted time floor, and only then', () => {
    const to = Math.min(...[leaf.cert, inter.cert, root.cert].map((c) => Date.parse(c.validTo)));
    const check = (floor: Date | null): string => verdict(() => verifyChain([leaf.cert, inter.cert], at(leaf.cert), keyringOf(), ctx(floor))).code;
    expect(check(new Date(to + 1))).toBe('CERT_EXPIRED_BEFORE_FLOOR');
    expect(check(new Date(to))).toBe('ok');
    expect(check(null)).toBe('ok');
  });
});

describe('verifyTrustPackSigner', () => {
  it('accepts a root of the keyring signing alone, and says so', () => {
    const ok = verifyTrustPackSigner([root.cert], at(root.cert), keyringOf(), ctx());
    expect(fingerprintHex(ok.signer)).toBe(fingerprintHex(root.cert));
    expect(ok.chain).toHaveLength(1);
    expect(ok).toMatchObject({ keyring: keyringOf(), rotations: [] });
  });

  it('refuses a code-signing chain the keyring would trust for a release, and a root followed by anything', () => {
    expect(verdict(() => verifyTrustPackSigner([leaf.cert, inter.cert], at(leaf.cert), keyringOf(), ctx())).code).toBe('TRUST_PACK_NOT_ROOT_SIGNED');
    expect(verdict(() => verifyTrustPackSigner([root.cert, root.cert], at(root.cert), keyringOf(), ctx())).code).not.toBe('ok');
  });

  it('refuses a root the keyring does not hold, a revoked root, a root outside its validity or expired before the floor', () => {
    expect(verdict(() => verifyTrustPackSigner([other.cert], at(other.cert), keyringOf(), ctx())).code).toBe('CHAIN_UNTRUSTED');
    const revoking = keyringFromCertificates([root.cert], list(root, 1, [{ fingerprint256: fingerprintHex(root.cert) }]));
    expect(verdict(() => verifyTrustPackSigner([root.cert], at(root.cert), revoking, ctx())).code).toBe('CERT_REVOKED');
    const from = Date.parse(root.cert.validFrom);
    const to = Date.parse(root.cert.validTo);
    expect(verdict(() => verifyTrustPackSigner([root.cert], new Date(from - 1), keyringOf(), ctx())).code).toBe('CERT_NOT_VALID_AT_CREATION');
    expect(verdict(() => verifyTrustPackSigner([root.cert], new Date(to + 1), keyringOf(), ctx())).code).toBe('CERT_NOT_VALID_AT_CREATION');
    expect(verdict(() => verifyTrustPackSigner([root.cert], new Date(from), keyringOf(), ctx())).code).toBe('ok');
    expect(verdict(() => verifyTrustPackSigner([root.cert], at(root.cert), keyringOf(), ctx(new Date(to + 1)))).code).toBe('CERT_EXPIRED_BEFORE_FLOOR');
  });
});

describe('admitTrustPayload', () => {
  let n = 0;
  async function payload(roots: Record<string, string>, revocations?: string): Promise<string> {
    const dir = join(tmp.dir, `payload-${++n}`);
    await mkdir(join(dir, 'roots'), { recursive: true });
    for (const [name, text] of Object.entries(roots)) await writeFile(join(dir, 'roots', name), text);
    if (revocations !== undefined) await writeFile(join(dir, 'revocations.json'), revocations);
    return dir;
  }

  it('admits the complete set of roots it states, in name order, with a newer list or none', async () => {
    const held = keyringFromCertificates([root.cert], list(root, 3, []));
    const u = await admitTrustPayload(held, await payload({ 'root.crt': root.pem, 'b-other.pem': other.pem }), root.cert);
    expect(u.roots.map((r) => r.name)).toEqual(['b-other.pem', 'root.crt']);
    expect(u.revocations).toBeNull();
    const newer = list(root, 4, []);
    expect((await admitTrustPayload(held, await payload({ 'root.crt': root.pem }, newer), root.cert)).revocations).toBe(newer);
    expect((await admitTrustPayload(keyringOf(), await payload({ 'root.crt': root.pem }, list(root, 0, [])), root.cert)).revocations).not.toBeNull();
  });

  it('refuses a root file with an odd name, or that is not exactly one self-signed CA', async () => {
    for (const [name, text, why] of [
      ['root.txt', root.pem, 'has an unexpected name'],
      ['a root.crt', root.pem, 'has an unexpected name'],
      ['root.crt.old', root.pem, 'has an unexpected name'],
      ['two.crt', root.pem + other.pem, 'is not one self-signed CA certificate'],
      ['leaf.crt', leaf.pem, 'is not one self-signed CA certificate'],
    ] as const) {
      const v = await averdict(async () => admitTrustPayload(keyringOf(), await payload({ 'root.crt': root.pem, [name]: text }), root.cert));
      expect(v, name).toEqual({ code: 'TRUST_PACK_UNAUTHORISED', message: `trust pack root ${name} ${why}` });
    }
  });

  it('refuses an empty set, and a set without the root that signed it', async () => {
    expect(await averdict(async () => admitTrustPayload(keyringOf(), await payload({}), root.cert))).toEqual({ code: 'TRUST_PACK_ROOT_SET_INVALID', message: 'the trust pack states no root: it would leave the probe unable to trust anything' });
    // A payload without a roots folder at all states no root either.
    const bare = join(tmp.dir, 'bare-payload');
    await mkdir(bare, { recursive: true });
    expect((await averdict(() => admitTrustPayload(keyringOf(), bare, root.cert))).code).toBe('TRUST_PACK_ROOT_SET_INVALID');
    const v = await averdict(async () => admitTrustPayload(keyringOf(), await payload({ 'other.crt': other.pem }), root.cert));
    expect(v.code).toBe('TRUST_PACK_ROOT_SET_INVALID');
    expect(v.message).toContain('drops the root that signed it');
  });

  it('refuses a list signed by no root of the new set, and one whose sequence is not newer', async () => {
    const held = keyringFromCertificates([root.cert], list(root, 3, []));
    const foreign = await admitTrustPayload(held, await payload({ 'root.crt': root.pem }, list(other, 9, [])), root.cert).then(() => null, (x: unknown) => x as Error & { code: string });
    expect(foreign).toMatchObject({ code: 'TRUST_PACK_UNAUTHORISED', message: 'the trust pack revocation list is not signed by a root of the keyring it leaves' });
    expect((foreign!.cause as { code?: string }).code).toBe('REVOCATIONS_INVALID');
    for (const seq of [3, 2]) {
      expect((await averdict(async () => admitTrustPayload(held, await payload({ 'root.crt': root.pem }, list(root, seq, [])), root.cert))).code, String(seq)).toBe('REVOCATIONS_NOT_NEWER');
    }
  });

  it('refuses a set that drops the issuer of the list the probe holds without bringing a new list', async () => {
    const both = keyringFromCertificates([root.cert, other.cert], list(other, 1, []));
    const v = await averdict(async () => admitTrustPayload(both, await payload({ 'root.crt': root.pem }), root.cert));
    expect(v.code).toBe('TRUST_PACK_ROOT_SET_INVALID');
    expect(v.message).toContain('revocation list');
    expect((await averdict(async () => admitTrustPayload(both, await payload({ 'root.crt': root.pem, 'other.crt': other.pem }), root.cert))).code).toBe('ok');
  });
});
