import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCertificateFile, loadPrivateKey, signRootRotation, rotationFileName, type RootRotation } from '../../pack/src/index.js';
import { writeLicenseRecipe } from '../../images/src/samples/recipes.js';
import { scratch, treeDigest } from '../helpers/packs.js';
import { sonde, sondeOk } from '../helpers/probe-state.js';

/**
 * Root rotation across a long offline period (issue 18; docs/keys.md "Rotating the root";
 * docs/threat-model.md). The vendor rotates its root twice (2026 -> 2030 -> 2034) with
 * `sonde keys rotate-root`; a probe that slept through both catches up from the newest trust pack
 * alone, each rotation judged against the roots it held at that step. The attacks:
 * - a stolen, rotated-away root signs a new rotation to the attacker's root: ROOT_ROTATION_UNTRUSTED;
 * - an old genuine rotation is replayed: history, changes nothing;
 * - a rotation to a root that never cross-signed it (a key nobody has shown): ROOT_ROTATION_INVALID;
 * - a genuine statement with its roots swapped: ROOT_ROTATION_INVALID;
 * - a code-signing key signs a rotation: it has no authority, ROOT_ROTATION_UNTRUSTED.
 * Each refusal leaves the probe's keyring byte for byte as it was.
 */
const run = (args: string[], cwd: string): ReturnType<typeof sonde> => sonde(args, '', cwd);

const ok = sondeOk;

let tmp: { dir: string; cleanup: () => Promise<void> };
let W: string;
let version = 0;
let trust: string;
let licence: string;

async function trustSource(name: string, root: string, revocations?: string): Promise<string> {
  const src = join(W, name);
  await mkdir(join(src, 'trust', 'roots'), { recursive: true });
  await copyFile(root, join(src, 'trust', 'roots', 'root.crt'));
  if (revocations !== undefined) await copyFile(revocations, join(src, 'trust', 'revocations.json'));
  version += 1;
  await writeFile(join(src, 'pack.json'), JSON.stringify({ product: 'demo', version: `1.0.${version}`, compatible: ['probe-x1'], payloads: { trust: 'trust' } }));
  return src;
}

async function trustPackFrom(name: string, keys: string, extra: string[] = []): Promise<string> {
  const out = join(W, `${name}.spk`);
  await ok(['pack', await trustSource(`${name}-src`, join(keys, 'root.crt')), '--kind', 'trust', '--sign', join(keys, 'root.key'), '--cert', join(keys, 'root.crt'), ...extra, '-o', out], W);
  return out;
}

async function install(pack: string, root: string, keyring: string): Promise<{ code: number; out: string }> {
  const r = await run(['agent', 'install', pack, '--root', root, '--keyring', keyring], W);
  return { code: r.code, out: r.stdout + r.stderr };
}

async function trustStatus(root: string): Promise<Record<string, unknown>> {
  return (JSON.parse(await ok(['agent', 'status', '--root', root, '--json'], W)) as { trust: Record<string, unknown> }).trust;
}

/** A statement written by hand, as an attacker holding `signers`' keys would. */
async function forged(sequence: number, rootsFrom: string[], signers: { crt: string; key: string }[]): Promise<RootRotation> {
  const roots = await Promise.all(rootsFrom.map(async (p) => (await readCertificateFile(p)).pems[0]!));
  const keys = await Promise.all(signers.map(async (s) => ({ cert: (await readCertificateFile(s.crt)).certs[0]!, key: await loadPrivateKey(s.key) })));
  return signRootRotation({ sequence, issuedAt: new Date(Date.now() - 1000).toISOString(), roots: roots.map((p) => (p.endsWith('\n') ? p : `${p}\n`)) }, keys);
}

/** A trust pack signed by `keys`' root that carries exactly `statements`. */
async function packWithStatements(name: string, keys: string, statements: RootRotation[]): Promise<string> {
  const dir = join(W, `${name}-rotations`);
  await mkdir(dir, { recursive: true });
  for (const s of statements) await writeFile(join(dir, rotationFileName(s.body.sequence)), JSON.stringify(s));
  return trustPackFrom(name, keys, ['--root-rotations', dir]);
}

const K = (n: string): string => join(W, n);
const pair = (dir: string, base = 'root'): { crt: string; key: string } => ({ crt: join(K(dir), `${base}.crt`), key: join(K(dir), `${base}.key`) });

beforeAll(async () => {
  tmp = await scratch('sonde-root-rotation-');
  W = tmp.dir;
  await ok(['keys', 'init-ca', '--dir', 'K1', '--name', 'Root 2026'], W);
  await ok(['keys', 'issue-signer', '--dir', 'K1', '--name', 'Signer 2026', '--out', 'old-signer'], W);
  await ok(['keys', 'revoke', '--dir', 'K1', '--cert', join(K('K1'), 'old-signer.crt'), '--reason', 'test: leaked'], W);
  await ok(['keys', 'init-ca', '--dir', 'K2', '--name', 'Root 2030'], W);
  await ok(['keys', 'init-ca', '--dir', 'K3', '--name', 'Root 2034'], W);
  await ok(['keys', 'init-ca', '--dir', 'EVIL', '--name', 'Attacker Root'], W);
  await ok(['keys', 'rotate-root', '--dir', 'K1', '--to', 'K2'], W);
  await ok(['keys', 'rotate-root', '--dir', 'K2', '--to', 'K3'], W);
  await ok(['keys', 'issue-signer', '--dir', 'K3', '--name', 'Signer 2034'], W);

  const src = await trustSource('trust-src', join(K('K3'), 'root.crt'), join(K('K3'), 'revocations.json'));
  trust = join(W, 'trust.spk');
  const packed = await ok(['pack', src, '--kind', 'trust', '--sign', join(K('K3'), 'root.key'), '--cert', join(K('K3'), 'root.crt'), '-o', trust], W);
  expect(packed).toContain('carries root rotations 1, 2');

  const licenceSrc = join(W, 'licence-src');
  await writeLicenseRecipe(licenceSrc);
  licence = join(W, 'licence.spk');
  await ok(['pack', licenceSrc, '--sign', join(K('K3'), 'signer.key'), '--cert', join(K('K3'), 'signer.crt'), '-o', licence], W);
}, 240_000);

afterAll(() => tmp.cleanup());

describe('root rotation', () => {
  it('a probe offline across three root generations catches up from one trust pack, each rotation signed by a root it held at that step', async () => {
    const R = join(W, 'R-2026');
    const seed = join(K('K1'), 'root.crt');
    const before = await install(licence, R, seed);
    expect(before.code).not.toBe(0);
    expect(before.out).toContain('CHAIN_UNTRUSTED');

    const r = await install(trust, R, seed);
    expect(r.code, r.out).toBe(0);
    expect(Object.keys(await treeDigest(join(R, 'keyring'))).sort()).toEqual(['revocations.json', 'root.crt', 'rotations', 'rotations/0001.json', 'rotations/0002.json']);
    expect(await readFile(join(R, 'keyring', 'root.crt'), 'utf8')).toBe(await readFile(join(K('K3'), 'root.crt'), 'utf8'));
    // The revocation list came along: issued by the 2034 root, two sequences on.
    expect(await trustStatus(R)).toMatchObject({ roots: 1, rootRotation: 2, revocationSequence: 2 });

    const after = await install(licence, R, seed);
    expect(after.code, after.out).toBe(0);
    // The vendor checks the same pack against the oldest root it ever shipped.
    const verdict = await run(['verify', trust, '--keyring', seed], W);
    expect(verdict.code, verdict.stdout).toBe(0);
    expect(verdict.stdout).toContain('reached through root rotations 1, 2');
  });

  it('a probe seeded after the first rotation skips it as history and follows the second', async () => {
    const R = join(W, 'R-2030');
    const r = await install(trust, R, join(K('K2'), 'root.crt'));
    expect(r.code, r.out).toBe(0);
    expect(await trustStatus(R)).toMatchObject({ roots: 1, rootRotation: 2 });
  });

  it('a stolen, rotated-away root cannot rotate a probe that moved past it: ROOT_ROTATION_UNTRUSTED, keyring unchanged', async () => {
    const R = join(W, 'R-stolen-root');
    expect((await install(trust, R, join(K('K1'), 'root.crt'))).code).toBe(0);
    const held = await treeDigest(join(R, 'keyring'));

    const takeover = await packWithStatements('takeover', K('EVIL'), [await forged(3, [pair('EVIL').crt], [pair('K1'), pair('EVIL')])]);
    const r = await install(takeover, R, join(K('K1'), 'root.crt'));
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('ROOT_ROTATION_UNTRUSTED');
    expect(await treeDigest(join(R, 'keyring'))).toEqual(held);

    // The genuine first rotation, replayed with the stolen root's forged sequel under the same number: history.
    const replay = await packWithStatements('replay', K('EVIL'), [await forged(1, [pair('EVIL').crt], [pair('K1'), pair('EVIL')])]);
    const again = await install(replay, R, join(K('K1'), 'root.crt'));
    expect(again.code).not.toBe(0);
    expect(again.out).toContain('CHAIN_UNTRUSTED');
    expect(await treeDigest(join(R, 'keyring'))).toEqual(held);
  });

  it('a rotation to a root that did not cross-sign it (a key nobody has shown) is refused: ROOT_ROTATION_INVALID, keyring unchanged', async () => {
    const R = join(W, 'R-no-cross-sign');
    const strands = await packWithStatements('strands', K('K2'), [await forged(1, [pair('K2').crt], [pair('K1')])]);
    const r = await install(strands, R, join(K('K1'), 'root.crt'));
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('ROOT_ROTATION_INVALID');
    expect(Object.keys(await treeDigest(join(R, 'keyring')))).toEqual(['revocations.json', 'root.crt']);
  });

  it('a genuine rotation statement with its roots swapped for the attacker root is refused: ROOT_ROTATION_INVALID', async () => {
    const R = join(W, 'R-altered');
    const genuine = JSON.parse(await readFile(join(K('K3'), 'rotations', '0001.json'), 'utf8')) as RootRotation;
    const evilPem = (await readCertificateFile(pair('EVIL').crt)).pems[0]!;
    const altered: RootRotation = { ...genuine, body: { ...genuine.body, roots: [evilPem.endsWith('\n') ? evilPem : `${evilPem}\n`] } };
    const r = await install(await packWithStatements('altered', K('EVIL'), [altered]), R, join(K('K1'), 'root.crt'));
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('ROOT_ROTATION_INVALID');
    expect(Object.keys(await treeDigest(join(R, 'keyring')))).toEqual(['revocations.json', 'root.crt']);
  });

  it('a rotation signed with a code-signing key has no authority: ROOT_ROTATION_UNTRUSTED, keyring unchanged', async () => {
    const R = join(W, 'R-signer-rotates');
    await ok(['keys', 'issue-signer', '--dir', 'K1', '--name', 'Current Signer 2026', '--out', 'signer'], W);
    const bySigner = await packWithStatements('by-signer', K('EVIL'), [await forged(1, [pair('EVIL').crt], [pair('K1', 'signer'), pair('EVIL')])]);
    const r = await install(bySigner, R, join(K('K1'), 'root.crt'));
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('ROOT_ROTATION_UNTRUSTED');
    expect(Object.keys(await treeDigest(join(R, 'keyring')))).toEqual(['revocations.json', 'root.crt']);
  });

  it('sonde keys rotate-root refuses to rotate a root a second time, so the history never forks', async () => {
    const r = await run(['keys', 'rotate-root', '--dir', 'K1', '--to', 'EVIL'], W);
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toContain('ROOT_ROTATION_INVALID');
    expect(Object.keys(await treeDigest(join(K('EVIL'))))).not.toContain('rotations/0001.json');
  });
});
