import { execFile } from 'node:child_process';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { backupDataDir } from '../../server/src/backup/backup.js';
import { restoreDataDir } from '../../server/src/backup/restore.js';
import { exportPacks, importPacks } from '../../server/src/transfer/transfer.js';
import { dataPaths } from '../../server/src/data-dir.js';
import { SqliteStore } from '../../server/src/store/sqlite-store.js';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { serverSamples, SimProbe, startTestServer, tempDir, type TestServer } from './harness.js';

/**
 * `sonde server backup` while the server runs and probes report, `restore` into a new directory,
 * and export/import of chosen packs for an air-gapped server.
 */
const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../dist/cli/src/sonde.js', import.meta.url));
let samples: SamplePaths;
let s: TestServer;
let scratch: string;

/** What a staff member sees: probes (without the moving last-seen), packs, tokens. */
async function content(t: TestServer): Promise<unknown> {
  const probes = (await t.api<Record<string, unknown>[]>('GET', '/api/v1/probes')).body.map(({ lastSeen: _l, online: _o, ...rest }) => rest);
  const packs = (await t.api<unknown[]>('GET', '/api/v1/packs')).body;
  const tokens = (await t.api<unknown[]>('GET', '/api/v1/tokens')).body;
  return { probes, packs, tokens };
}

beforeAll(async () => {
  samples = await serverSamples();
  scratch = await tempDir('sonde-backup-');
  s = await startTestServer({ keyring: samples.keys.rootCert });
  for (const id of ['1.0.0', '1.1.0', 'license'] as const) expect((await s.api('POST', '/api/v1/packs', { body: await readFile(samples.packs[id]) })).status).toBe(201);
  await s.enroll('b-1');
  await s.api('PATCH', '/api/v1/probes/b-1', { body: { channel: 'beta', addGroups: ['lab'], addTags: ['rack-3'] } });
});
afterAll(async () => {
  await s.close();
  await rm(scratch, { recursive: true, force: true });
});

describe('sonde server backup and restore', () => {
  it('backs up while the server runs and a probe keeps reporting, and restores to the same content', async () => {
    const probe = await SimProbe.connect(s.mqttUrl, await s.enroll('b-2'));
    let reporting = true;
    const reports = (async () => {
      for (let i = 0; reporting; i++) {
        await probe.state({ uptimeSeconds: i });
        await probe.event('drop-received', { message: `drop ${i}` });
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    try {
      await new Promise((r) => setTimeout(r, 200));
      const file = join(scratch, 'backup.tar');
      const { stdout } = await run(process.execPath, [CLI, 'server', 'backup', file, '--data', s.dir]);
      expect(stdout).toMatch(/3 pack\(s\)/);
      reporting = false;
      await reports;
      await s.settle();

      const restored = join(scratch, 'restored');
      await run(process.execPath, [CLI, 'server', 'restore', file, '--data', restored]);
      expect((await readdir(join(restored, 'packs'))).sort()).toEqual((await readdir(join(s.dir, 'packs'))).sort());
      // The restored server: same CA, same keyring, same packs, probes and tokens (the live one
      // has since taken more state reports, which the backup predates: compare the rest).
      const again = await startTestServer({ dataDir: restored, options: { port: 0 } });
      try {
        expect(again.admin).toBe('');
        const live = (await content(s)) as { probes: Record<string, unknown>[] };
        const copy = (await again.api<unknown>('GET', '/api/v1/probes', { token: s.admin })).body as Record<string, unknown>[];
        expect(copy.map((p) => p['id'])).toEqual(live.probes.map((p) => p['id']));
        expect(copy.find((p) => p['id'] === 'b-1')).toMatchObject({ channel: 'beta', groups: ['lab'], tags: ['rack-3'] });
        expect((await again.api('GET', '/api/v1/packs', { token: s.admin })).body).toEqual((await s.api('GET', '/api/v1/packs')).body);
        expect((await again.api('GET', '/api/v1/tokens', { token: s.admin })).body).toEqual((await s.api('GET', '/api/v1/tokens')).body);
        expect(await readFile(join(restored, 'ca', 'ca.crt'), 'utf8')).toBe(await readFile(join(s.dir, 'ca', 'ca.crt'), 'utf8'));
        // The restored server still verifies uploads against the restored keyring.
        expect((await again.api('POST', '/api/v1/packs', { token: s.admin, body: await readFile(samples.packs['1.1.1']) })).status).toBe(201);
      } finally {
        await again.close();
      }
    } finally {
      reporting = false;
      await reports.catch(() => undefined);
      await probe.close();
    }
  });

  it('restores exactly the content of a quiet server', async () => {
    await s.settle();
    const file = join(scratch, 'quiet.tar');
    await backupDataDir(s.dir, file);
    const restored = join(scratch, 'quiet');
    await restoreDataDir(file, restored);
    const again = await startTestServer({ dataDir: restored });
    try {
      const a = (await content(s)) as Record<string, unknown>;
      const b = { probes: [] as unknown[], packs: [] as unknown[], tokens: [] as unknown[] };
      b.probes = (await again.api<Record<string, unknown>[]>('GET', '/api/v1/probes', { token: s.admin })).body.map(({ lastSeen: _l, online: _o, ...rest }) => rest);
      b.packs = (await again.api<unknown[]>('GET', '/api/v1/packs', { token: s.admin })).body;
      b.tokens = (await again.api<unknown[]>('GET', '/api/v1/tokens', { token: s.admin })).body;
      expect(b).toEqual(a);
    } finally {
      await again.close();
    }
  });

  it('refuses to restore into a directory that is not empty, or from a damaged file', async () => {
    const file = join(scratch, 'quiet.tar');
    await expect(restoreDataDir(file, s.dir)).rejects.toMatchObject({ code: 'DATA_DIR_NOT_EMPTY' });
    const bytes = await readFile(file);
    // Damage a byte inside the first pack's data: the restore hashes every pack.
    const damaged = Buffer.from(bytes);
    const at = damaged.indexOf(Buffer.from('payloads/01-'), damaged.indexOf(Buffer.from('packs/'))) + 2000;
    damaged[at] = damaged[at]! ^ 0xff;
    await writeFile(join(scratch, 'damaged.tar'), damaged);
    await expect(restoreDataDir(join(scratch, 'damaged.tar'), join(scratch, 'nope'))).rejects.toMatchObject({ code: 'ARCHIVE_INVALID' });
    await expect(readdir(join(scratch, 'nope'))).rejects.toThrow();
    await writeFile(join(scratch, 'junk.tar'), 'not a tar');
    await expect(restoreDataDir(join(scratch, 'junk.tar'), join(scratch, 'nope2'))).rejects.toMatchObject({ code: 'ARCHIVE_INVALID' });
  });
});

describe('sonde server export and import', () => {
  it('carries chosen packs to another server, which verifies each against its own keyring', async () => {
    const packs = (await s.api<{ sha256: string; version: string; kind: string }[]>('GET', '/api/v1/packs')).body;
    const chosen = packs.filter((p) => p.kind !== 'license').map((p) => p.sha256);
    const file = join(scratch, 'export.tar');
    const { stdout } = await run(process.execPath, [CLI, 'server', 'export', '--data', s.dir, '--out', file, ...chosen.flatMap((c) => ['--pack', c])]);
    expect(stdout.trim().split('\n')).toHaveLength(chosen.length);

    const site = await startTestServer({ keyring: samples.keys.rootCert });
    try {
      const r = await run(process.execPath, [CLI, 'server', 'import', file, '--data', site.dir]);
      expect(r.stdout).toMatch(/imported/);
      const there = (await site.api<{ sha256: string }[]>('GET', '/api/v1/packs')).body.map((p) => p.sha256).sort();
      expect(there).toEqual([...chosen].sort());
      // Importing twice changes nothing.
      const again = await run(process.execPath, [CLI, 'server', 'import', file, '--data', site.dir]);
      expect(again.stdout).toMatch(/already present/);
    } finally {
      await site.close();
    }
  });

  it('imports nothing on a server that does not trust the packs signer', async () => {
    const file = join(scratch, 'export-all.tar');
    const paths = dataPaths(s.dir);
    const store = SqliteStore.open(paths.db);
    try {
      await exportPacks(store, paths, file, 'all');
    } finally {
      await store.close();
    }
    const other = await startTestServer({ keyring: samples.keys.secondRootCert });
    try {
      const otherPaths = dataPaths(other.dir);
      await expect(importPacks(other.server.context.store, otherPaths, file, 'test')).rejects.toMatchObject({ code: 'CHAIN_UNTRUSTED' });
      expect(await readdir(join(other.dir, 'packs'))).toEqual([]);
      expect((await other.api<unknown[]>('GET', '/api/v1/packs')).body).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it('refuses to export a pack it does not hold', async () => {
    await expect(run(process.execPath, [CLI, 'server', 'export', '--data', s.dir, '--out', join(scratch, 'x.tar'), '--pack', 'f'.repeat(64)])).rejects.toMatchObject({ code: 1 });
    await rm(join(scratch, 'x.tar'), { force: true });
  });
});
