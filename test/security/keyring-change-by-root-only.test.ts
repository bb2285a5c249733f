import { copyFile, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scratch, treeDigest } from '../helpers/packs.js';
import { sonde, sondeOk } from '../helpers/probe-state.js';

/**
 * The keyring changes only by root authority (issue 18; docs/threat-model.md). Through the CLI,
 * the attacker's door on a probe (`sonde agent install`) and the vendor's (`sonde pack`):
 * - a stolen code-signing key signs a trust pack that adds the attacker's root: refused with
 *   TRUST_PACK_NOT_ROOT_SIGNED, keyring byte for byte as it was;
 * - the vendor's root signs it: applied (the contract of the issue);
 * - a replayed older revocation list would un-revoke a signer: REVOCATIONS_NOT_NEWER;
 * - a trust pack that leaves no root, or drops the root that signed it: TRUST_PACK_ROOT_SET_INVALID;
 * - a root is retired in two packs, and afterwards its signers are not trusted.
 */
/** `sonde ...args` run in `cwd`. */
const run = (args: string[], cwd: string): ReturnType<typeof sonde> => sonde(args, '', cwd);

const ok = sondeOk;

let tmp: { dir: string; cleanup: () => Promise<void> };
let W: string;
let version = 0;

/** A trust pack's source: `roots` (file name -> certificate path) and an optional revocation list. */
async function trustSource(name: string, roots: Record<string, string>, revocations?: string): Promise<string> {
  const src = join(W, name);
  await mkdir(join(src, 'trust', 'roots'), { recursive: true });
  for (const [file, from] of Object.entries(roots)) await copyFile(from, join(src, 'trust', 'roots', file));
  if (revocations !== undefined) await copyFile(revocations, join(src, 'trust', 'revocations.json'));
  version += 1;
  await writeFile(join(src, 'pack.json'), JSON.stringify({ product: 'demo', version: `1.0.${version}`, compatible: ['probe-x1'], payloads: { trust: 'trust' } }));
  return src;
}

/** `sonde pack SRC --kind trust --sign K/<who>.key --cert K/<who>.crt -o <name>.spk`, as the issue writes it. */
async function trustPack(name: string, src: string, keys: string, who: 'root' | 'signer'): Promise<string> {
  const out = join(W, `${name}.spk`);
  await ok(['pack', src, '--kind', 'trust', '--sign', join(keys, `${who}.key`), '--cert', join(keys, `${who}.crt`), '-o', out], W);
  return out;
}

async function install(pack: string, root: string): Promise<{ code: number; out: string }> {
  const r = await run(['agent', 'install', pack, '--root', root, '--keyring', join(W, 'K', 'root.crt')], W);
  return { code: r.code, out: r.stdout + r.stderr };
}

beforeAll(async () => {
  tmp = await scratch('sonde-keyring-root-only-');
  W = tmp.dir;
  await ok(['keys', 'init-ca', '--dir', 'K'], W);
  await ok(['keys', 'issue-signer', '--dir', 'K'], W);
  await ok(['keys', 'issue-signer', '--dir', 'K', '--name', 'Retired Signer', '--out', 'retired'], W);
  await ok(['keys', 'init-ca', '--dir', 'K2', '--name', 'Next Root'], W);
  await ok(['keys', 'issue-signer', '--dir', 'K2'], W);
  await ok(['keys', 'init-ca', '--dir', 'EVIL', '--name', 'Attacker Root'], W);
}, 120_000);

afterAll(() => tmp.cleanup());

describe('a trust pack', () => {
  it('signed with a stolen code-signing key cannot add the attacker root: TRUST_PACK_NOT_ROOT_SIGNED, keyring unchanged', async () => {
    const R = join(W, 'R-stolen');
    const src = await trustSource('evil-src', { 'root.crt': join(W, 'K', 'root.crt'), 'evil.crt': join(W, 'EVIL', 'root.crt') });
    const evil = await trustPack('evil', src, join(W, 'K'), 'signer');
    const r = await install(evil, R);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('TRUST_PACK_NOT_ROOT_SIGNED');
    expect(Object.keys(await treeDigest(join(R, 'keyring')))).toEqual(['root.crt']);
    const verdict = await run(['verify', evil, '--keyring', join(W, 'K', 'root.crt')], W);
    expect(verdict.code).not.toBe(0);
    expect(verdict.stdout + verdict.stderr).toContain('TRUST_PACK_NOT_ROOT_SIGNED');
  });

  it('signed by the keyring root is applied: the keyring then holds exactly the roots it names', async () => {
    const R = join(W, 'R-root');
    const src = await trustSource('rotate-src', { 'root.crt': join(W, 'K', 'root.crt'), 'next-root.crt': join(W, 'K2', 'root.crt') });
    const r = await install(await trustPack('rotate', src, join(W, 'K'), 'root'), R);
    expect(r.code, r.out).toBe(0);
    expect(Object.keys(await treeDigest(join(R, 'keyring'))).sort()).toEqual(['next-root.crt', 'root.crt']);
  });

  it('signed by a root the probe does not hold is refused as untrusted, keyring unchanged', async () => {
    const R = join(W, 'R-evil-root');
    const src = await trustSource('evil-root-src', { 'evil.crt': join(W, 'EVIL', 'root.crt') });
    const r = await install(await trustPack('evil-root', src, join(W, 'EVIL'), 'root'), R);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('CHAIN_UNTRUSTED');
    expect(Object.keys(await treeDigest(join(R, 'keyring')))).toEqual(['root.crt']);
  });

  it('that would leave no root, or drops the root that signed it, is refused: TRUST_PACK_ROOT_SET_INVALID, keyring unchanged', async () => {
    const R = join(W, 'R-set');
    const empty = await trustPack('empty', await trustSource('empty-src', {}), join(W, 'K'), 'root');
    const before = await (async () => {
      const first = await install(empty, R);
      expect(first.code).not.toBe(0);
      expect(first.out).toContain('TRUST_PACK_ROOT_SET_INVALID');
      return treeDigest(join(R, 'keyring'));
    })();
    expect(Object.keys(before)).toEqual(['root.crt']);
    const dropsSigner = await trustPack('drops-signer', await trustSource('drops-src', { 'next-root.crt': join(W, 'K2', 'root.crt') }), join(W, 'K'), 'root');
    const r = await install(dropsSigner, R);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('TRUST_PACK_ROOT_SET_INVALID');
    expect(await treeDigest(join(R, 'keyring'))).toEqual(before);
  });

  it('retires a root in two packs, after which the retired root and its signers are not trusted', async () => {
    const R = join(W, 'R-retire');
    const add = await trustPack('add-next', await trustSource('add-next-src', { 'root.crt': join(W, 'K', 'root.crt'), 'next-root.crt': join(W, 'K2', 'root.crt') }), join(W, 'K'), 'root');
    expect((await install(add, R)).code).toBe(0);
    const retire = await trustPack('retire-old', await trustSource('retire-src', { 'next-root.crt': join(W, 'K2', 'root.crt') }), join(W, 'K2'), 'root');
    const r = await install(retire, R);
    expect(r.code, r.out).toBe(0);
    expect(Object.keys(await treeDigest(join(R, 'keyring')))).toEqual(['next-root.crt']);
    // The retired root can no longer sign the keyring back.
    const back = await trustPack('back', await trustSource('back-src', { 'root.crt': join(W, 'K', 'root.crt') }), join(W, 'K'), 'root');
    const again = await install(back, R);
    expect(again.code).not.toBe(0);
    expect(again.out).toContain('CHAIN_UNTRUSTED');
  });
});

describe('a revocation list', () => {
  it('older than the one the probe holds is refused (a replay would un-revoke a signer): REVOCATIONS_NOT_NEWER, keyring unchanged', async () => {
    const R = join(W, 'R-replay');
    const K = join(W, 'K');
    await rm(join(K, 'revocations.json'), { force: true });
    await ok(['keys', 'revoke', '--dir', 'K', '--cert', join(K, 'retired.crt'), '--reason', 'test: first list'], W);
    const first = join(W, 'revocations-0.json');
    await copyFile(join(K, 'revocations.json'), first);
    await ok(['keys', 'revoke', '--dir', 'K', '--cert', join(K, 'signer.crt'), '--reason', 'test: second list'], W);
    const second = join(W, 'revocations-1.json');
    await copyFile(join(K, 'revocations.json'), second);
    await rm(join(K, 'revocations.json'));

    const newer = await trustPack('list-1', await trustSource('list-1-src', { 'root.crt': join(K, 'root.crt') }, second), K, 'root');
    expect((await install(newer, R)).code).toBe(0);
    const held = await treeDigest(join(R, 'keyring'));
    expect(Object.keys(held).sort()).toEqual(['revocations.json', 'root.crt']);

    for (const [name, list] of [['list-0', first], ['list-1-again', second]] as const) {
      const replay = await trustPack(name, await trustSource(`${name}-src`, { 'root.crt': join(K, 'root.crt') }, list), K, 'root');
      const r = await install(replay, R);
      expect(r.code, name).not.toBe(0);
      expect(r.out, name).toContain('REVOCATIONS_NOT_NEWER');
      expect(await treeDigest(join(R, 'keyring')), name).toEqual(held);
    }
  });
});
