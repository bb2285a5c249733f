import { X509Certificate } from 'node:crypto';
import { copyFile, mkdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadKeyring, readPack, verifyPack } from '../../pack/src/index.js';
import { normaliseSerial } from '../../pack/src/revocations.js';
import type { Engine } from '../../agent/src/update/engine.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { setSiteVar } from '../../agent/src/update/site-vars.js';
import { issueSigner } from '../../images/src/keys/key-dir.js';
import type { Signer } from '../../pack/src/writer.js';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { loadSigner, scratch, treeDigest } from '../helpers/packs.js';
import { appStatus, probeState, seedConfig, stagingLeftovers } from '../helpers/probe-state.js';
import { openEngine, sharedSamples, stopApp, waitFor, wholeProbe } from '../helpers/probe.js';
import { rogueSigner, trustVariantPack, variantPack } from '../helpers/sample-variants.js';
import { freePort } from '../probe-app/probe-root.js';

/**
 * Packs that install without a slot switch (DESIGN.md, "Pack kinds"): a licence, and a trust pack
 * that adds a vendor root and a revocation list to the probe's keyring. What the keyring says
 * afterwards decides which packs the probe accepts.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let root: string;
let port: number;
const packs: Record<string, string> = {};

async function install(pack: string): ReturnType<Engine['install']> {
  const engine = await openEngine(root, s);
  try {
    return await engine.install(pack);
  } finally {
    engine.close();
  }
}

/** Verifies a pack against the probe's own keyring; the code it is refused with, or 'trusted'. */
async function verdict(pack: string): Promise<string> {
  const keyring = await loadKeyring(layoutOf(root).keyring);
  try {
    const v = await verifyPack(await readPack(pack), keyring);
    await v.close();
    return 'trusted';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

async function releases(): Promise<string[]> {
  const engine = await openEngine(root, s);
  try {
    return engine.context.journal.releases().map((r) => `${r.version}@${r.slot ?? '-'}`);
  } finally {
    engine.close();
  }
}

async function receiptOf(id: string): Promise<{ outcome: string; errorCode: string | null }> {
  return JSON.parse(await readFile(join(layoutOf(root).receipts, `${id}.json`), 'utf8')) as { outcome: string; errorCode: string | null };
}

/** A signer issued under the sample's second root (which only the trust pack makes trusted). */
async function secondRootSigner(dir: string): Promise<Signer> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await copyFile(s.keys.secondRootCert, join(dir, 'root.crt'));
  await copyFile(s.keys.secondRootKey, join(dir, 'root.key'));
  await issueSigner(dir, { name: 'Second Root Signer' });
  return loadSigner(dir, 'signer');
}

beforeAll(async () => {
  tmp = await scratch('sonde-license-trust-');
  s = await sharedSamples(join(tmp.dir, 'samples'));
  const v = join(tmp.dir, 'variants');
  packs.revoked110 = await variantPack(s, v, 'revoked-signer-1.1.0', '1.1.0', { signer: 'revoked-signer' });
  packs.revoked111 = await variantPack(s, v, 'revoked-signer-1.1.1', '1.1.1', { signer: 'revoked-signer' });
  const rogue = await rogueSigner(join(tmp.dir, 'rogue-pki'));
  packs.rogueTrust = await trustVariantPack(s, v, 'rogue-trust', { roots: { 'rogue-root.crt': rogue.rootCert } }, { signer: rogue.signer });
  packs.secondRoot111 = await variantPack(s, v, 'second-root-1.1.1', '1.1.1', { signer: await secondRootSigner(join(tmp.dir, 'second-pki')) });

  root = join(tmp.dir, 'probe');
  port = await freePort();
  await seedConfig(root, { port, pollMs: 40, measurements: { paused: true } });
  await setSiteVar(layoutOf(root).siteVars, 'CollectorPassword', 'license-trust-secret');
  expect((await install(s.packs['1.0.0'])).committed).toBe(true);
}, 180_000);

afterAll(async () => {
  await stopApp(root).catch(() => undefined);
  await tmp.cleanup();
});

describe('licence packs', () => {
  it('installs the licence without a slot switch, and the app reports licensed mode', async () => {
    const l = layoutOf(root);
    expect(await appStatus(port)).toMatchObject({ mode: 'evaluation', licensee: null });
    const pointer = await readlink(l.current);
    const slots = await treeDigest(l.slotsDir);
    const whole = await wholeProbe(root);
    const released = await releases();

    const r = await install(s.packs.license);
    expect(r.deployment.errorMessage).toBeNull();
    expect(r.committed).toBe(true);
    expect(r.deployment).toMatchObject({ kind: 'license', targetSlot: null });
    expect(await receiptOf(r.deployment.id)).toMatchObject({ outcome: 'committed', errorCode: null });

    expect(await readlink(l.current)).toBe(pointer);
    expect(await treeDigest(l.slotsDir)).toEqual(slots);
    expect(await wholeProbe(root)).toEqual(whole);
    expect(await releases()).toEqual(released);
    const licence = JSON.parse(await readFile(join(l.licenseDir, 'license.json'), 'utf8')) as { licensee: string };
    expect(licence.licensee).toBe('Sample Networks Ltd');
    await waitFor('licensed mode', async () => {
      const st = await appStatus(port);
      return st.mode === 'licensed' && st.licensee === 'Sample Networks Ltd' && st.version === '1.0.0';
    });
    expect(await stagingLeftovers(root)).toEqual([]);
  });
});

describe('trust packs', () => {
  it('refuses a trust pack signed under an unknown root with CHAIN_UNTRUSTED, keyring unchanged', async () => {
    const keyring = await treeDigest(layoutOf(root).keyring);
    const before = await probeState(root);
    const r = await install(packs.rogueTrust!);
    expect(r.committed).toBe(false);
    expect(r.deployment).toMatchObject({ state: 'failed', errorCode: 'CHAIN_UNTRUSTED' });
    expect(await receiptOf(r.deployment.id)).toMatchObject({ outcome: 'failed', errorCode: 'CHAIN_UNTRUSTED' });
    expect(await treeDigest(layoutOf(root).keyring)).toEqual(keyring);
    expect(Object.keys(keyring)).toEqual(['root.crt']);
    expect(await probeState(root)).toEqual(before);
    expect(await stagingLeftovers(root)).toEqual([]);
  });

  it('accepts a pack signed by the revoked-signer while the keyring does not yet revoke it', async () => {
    expect(await verdict(packs.revoked110!)).toBe('trusted');
    const r = await install(packs.revoked110!);
    expect(r.deployment.errorMessage).toBeNull();
    expect(r.committed).toBe(true);
    expect(await appStatus(port)).toMatchObject({ version: '1.1.0' });
  });

  it('does not trust a signer under the second root before the trust pack', async () => {
    expect(await verdict(packs.secondRoot111!)).toBe('CHAIN_UNTRUSTED');
  });

  it('installs the trust pack without a slot switch: the second root and the revocation list join <root>/keyring', async () => {
    const l = layoutOf(root);
    const pointer = await readlink(l.current);
    const slots = await treeDigest(l.slotsDir);
    const whole = await wholeProbe(root);
    const released = await releases();

    const r = await install(s.packs.trust);
    expect(r.deployment.errorMessage).toBeNull();
    expect(r.committed).toBe(true);
    expect(r.deployment).toMatchObject({ kind: 'trust', targetSlot: null });

    expect(await readlink(l.current)).toBe(pointer);
    expect(await treeDigest(l.slotsDir)).toEqual(slots);
    expect(await wholeProbe(root)).toEqual(whole);
    expect(await releases()).toEqual(released);
    expect(Object.keys(await treeDigest(l.keyring)).sort()).toEqual(['revocations.json', 'root.crt', 'second-root.crt']);
    expect(await readFile(join(l.keyring, 'second-root.crt'), 'utf8')).toBe(await readFile(s.keys.secondRootCert, 'utf8'));
    const keyring = await loadKeyring(l.keyring);
    const expected = await Promise.all([s.keys.rootCert, s.keys.secondRootCert].map(async (p) => new X509Certificate(await readFile(p, 'utf8')).fingerprint256));
    expect(keyring.roots.map((c) => c.fingerprint256).sort()).toEqual(expected.sort());
    const revokedSerial = normaliseSerial(new X509Certificate(await readFile(s.keys.revokedSignerCert, 'utf8')).serialNumber);
    expect([...(keyring.revocations?.serials ?? [])]).toContain(revokedSerial);
    expect(await stagingLeftovers(root)).toEqual([]);
  });

  it('trusts a signer under the second root once the trust pack added it', async () => {
    expect(await verdict(packs.secondRoot111!)).toBe('trusted');
  });

  it('refuses the revoked-signer with CERT_REVOKED after the trust pack, probe unchanged, the pack it accepted before included', async () => {
    const before = await probeState(root);
    const r = await install(packs.revoked111!);
    expect(r.committed).toBe(false);
    expect(r.deployment).toMatchObject({ state: 'failed', errorCode: 'CERT_REVOKED' });
    expect(await receiptOf(r.deployment.id)).toMatchObject({ outcome: 'failed', errorCode: 'CERT_REVOKED' });
    expect(await probeState(root)).toEqual(before);
    expect(await stagingLeftovers(root)).toEqual([]);
    // The very pack installed before the trust pack is refused now.
    expect(await verdict(packs.revoked110!)).toBe('CERT_REVOKED');
    expect(await appStatus(port)).toMatchObject({ version: '1.1.0', mode: 'licensed' });
  });
});
