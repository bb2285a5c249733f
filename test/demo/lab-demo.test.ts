import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LAB_SKIP, sonde } from '../helpers/lab.js';

/**
 * `npm run demo` (the README's first command ends with it) on LXC: it must exit 0 after its last
 * step, with every probe on the new version, and say where to look.
 */
describe.skipIf(LAB_SKIP)('the demo on LXC probes', () => {
  let out = '';
  afterAll(async () => {
    await sonde(['lab', 'down', '--all', '--lab', 'demo']);
    if (out) await rm(out, { recursive: true, force: true });
  }, 120_000);

  it('starts a server and 3 probes, rolls 1.1.1 out canary first, and ends with every probe healthy on it', async () => {
    out = await mkdtemp(join(tmpdir(), 'sonde-demo-'));
    const r = await sonde(['demo', '--out', out], {}, 280_000);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toMatch(/3 probes on the stable line/);
    expect(r.stdout).toMatch(/rollout completed: canary 1\/1 committed \| wave 1 2\/2 committed/);
    expect(r.stdout).toMatch(/yes: all 3 probes committed 1\.1\.1 and report healthy/);
    // Where to look: the `sonde probes` table, every probe on 1.1.1 and healthy.
    const rows = r.stdout.split('\n').filter((l) => /^\s+demo-0\d\s+stable\s/.test(l));
    expect(rows).toHaveLength(3);
    for (const row of rows) expect(row).toMatch(/stable\s+1\.1\.1\s+ok\s+yes/);
    expect(r.stdout).toMatch(/sonde lab down --all --lab demo/);
  }, 300_000);
});
