import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { layoutOf } from '../../agent/src/update/layout.js';
import { setSiteVar } from '../../agent/src/update/site-vars.js';
import { SAMPLE_MODEL, SAMPLE_PRODUCT, loadSampleSigner, type SamplePaths } from '../../images/src/samples/index.js';
import { rawTar } from '../helpers/hostile-tar.js';
import { scratch, writeRawPack } from '../helpers/packs.js';
import { seedConfig } from '../helpers/probe-state.js';
import { openEngine, sharedSamples, stopApp } from '../helpers/probe.js';
import { freePort } from '../probe-app/probe-root.js';

/**
 * A payload tar that omits its parent directory entries is legal (tar writers differ). The
 * extractor creates those directories; the slot read-back after staging must count what is on
 * disk the same way, or a legal pack fails with SLOT_VERIFY_FAILED (issue 18).
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let root: string;

beforeAll(async () => {
  tmp = await scratch('sonde-implicit-dirs-');
  s = await sharedSamples(join(tmp.dir, 'samples'));
  root = join(tmp.dir, 'probe');
  await seedConfig(root, { port: await freePort(), pollMs: 40, measurements: { paused: true } });
  await setSiteVar(layoutOf(root).siteVars, 'CollectorPassword', 'implicit-dirs-secret');
}, 180_000);

afterAll(async () => {
  await stopApp(root).catch(() => undefined);
  await tmp.cleanup();
});

describe('the slot read-back', () => {
  it('accepts a data payload whose tar names only files, its parent directories implied', async () => {
    const engine = await openEngine(root, s);
    try {
      expect((await engine.install(s.packs['1.0.0'])).committed).toBe(true);
      const tar = rawTar([
        { path: 'maps/eu/paris.json', data: '{"city":"paris"}\n' },
        { path: 'maps/eu/berlin.json', data: '{"city":"berlin"}\n' },
        { path: 'readme.txt', data: 'reference data\n' },
      ]);
      const pack = join(tmp.dir, 'data-only.spk');
      await writeRawPack(pack, await loadSampleSigner(s.keys), [{ type: 'data', tar, fileCount: 3 }], {
        kind: 'servicepack',
        manifest: { product: SAMPLE_PRODUCT, version: '1.0.1', requires: '>=1.0.0 <1.0.1', compatible: [SAMPLE_MODEL], securityVersion: 1 },
      });
      const r = await engine.install(pack);
      expect(r.deployment.errorMessage).toBeNull();
      expect(r.committed).toBe(true);
      const slot = join(layoutOf(root).slotsDir, r.deployment.targetSlot!);
      expect(await readFile(join(slot, 'data', 'maps', 'eu', 'berlin.json'), 'utf8')).toBe('{"city":"berlin"}\n');
    } finally {
      engine.close();
    }
  });
});
