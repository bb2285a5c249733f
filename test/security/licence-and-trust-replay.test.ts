import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { layoutOf } from '../../agent/src/update/layout.js';
import { sampleLicence, type SamplePaths } from '../../images/src/samples/index.js';
import { scratch, treeDigest } from '../helpers/packs.js';
import { openEngine, sharedSamples } from '../helpers/probe.js';
import { licenceVariantPack, packCreatedAt } from '../helpers/sample-variants.js';

/**
 * Someone replays an older, genuinely signed licence pack (a smaller licence the customer once
 * had) over the newer one the probe applied. Licence and trust packs follow the release rule: a
 * pack created before the one of its kind already applied is refused (POLICY_STALE_PACK), and the
 * licence stays as it was. (An older trust pack is also refused; test/update/policy.test.ts.)
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let root: string;
const packs: Record<string, string> = {};

async function install(pack: string): ReturnType<Awaited<ReturnType<typeof openEngine>>['install']> {
  const engine = await openEngine(root, s);
  try {
    return await engine.install(pack);
  } finally {
    engine.close();
  }
}

beforeAll(async () => {
  tmp = await scratch('sonde-licence-replay-');
  s = await sharedSamples(join(tmp.dir, 'samples'));
  const created = await packCreatedAt(s.packs.license);
  // Older by a millisecond: the sample signer was issued seconds before the sample packs were made.
  const older = new Date(created.getTime() - 1);
  packs.older = await licenceVariantPack(s, join(tmp.dir, 'v'), 'older-licence', { ...sampleLicence(older), licensee: 'Old Small Licence Ltd', features: [] }, { createdAt: older });
  root = join(tmp.dir, 'probe');
}, 180_000);

afterAll(() => tmp.cleanup());

describe('a licence pack', () => {
  it('replayed over a newer one is refused with POLICY_STALE_PACK, the licence unchanged', async () => {
    const first = await install(s.packs.license);
    expect(first.committed, first.deployment.errorMessage ?? '').toBe(true);
    const licence = await treeDigest(layoutOf(root).licenseDir);

    const r = await install(packs.older!);
    expect(r.committed).toBe(false);
    expect(r.deployment).toMatchObject({ outcome: 'failed', errorCode: 'POLICY_STALE_PACK' });
    expect(await treeDigest(layoutOf(root).licenseDir)).toEqual(licence);
    expect(JSON.parse(await readFile(join(layoutOf(root).licenseDir, 'license.json'), 'utf8'))).toMatchObject({ licensee: 'Sample Networks Ltd' });
  });

  it('that is the newest of its kind is applied on a probe that never had one', async () => {
    const fresh = join(tmp.dir, 'fresh-probe');
    const engine = await openEngine(fresh, s);
    try {
      const r = await engine.install(packs.older!);
      expect(r.committed, r.deployment.errorMessage ?? '').toBe(true);
    } finally {
      engine.close();
    }
  });
});
