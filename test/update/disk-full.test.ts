import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, rm, stat, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { requiredBytes } from '../../agent/src/update/policy.js';
import {
  expectWhole,
  installAnswer,
  installArgs,
  makeBaseline,
  runAgent,
  SCENARIOS,
  startActiveApp,
  stopEverything,
  type Baseline,
} from '../helpers/crash-probe.js';
import { scratch } from '../helpers/packs.js';
import { httpJson, sharedSamples, waitFor } from '../helpers/probe.js';

/**
 * A disk that runs full while staging (issue 3): the probe root lives on a small tmpfs, the free
 * disk check passes, and then `SONDE_FILL_DISK_AT=verified:persisted` fills the disk (a filler
 * file at <root>/.sonde-fill) just before the payloads are staged. The install must fail with a
 * documented code, the old release keep running, the probe stay whole and staging stay empty;
 * once the filler is gone the same install commits.
 */
const run = promisify(execFile);
const MiB = 1024 * 1024;
const TMPFS_SIZE = '48m';
const asRoot = process.getuid?.() === 0;

let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let mnt: string;
let mounted = false;
let root: string;
let filler: string;
let base: Baseline;

async function freeBytes(path: string): Promise<number> {
  const f = await statfs(path);
  return f.bavail * f.bsize;
}

beforeAll(async () => {
  if (!asRoot) return;
  tmp = await scratch('sonde-disk-full-');
  s = await sharedSamples(join(tmp.dir, 'samples'));
  mnt = join(tmp.dir, 'tmpfs');
  await mkdir(mnt);
  await run('mount', ['-t', 'tmpfs', '-o', `size=${TMPFS_SIZE}`, 'tmpfs', mnt]);
  mounted = true;
  root = join(mnt, 'probe');
  filler = join(root, '.sonde-fill');
  base = await makeBaseline(root, s, SCENARIOS.upgrade);
  await startActiveApp(root, base.port, '1.0.0');
}, 180_000);

afterAll(async () => {
  if (!asRoot) return;
  if (root) await stopEverything(root).catch(() => undefined);
  if (mounted) await run('umount', [mnt]).catch(() => run('umount', ['-l', mnt]));
  await tmp?.cleanup();
});

describe.skipIf(!asRoot && !process.env.CI)('a disk that runs full while staging (tmpfs of 48 MiB)', () => {
  it('passes the free-disk check first: the tmpfs holds the probe, the packs and the margin', async () => {
    const { readPack } = await import('../../pack/src/index.js');
    const pack = await readPack(s.packs['1.1.0']);
    const needed = requiredBytes(pack.claimedManifest(), (await stat(layoutOf(root).db)).size);
    await pack.close();
    const free = await freeBytes(root);
    console.log(`disk full: ${TMPFS_SIZE} tmpfs, ${(free / MiB).toFixed(1)} MiB free with 1.0.0 installed; installing 1.1.0 needs ${(needed / MiB).toFixed(1)} MiB`);
    expect(free).toBeGreaterThan(needed);
  });

  /**
   * Where the disk runs full: just before the payloads are staged (the point issue 3 names), while
   * the slot is written, once the old app is stopped for the database snapshot, as the switch
   * begins, and as the trial begins. Before the switch the install fails; from the switch on it
   * rolls back.
   */
  const FILL_POINTS = [
    { fillAt: 'verified:persisted', outcome: 'failed' },
    { fillAt: 'stage:payloads-extracted', outcome: 'failed' },
    { fillAt: 'stage:app-stopped', outcome: 'failed' },
    { fillAt: 'switch:persisted', outcome: 'rolled-back' },
    { fillAt: 'trial:persisted', outcome: 'rolled-back' },
  ] as const;

  it.each(FILL_POINTS)('disk filled at $fillAt: the install ends $outcome with a documented code, 1.0.0 keeps running, the probe is whole and staging empty', async ({ fillAt, outcome }) => {
    try {
      const r = await runAgent(installArgs(s, '1.1.0', root), { SONDE_FILL_DISK_AT: fillAt, SONDE_FILL_DISK_PATH: filler });
      expect(r.signal, r.stderr).toBeNull();
      expect(r.code, `${r.stdout}${r.stderr}`).toBe(1);
      const answer = installAnswer(r);
      // The filler really took the disk: what is free now is about the reserve the agent let go.
      expect((await stat(filler)).size).toBeGreaterThan(20 * MiB);
      expect(await freeBytes(root)).toBeLessThan(4 * MiB);

      expect(answer).toMatchObject({ ok: false, outcome });
      expect(['DISK_FULL', 'STAGING_WRITE_FAILED']).toContain(answer.errorCode);
      const errorsDoc = await readFile(new URL('../../docs/errors.md', import.meta.url), 'utf8');
      expect(errorsDoc).toContain(`| \`${answer.errorCode}\` |`);
      console.log(`disk full at ${fillAt}: ${answer.outcome} ${answer.errorCode}: ${answer.reason}`);

      // The old app answers (restarted by the undo when the install had stopped it).
      await waitFor('1.0.0 answering /status', async () => ((await httpJson(base.port, '/status')).body as { version: string }).version === '1.0.0');
      const whole = await expectWhole(base, root, `after the disk ran full at ${fillAt}`);
      expect(whole.on).toBe('old');
      expect(whole.last!.errorCode).toBe(answer.errorCode);
      expect(await readdir(layoutOf(root).staging).catch(() => [])).toEqual([]);
    } finally {
      await rm(filler, { force: true });
    }
  });

  it('commits the same install once the filler is deleted', async () => {
    const answer = installAnswer(await runAgent(installArgs(s, '1.1.0', root)));
    expect(answer, answer.reason ?? '').toMatchObject({ ok: true, outcome: 'committed', errorCode: null });
    const whole = await expectWhole(base, root, 'after the retry');
    expect(whole.on).toBe('new');
    await waitFor('1.1.0 answering /status', async () => ((await httpJson(base.port, '/status')).body as { version: string }).version === '1.1.0');
  });
});
