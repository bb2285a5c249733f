import { X509Certificate } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractPack, loadKeyring, readPack, verifyPack, type Keyring, type Manifest } from '../../pack/src/index.js';
import { normaliseSerial, verifyRevocations } from '../../pack/src/revocations.js';
import { isSondeError } from '../../base/src/errors/sonde-error.js';
import { loadPrivateKey } from '../../pack/src/key-files.js';
import { writePack } from '../../pack/src/writer.js';
import { makePlan } from '../../pack/src/recipe.js';
import {
  buildSamples,
  CONFIG_TEMPLATE_V1,
  loadSampleSigner,
  makeSampleKeys,
  probeAppSource,
  SAMPLE_PACK_IDS,
  samplePackFile,
  type SamplePackId,
  type SamplePaths,
} from '../../images/src/samples/index.js';
import { scratch } from '../helpers/packs.js';

/**
 * `images/build-samples --out DIR`, run in-process once: the files of the contract, and packs
 * that a probe holding keys/root.crt and keys/fleet.key verifies and extracts.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let samples: SamplePaths;
let keyring: Keyring;
const manifests = new Map<SamplePackId, Manifest>();
/** Extracted payload folders: pack id -> payload type -> folder. */
const extracted = new Map<SamplePackId, Record<string, string>>();

beforeAll(async () => {
  tmp = await scratch('sonde-samples-test-');
  const lines: string[] = [];
  samples = await buildSamples(join(tmp.dir, 'out'), { log: (l) => lines.push(l) });
  expect(lines.filter((l) => l.startsWith('wrote '))).toHaveLength(SAMPLE_PACK_IDS.length);
  keyring = await loadKeyring(samples.keys.rootCert);
  const fleetKey = await loadPrivateKey(samples.keys.fleetKey);
  for (const id of SAMPLE_PACK_IDS) {
    const verified = await verifyPack(await readPack(samples.packs[id]), keyring);
    manifests.set(id, verified.manifest);
    const staging = join(tmp.dir, 'staging', id);
    const result = await extractPack(verified, { mode: 'extract', staging, key: fleetKey });
    extracted.set(id, Object.fromEntries(result.payloads.map((p) => [p.entry.type, p.dir!])));
  }
});
afterAll(() => tmp.cleanup());

const manifest = (id: SamplePackId): Manifest => manifests.get(id)!;
const payloadDir = (id: SamplePackId, type: string): string => {
  const dir = extracted.get(id)?.[type];
  if (!dir) throw new Error(`${id} has no ${type} payload`);
  return dir;
};
const readJson = async (path: string): Promise<Record<string, unknown>> => JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;

describe('buildSamples output', () => {
  it('writes every file of the build-samples contract', () => {
    const out = samples.out;
    const files = [
      'keys/root.crt', 'keys/root.key', 'keys/intermediate.crt', 'keys/intermediate.key',
      'keys/signer.crt', 'keys/signer.key', 'keys/fleet.crt', 'keys/fleet.key',
      'keys/revoked-signer.crt', 'keys/revoked-signer.key',
      'keys/second-root/root.crt', 'keys/second-root/root.key',
      'probe-app-1.0.0.spk', 'probe-app-1.1.0.spk', 'probe-app-1.1.1.spk',
      'probe-app-1.2.0-bad.spk', 'probe-app-1.2.0-crash.spk', 'license.spk', 'trust.spk',
    ];
    expect(files.filter((f) => !existsSync(join(out, f)))).toEqual([]);
    for (const id of SAMPLE_PACK_IDS) expect(samples.packs[id]).toBe(join(out, samplePackFile(id)));
  });

  it('leaves no recipe folders or other stray files beside the packs', async () => {
    expect((await readdir(samples.out)).sort()).toEqual(['keys', ...SAMPLE_PACK_IDS.map(samplePackFile)].sort());
  });

  it('leaves keys/revocations.json alone: the revocation travels in the trust pack only', () => {
    expect(existsSync(join(samples.keys.dir, 'revocations.json'))).toBe(false);
  });

  it('reuses a complete key set when built again into the same folder', async () => {
    const rootBefore = await readFile(samples.keys.rootCert, 'utf8');
    const again = await makeSampleKeys(samples.keys.dir);
    expect(again.reused).toBe(true);
    expect(await readFile(samples.keys.rootCert, 'utf8')).toBe(rootBefore);
  });

  it('refuses an incomplete key set rather than completing it under another root', async () => {
    const partial = join(tmp.dir, 'partial-keys');
    await mkdir(partial);
    await copyFile(samples.keys.rootCert, join(partial, 'root.crt'));
    await expect(makeSampleKeys(partial)).rejects.toThrow(/incomplete sample key set/);
  });
});

describe('the sample packs', () => {
  // The release table of images/probe-app/README.md.
  const table = [
    { id: '1.0.0', kind: 'product', requires: undefined, payloads: ['app', 'db', 'config'], db: [1, 1], config: [1, 1], fault: undefined },
    { id: '1.1.0', kind: 'servicepack', requires: '>=1.0.0 <1.1.0', payloads: ['app', 'db', 'config'], db: [2, 2], config: [2, 3], fault: undefined },
    { id: '1.1.1', kind: 'servicepack', requires: '>=1.1.0 <1.1.1', payloads: ['data', 'config'], db: null, config: null, fault: undefined },
    { id: '1.2.0-bad', kind: 'servicepack', requires: '>=1.1.0 <1.2.0', payloads: ['app', 'data', 'db', 'config'], db: [3, 3], config: [4, 4], fault: 'unhealthy' },
    { id: '1.2.0-crash', kind: 'servicepack', requires: '>=1.1.0 <1.2.0', payloads: ['app', 'data', 'db', 'config'], db: [3, 3], config: [4, 4], fault: 'crash' },
    { id: 'license', kind: 'license', requires: undefined, payloads: ['license'], db: null, config: null, fault: undefined },
    { id: 'trust', kind: 'trust', requires: undefined, payloads: ['trust'], db: null, config: null, fault: undefined },
  ] as const;

  it.each(table)('$id is a $kind pack of probe-app for probe-x1 with payloads $payloads', ({ id, kind, requires, payloads }) => {
    const m = manifest(id);
    expect(m).toMatchObject({ kind, product: 'probe-app', compatible: ['probe-x1'], securityVersion: 1, minAgentVersion: '0.1.0' });
    expect(m.version).toBe(id === 'license' || id === 'trust' ? '1.0.0' : id);
    expect(m.requires).toBe(requires);
    expect(m.payloads.map((p) => p.type)).toEqual(payloads);
    expect(m.encryption?.recipients.map((r) => r.label)).toEqual(['fleet']);
  });

  it.each(table.filter((r) => r.db !== null))('$id ships release.json with db $db and config $config', async ({ id, db, config, fault }) => {
    const release = await readJson(join(payloadDir(id, 'app'), 'release.json'));
    expect(release).toEqual({
      product: 'probe-app',
      version: id,
      entry: 'probe-app.cjs',
      db: { min: db![0], max: db![1] },
      config: { min: config![0], max: config![1] },
      health: { path: '/health' },
      ...(fault ? { fault } : {}),
    });
    expect(await readFile(join(payloadDir(id, 'app'), 'probe-app.cjs'))).toEqual(await readFile(await probeAppSource()));
  });

  it('creates the releases in release order, so the newest-createdAt rule never refuses an upgrade', () => {
    const times = SAMPLE_PACK_IDS.map((id) => Date.parse(manifest(id).createdAt));
    expect([...times].sort((a, b) => a - b)).toEqual(times);
    expect(new Set(times).size).toBe(times.length);
  });

  it('gives 1.0.0 the initial schema and a config template without ops', async () => {
    expect((await readdir(join(payloadDir('1.0.0', 'db'), 'migrations'))).sort()).toEqual(['0001-init.down.sql', '0001-init.up.sql']);
    expect(await readdir(payloadDir('1.0.0', 'config'))).toEqual(['config.template.json']);
    expect(await readJson(join(payloadDir('1.0.0', 'config'), 'config.template.json'))).toEqual(CONFIG_TEMPLATE_V1);
  });

  it('gives 1.1.0 migration 0002 and config ops 0002 with the collector password as a site variable', async () => {
    expect((await readdir(join(payloadDir('1.1.0', 'db'), 'migrations'))).sort()).toEqual([
      '0002-severity-alarms.down.sql',
      '0002-severity-alarms.up.sql',
    ]);
    const ops = JSON.parse(await readFile(join(payloadDir('1.1.0', 'config'), 'ops', '0002-collector-alarms.json'), 'utf8')) as { op: string }[];
    expect(ops).toContainEqual({ op: 'set', path: 'collector.password', value: '#{CollectorPassword}' });
    expect(new Set(ops.map((o) => o.op))).toEqual(new Set(['set', 'default', 'rename']));
  });

  it('makes 1.1.1 data- and config-only: no app, no db, reference targets and ops 0003', async () => {
    expect(manifest('1.1.1').payloads.some((p) => p.type === 'app' || p.type === 'db')).toBe(false);
    expect(await readdir(payloadDir('1.1.1', 'data'))).toEqual(['targets-default.json']);
    expect(await readdir(join(payloadDir('1.1.1', 'config'), 'ops'))).toEqual(['0003-reference-targets.json']);
  });

  it('lets 1.2.0 apply from 1.1.0 as well as 1.1.1: it carries ops 0003 with 0004, and migration 0003', async () => {
    for (const id of ['1.2.0-bad', '1.2.0-crash'] as const) {
      expect((await readdir(join(payloadDir(id, 'config'), 'ops'))).sort()).toEqual(['0003-reference-targets.json', '0004-schedule.json']);
      expect((await readdir(join(payloadDir(id, 'db'), 'migrations'))).sort()).toEqual([
        '0003-latency-us-sites.down.sql',
        '0003-latency-us-sites.up.sql',
      ]);
    }
  });

  it('puts a fleet-wide licence in license.spk', async () => {
    const licence = await readJson(join(payloadDir('license', 'license'), 'license.json'));
    expect(licence).toMatchObject({ licensee: expect.any(String), serial: '*', fleet: expect.any(String), features: expect.any(Array) });
    expect(Number.isNaN(Date.parse(licence.issuedAt as string))).toBe(false);
  });
});

describe('the trust pack', () => {
  it('carries the second root and a revocation list, signed by the current root, that revokes revoked-signer', async () => {
    const dir = payloadDir('trust', 'trust');
    expect(await readFile(join(dir, 'roots', 'second-root.crt'), 'utf8')).toBe(await readFile(samples.keys.secondRootCert, 'utf8'));
    const root = new X509Certificate(await readFile(samples.keys.rootCert, 'utf8'));
    const list = verifyRevocations(await readFile(join(dir, 'revocations.json'), 'utf8'), [root]);
    const revoked = new X509Certificate(await readFile(samples.keys.revokedSignerCert, 'utf8'));
    const signer = new X509Certificate(await readFile(samples.keys.signerCert, 'utf8'));
    expect([...list.serials]).toEqual([normaliseSerial(revoked.serialNumber)]);
    expect(list.serials.has(normaliseSerial(signer.serialNumber))).toBe(false);
  });

  it('once merged into a keyring, refuses packs by revoked-signer and still accepts the signer', async () => {
    const ring = join(tmp.dir, 'merged-keyring');
    await mkdir(ring);
    await copyFile(samples.keys.rootCert, join(ring, 'root.crt'));
    await copyFile(join(payloadDir('trust', 'trust'), 'roots', 'second-root.crt'), join(ring, 'second-root.crt'));
    await copyFile(join(payloadDir('trust', 'trust'), 'revocations.json'), join(ring, 'revocations.json'));
    const merged = await loadKeyring(ring);
    expect(merged.roots).toHaveLength(2);

    const src = join(tmp.dir, 'tiny');
    await mkdir(src);
    await writeFile(join(src, 'hello.txt'), 'hello\n');
    const plan = await makePlan(src, { product: 'probe-app', version: '9.9.9', compatible: ['probe-x1'] });
    const byRevoked = join(tmp.dir, 'by-revoked.spk');
    await writePack(plan, { out: byRevoked, signer: await loadSampleSigner(samples.keys, 'revoked-signer') });
    // Trusted before the trust pack arrives, refused after.
    await expect(verifyPack(await readPack(byRevoked), keyring)).resolves.toBeDefined();
    const refusal = await verifyPack(await readPack(byRevoked), merged).then(
      () => null,
      (e: unknown) => (isSondeError(e) ? e.code : e),
    );
    expect(refusal).toBe('CERT_REVOKED');
    await expect(verifyPack(await readPack(samples.packs['1.1.0']), merged)).resolves.toBeDefined();
  });
});
