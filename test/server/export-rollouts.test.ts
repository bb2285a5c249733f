import { execFile } from 'node:child_process';
import { mkdir, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { serverSamples, startTestServer, tempDir, type TestServer } from './harness.js';

/**
 * `sonde server export` carries the rollout definitions of the packs it exports, and `sonde
 * server import` on a customer's server recreates them as drafts, judged against that server's
 * own probes (issue 23, "Bounded server state and honest export").
 */
const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../dist/cli/src/sonde.js', import.meta.url));
let samples: SamplePaths;
let vendor: TestServer;
let scratch: string;
const sha: Record<string, string> = {};

interface Rollout {
  id: string;
  name: string | null;
  state: string;
  packSha256: string;
  environment: string | null;
  target: unknown;
  strategy: unknown;
  windows: unknown;
  createdByName: string;
}

const waves = { canary: { probes: 1 }, waves: [50, 100], successThreshold: 0.8, errorThreshold: 0.2, advance: { mode: 'approval' }, skipCurrent: false };
const windows = [{ start: '22:00', end: '04:00', utcOffset: '+01:00', days: ['sat', 'sun'] }];

beforeAll(async () => {
  samples = await serverSamples();
  scratch = await tempDir('sonde-export-rollouts-');
  vendor = await startTestServer({ keyring: samples.keys.rootCert });
  for (const id of ['1.0.0', '1.1.0'] as const) {
    const r = await vendor.api<{ sha256: string }>('POST', '/api/v1/packs', { body: await readFile(samples.packs[id]) });
    expect(r.status).toBe(201);
    sha[id] = r.body.sha256;
  }
  for (const id of ['v-1', 'v-2', 'v-3']) {
    await vendor.enroll(id);
    await vendor.api('PATCH', `/api/v1/probes/${id}`, { body: { channel: 'beta', addGroups: ['lab'] } });
  }
  const create = async (body: Record<string, unknown>): Promise<void> => {
    const r = await vendor.api('POST', '/api/v1/rollouts', { body: { draft: true, ...body } });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
  };
  await create({ name: 'beta weekend', packSha256: sha['1.1.0'], target: { channel: 'beta' }, strategy: waves, windows });
  await create({ name: 'lab probe only', packSha256: sha['1.1.0'], target: { probeIds: ['v-2'] } });
  await create({ name: 'older pack', packSha256: sha['1.0.0'], target: { group: 'lab' } });
});
afterAll(async () => {
  await vendor.close();
  await rm(scratch, { recursive: true, force: true });
});

async function exportOf(packs: string[], file: string): Promise<void> {
  await run(process.execPath, [CLI, 'server', 'export', '--data', vendor.dir, '--out', file, ...packs.flatMap((p) => ['--pack', p])]);
}

describe('rollout definitions in an export', () => {
  it('recreates each rollout of an exported pack as a draft on the site, judged against the site\'s own probes, and only once', async () => {
    const file = join(scratch, 'with-rollouts.tar');
    await exportOf([sha['1.1.0']!], file);
    const site = await startTestServer({ keyring: samples.keys.rootCert });
    try {
      for (const id of ['site-1', 'site-2']) {
        await site.enroll(id);
        await site.api('PATCH', `/api/v1/probes/${id}`, { body: { channel: 'beta' } });
      }
      const r = await run(process.execPath, [CLI, 'server', 'import', file, '--data', site.dir]);
      expect(r.stdout).toContain('imported 1 rollouts');
      // The rollout that named a probe of the vendor's lab cannot be planned at the site: said, with its code.
      expect(r.stdout).toMatch(/\(lab probe only\) not imported: PROBE_NOT_FOUND: no probe v-2/);
      const drafted = /-> draft (ro-[0-9a-f]{12}) \(beta weekend\): start it with sonde rollout start \1/.exec(r.stdout);
      expect(drafted, r.stdout).not.toBeNull();

      const there = (await site.api<Rollout[]>('GET', '/api/v1/rollouts')).body;
      expect(there).toHaveLength(1);
      const original = (await vendor.api<Rollout[]>('GET', '/api/v1/rollouts')).body.find((x) => x.name === 'beta weekend')!;
      expect(there[0]).toMatchObject({ id: drafted![1], state: 'draft', name: 'beta weekend', packSha256: sha['1.1.0'], environment: null });
      expect({ target: there[0]!.target, strategy: there[0]!.strategy, windows: there[0]!.windows }).toEqual({ target: original.target, strategy: original.strategy, windows: original.windows });
      expect(there[0]!.createdByName).toMatch(/^import:/);
      // Planned against the site's two beta probes (canary of one, then the rest).
      const status = (await site.api<{ waves: { size: number }[] }>('GET', `/api/v1/rollouts/${drafted![1]}`)).body;
      expect(status.waves.map((w) => w.size)).toEqual([1, 1]);

      const again = await run(process.execPath, [CLI, 'server', 'import', file, '--data', site.dir]);
      expect(again.stdout).toContain('imported 0 rollouts');
      expect((await site.api<Rollout[]>('GET', '/api/v1/rollouts')).body).toHaveLength(1);
      // The draft starts like any other.
      expect((await site.api<Rollout>('POST', `/api/v1/rollouts/${drafted![1]}/start`)).body.state).toBe('running');
    } finally {
      await site.close();
    }
  });

  it('carries only the rollouts of the packs exported', async () => {
    const file = join(scratch, 'older.tar');
    await exportOf([sha['1.0.0']!], file);
    const site = await startTestServer({ keyring: samples.keys.rootCert });
    try {
      await site.enroll('site-1');
      await site.api('PATCH', '/api/v1/probes/site-1', { body: { addGroups: ['lab'] } });
      const r = await run(process.execPath, [CLI, 'server', 'import', file, '--data', site.dir]);
      expect(r.stdout).toContain('imported 1 rollouts');
      const there = (await site.api<Rollout[]>('GET', '/api/v1/rollouts')).body;
      expect(there.map((x) => x.name)).toEqual(['older pack']);
    } finally {
      await site.close();
    }
  });

  it('refuses a whole export whose rollout definitions were altered, importing no pack', async () => {
    const file = join(scratch, 'with-rollouts-2.tar');
    await exportOf([sha['1.1.0']!], file);
    const unpacked = join(scratch, 'unpacked');
    await mkdir(unpacked, { recursive: true });
    await run('tar', ['-xf', file, '-C', unpacked]);
    const manifest = JSON.parse(await readFile(join(unpacked, 'sonde-export.json'), 'utf8')) as { sections: { rollouts: { definition: { strategy: { waves: number[] } } }[] } };
    manifest.sections.rollouts[0]!.definition.strategy.waves = [100, 50];
    await writeFile(join(unpacked, 'sonde-export.json'), JSON.stringify(manifest));
    const altered = join(scratch, 'altered.tar');
    await run('tar', ['-cf', altered, '-C', unpacked, 'sonde-export.json', 'packs']);
    const site = await startTestServer({ keyring: samples.keys.rootCert });
    try {
      const r = await run(process.execPath, [CLI, 'server', 'import', altered, '--data', site.dir]).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => e,
      );
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/ARCHIVE_INVALID.*rollouts\.0\.definition\.strategy\.waves.*wave percentages must increase/);
      expect(await readdir(join(site.dir, 'packs'))).toEqual([]);
      expect((await site.api<unknown[]>('GET', '/api/v1/rollouts')).body).toEqual([]);
    } finally {
      await site.close();
    }
  });
});
