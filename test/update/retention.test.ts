import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EngineOptions } from '../../agent/src/update/context.js';
import { layoutOf, slotDir, type SlotName } from '../../agent/src/update/layout.js';
import { setSiteVar } from '../../agent/src/update/site-vars.js';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { scratch, treeDigest } from '../helpers/packs.js';
import { appStatus, seedConfig } from '../helpers/probe-state.js';
import { openEngine, sharedSamples, stopApp, waitFor } from '../helpers/probe.js';
import { variantPack } from '../helpers/sample-variants.js';
import { freePort } from '../probe-app/probe-root.js';

/**
 * Retention (DESIGN.md, "Retention"): after months of installs a probe keeps the previous slot, the
 * last N snapshots and receipts, and nothing older, so the free-disk check never blocks updates.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let root: string;
let port: number;
const packs: Record<string, string> = {};
/** Deployment ids in the order they ran, and the slot trees as each commit left them. */
const attempts: { id: string; version: string; committed: boolean; switched: boolean }[] = [];
const slotTrees: Record<string, Record<string, string>> = {};

async function install(pack: string, extra: Partial<EngineOptions> = {}): Promise<void> {
  const engine = await openEngine(root, s, extra);
  try {
    const r = await engine.install(pack);
    const d = r.deployment;
    attempts.push({ id: d.id, version: d.toVersion ?? '?', committed: r.committed, switched: r.committed && d.targetSlot !== null });
    if (r.committed && d.targetSlot) slotTrees[d.targetSlot] = await treeDigest(slotDir(layoutOf(root), d.targetSlot));
  } finally {
    engine.close();
  }
}

const listing = async (dir: string): Promise<string[]> => (await readdir(dir)).sort();

beforeAll(async () => {
  tmp = await scratch('sonde-retention-');
  s = await sharedSamples(join(tmp.dir, 'samples'));
  const v = join(tmp.dir, 'variants');
  packs['1.1.2'] = await variantPack(s, v, '1.1.2', '1.1.1', { recipe: { version: '1.1.2', requires: '>=1.1.1 <1.1.2' } });
  packs['1.1.3'] = await variantPack(s, v, '1.1.3', '1.1.1', { recipe: { version: '1.1.3', requires: '>=1.1.2 <1.1.3' } });
  packs['1.1.4'] = await variantPack(s, v, '1.1.4', '1.1.1', { recipe: { version: '1.1.4', requires: '>=1.1.3 <1.1.4' } });
  root = join(tmp.dir, 'probe');
  port = await freePort();
  await seedConfig(root, { port, pollMs: 40, measurements: { paused: true } });
  await setSiteVar(layoutOf(root).siteVars, 'CollectorPassword', 'retention-test-secret');
}, 180_000);

afterAll(async () => {
  await stopApp(root).catch(() => undefined);
  await tmp.cleanup();
});

describe('retention', () => {
  it('keeps only the last 3 receipts and snapshots (the default) after seven attempts, five of them switches', async () => {
    // Refusals in between, run back to back with installs: ids made within one second must still sort by time.
    for (const pack of [s.packs['1.0.0'], s.packs['1.1.0'], s.packs['1.1.0'], s.packs['1.1.1'], packs['1.1.2']!, packs['1.1.2']!, packs['1.1.3']!]) await install(pack);
    expect(attempts.map((a) => `${a.version}:${a.committed ? 'ok' : 'refused'}`)).toEqual([
      '1.0.0:ok',
      '1.1.0:ok',
      '1.1.0:refused',
      '1.1.1:ok',
      '1.1.2:ok',
      '1.1.2:refused',
      '1.1.3:ok',
    ]);
    const l = layoutOf(root);
    expect(await listing(l.receipts)).toEqual(attempts.slice(-3).map((a) => `${a.id}.json`).sort());
    expect(await listing(l.snapshots)).toEqual(attempts.filter((a) => a.switched).slice(-3).map((a) => a.id).sort());
  });

  it('keeps the previous slot whole: the release before, file for file, marked good, and a rollback to it works', async () => {
    const engine = await openEngine(root, s);
    try {
      const active = (await engine.context.slots.active())!;
      const previous: SlotName = active === 'a' ? 'b' : 'a';
      expect(await engine.context.slots.info(previous)).toEqual({ name: previous, health: 'good', version: '1.1.2' });
      expect(await treeDigest(slotDir(layoutOf(root), previous))).toEqual(slotTrees[previous]);
      const r = await engine.rollback();
      expect(r.deployment.errorMessage).toBeNull();
      expect(r.committed).toBe(true);
      expect(await engine.context.slots.active()).toBe(previous);
    } finally {
      engine.close();
    }
    await waitFor('the 1.1.0 app of 1.1.2', async () => (await appStatus(port)).configVersion === 3);
  });

  it('honours a smaller retain given as an Engine option', async () => {
    attempts.length = 0;
    await install(packs['1.1.3']!, { retain: 2 });
    await install(packs['1.1.4']!, { retain: 2 });
    expect(attempts.map((a) => a.committed)).toEqual([true, true]);
    const l = layoutOf(root);
    expect(await listing(l.receipts)).toEqual(attempts.map((a) => `${a.id}.json`).sort());
    expect(await listing(l.snapshots)).toEqual(attempts.map((a) => a.id).sort());
  });
});
