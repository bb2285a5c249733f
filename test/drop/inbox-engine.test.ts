import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { extractPack, loadKeyring, readPack, verifyPack } from '../../pack/src/index.js';
import { DropInbox, installWithEngine, measurePack } from '../../agent/src/drop/index.js';
import type { Engine } from '../../agent/src/update/engine.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { scratch } from '../helpers/packs.js';
import { openEngine, sharedSamples, stopApp } from '../helpers/probe.js';
import { freePort } from '../probe-app/probe-root.js';
import { eventLog, listing, receiptOf, sha256 } from './drop-fixtures.js';

/**
 * The inbox in front of the real install engine, with the real sample packs: what the engine
 * refuses lands in rejected/ with its code, what it commits in processed/, and duplicates (the
 * same bytes, or the same version in other bytes) never become a second deployment.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;

beforeAll(async () => {
  tmp = await scratch('sonde-drop-engine-');
  s = await sharedSamples(join(tmp.dir, 'samples'));
}, 180_000);

afterAll(async () => {
  await tmp.cleanup();
});

/** A probe root with its engine and inbox; the app's port is pre-seeded as an operator would. */
async function probe(name: string): Promise<{ root: string; engine: Engine; box: DropInbox; inbox: string; log: ReturnType<typeof eventLog> }> {
  const root = join(tmp.dir, name);
  await mkdir(join(root, 'etc'), { recursive: true });
  await writeFile(join(root, 'etc', 'config.json'), JSON.stringify({ port: await freePort() }));
  const engine = await openEngine(root, s);
  const log = eventLog();
  const box = new DropInbox({ root, install: installWithEngine(engine), onEvent: log.onEvent, stableMs: 0 });
  const inbox = join(layoutOf(root).state, 'inbox');
  await mkdir(inbox, { recursive: true });
  return { root, engine, box, inbox, log };
}

describe('DropInbox with the install engine: refusals', () => {
  let p: Awaited<ReturnType<typeof probe>>;
  beforeAll(async () => {
    p = await probe('fresh');
  });
  afterAll(() => p.engine.close());

  it('moves a servicepack dropped on a fresh probe to rejected/ with POLICY_NO_BASE_RELEASE and its deployment', async () => {
    const bytes = await readFile(s.packs['1.1.1']);
    await writeFile(join(p.inbox, 'sp.spk'), bytes);
    await p.box.scan();
    const rejected = join(layoutOf(p.root).state, 'rejected');
    expect(await listing(rejected)).toEqual(['sp.spk', 'sp.spk.receipt.json']);
    const r = await receiptOf(rejected, 'sp.spk');
    expect(r).toMatchObject({ outcome: 'failed', code: 'POLICY_NO_BASE_RELEASE', version: '1.1.1', sha256: sha256(bytes) });
    expect(p.engine.context.journal.get(r.deploymentId!)?.errorCode).toBe('POLICY_NO_BASE_RELEASE');
    expect(p.log.events.at(-1)).toMatchObject({ type: 'drop-rejected', code: 'POLICY_NO_BASE_RELEASE', deploymentId: r.deploymentId });
  });

  it('moves a tampered pack to rejected/ with SIGNATURE_INVALID', async () => {
    const bytes = Buffer.from(await readFile(s.packs['1.0.0']));
    bytes[1536 + 40]! ^= 0x01; // inside manifest.json
    await writeFile(join(p.inbox, 'tampered.spk'), bytes);
    await p.box.scan();
    expect(await receiptOf(join(layoutOf(p.root).state, 'rejected'), 'tampered.spk')).toMatchObject({ outcome: 'failed', code: 'SIGNATURE_INVALID' });
  });

  it('agrees with the pack reader on every cut of a real pack: truncated exactly when it reads PACK_TRUNCATED', async () => {
    const bytes = await readFile(s.packs['1.1.1']);
    const keyring = await loadKeyring(join(s.out, 'keys', 'root.crt'));
    const cutsDir = join(tmp.dir, 'cuts');
    await mkdir(cutsDir, { recursive: true });
    const disagreements: string[] = [];
    for (let at = 0; at <= bytes.length; at += at < bytes.length - 1100 ? 397 : 61) {
      const path = join(cutsDir, `cut-${at}.spk`);
      await writeFile(path, bytes.subarray(0, at));
      const mine = (await measurePack(path)).kind;
      let reader = 'whole';
      try {
        await extractPack(await verifyPack(await readPack(path), keyring), { mode: 'hash-only' });
      } catch (e) {
        reader = (e as { code?: string }).code ?? String(e);
      }
      if ((mine === 'truncated') !== (reader === 'PACK_TRUNCATED') || (mine === 'complete' && reader !== 'whole')) disagreements.push(`${at}: ${mine} vs ${reader}`);
    }
    expect(disagreements).toEqual([]);
  });
});

describe('DropInbox with the install engine: installs and duplicates', () => {
  let p: Awaited<ReturnType<typeof probe>>;
  const processed = (): string => join(layoutOf(p.root).state, 'processed');
  beforeAll(async () => {
    p = await probe('installed');
  });
  afterAll(async () => {
    p.engine.close();
    await stopApp(p.root).catch(() => undefined);
  });

  it('installs a dropped product pack and files it in processed/', async () => {
    await writeFile(join(p.inbox, 'probe-app-1.0.0.spk'), await readFile(s.packs['1.0.0']));
    await p.box.scan();
    const r = await receiptOf(processed(), 'probe-app-1.0.0.spk');
    expect(r).toMatchObject({ outcome: 'committed', code: null, version: '1.0.0' });
    expect(p.engine.context.journal.get(r.deploymentId!)?.state).toBe('committed');
    expect(p.log.types()).toEqual(['drop-received', 'drop-installed']);
  });

  it('files the same bytes dropped again as a duplicate without a new deployment', async () => {
    const before = p.engine.context.journal.history().length;
    await writeFile(join(p.inbox, 'copy-of-1.0.0.spk'), await readFile(s.packs['1.0.0']));
    await p.box.scan();
    expect(p.engine.context.journal.history()).toHaveLength(before);
    expect(await receiptOf(processed(), 'copy-of-1.0.0.spk')).toMatchObject({ outcome: 'duplicate', version: '1.0.0' });
    expect(p.log.events.at(-1)).toMatchObject({ type: 'drop-duplicate', name: 'copy-of-1.0.0.spk' });
  });

  it('files the same version in other bytes (ALREADY_INSTALLED) as a duplicate, not a rejection', async () => {
    // Trailing zero blocks after the end of the archive: a valid pack with another sha256.
    const padded = Buffer.concat([await readFile(s.packs['1.0.0']), Buffer.alloc(1024)]);
    await writeFile(join(p.inbox, 'padded.spk'), padded);
    await p.box.scan();
    const r = await receiptOf(processed(), 'padded.spk');
    expect(r).toMatchObject({ outcome: 'duplicate', code: 'ALREADY_INSTALLED', sha256: sha256(padded) });
    expect(r.deploymentId).not.toBeNull();
    expect(await listing(join(layoutOf(p.root).state, 'rejected'))).toEqual([]);
  });

  it('never hands a cut-off pack to the engine', async () => {
    const before = p.engine.context.journal.history().length;
    const bytes = await readFile(s.packs['1.1.0']);
    await writeFile(join(p.inbox, 'cut.spk'), bytes.subarray(0, Math.floor(bytes.length / 2)));
    await p.box.scan();
    await p.box.scan();
    expect(p.engine.context.journal.history()).toHaveLength(before);
    expect(p.box.status().incomplete.map((u) => u.name)).toEqual(['cut.spk']);
  });
});
