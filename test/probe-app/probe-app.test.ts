import { existsSync } from 'node:fs';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { REFERENCE_TARGETS } from '../../images/src/samples/index.js';
import { scratch } from '../helpers/packs.js';
import {
  dbDigest,
  http,
  killAll,
  prepareProbeRoot,
  releaseFor,
  sleep,
  startApp,
  statusCount,
  TEST_POLL_MS,
  waitFor,
  waitUp,
  type ProbeRoot,
} from './probe-root.js';

/**
 * The sample probe app, run for real: a child process on a probe root prepared by hand, with a
 * real SQLite database. What the install engine relies on: health, refusing an unsupported
 * database or config, pausing writes so that bytes can be compared, the busy inhibit, SIGTERM.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let n = 0;
const root = (): string => join(tmp.dir, `root-${++n}`);
/** A few poll periods: long enough for several writes if writes were happening. */
const QUIET_MS = TEST_POLL_MS * 6;

beforeAll(async () => {
  tmp = await scratch('sonde-probe-app-');
});
afterEach(() => killAll());
afterAll(() => tmp.cleanup());

async function countGrows(p: ProbeRoot, from: number): Promise<number> {
  return waitFor('more measurements', async () => {
    const c = statusCount((await http(p.port, '/status')).body);
    return c > from ? c : undefined;
  });
}

describe('probe-app health and licence', () => {
  it('answers /health 200 in evaluation mode when no licence is installed', async () => {
    const p = await prepareProbeRoot(root());
    const app = startApp(p);
    const status = await waitUp(p, app);
    expect(status).toMatchObject({ product: 'probe-app', version: '1.0.0', dbVersion: 1, configVersion: 1, mode: 'evaluation', paused: false });
    expect(status.pid).toBe(app.child.pid);
    const health = await http(p.port, '/health');
    expect(health.status).toBe(200);
    expect(health.body).toMatchObject({ status: 'ok', mode: 'evaluation' });
    expect(app.stdout()).toMatch(/"event":"evaluation-mode"/);
  });

  it('runs licensed and names the licensee when a licence is installed', async () => {
    const p = await prepareProbeRoot(root(), { licence: { licensee: 'Acme Networks', serial: '*', features: ['alarms'], issuedAt: new Date().toISOString() } });
    const app = startApp(p);
    expect(await waitUp(p, app)).toMatchObject({ mode: 'licensed', licensee: 'Acme Networks' });
    expect((await http(p.port, '/health')).body).toMatchObject({ status: 'ok', mode: 'licensed' });
    expect(app.stdout()).not.toMatch(/evaluation-mode/);
  });

  it('picks up a licence installed while it runs, without a restart', async () => {
    const p = await prepareProbeRoot(root());
    const app = startApp(p);
    expect(await waitUp(p, app)).toMatchObject({ mode: 'evaluation' });
    await mkdir(join(p.root, 'license'), { recursive: true });
    await writeFile(join(p.root, 'license', 'license.json'), JSON.stringify({ licensee: 'Late Ltd', serial: '*', features: [], issuedAt: '2025-01-01T00:00:00Z' }));
    expect((await http(p.port, '/status')).body).toMatchObject({ mode: 'licensed', licensee: 'Late Ltd' });
  });
});

describe('probe-app measurements', () => {
  it('writes a measurement row per target on every poll', async () => {
    const p = await prepareProbeRoot(root());
    const app = startApp(p);
    const first = statusCount(await waitUp(p, app));
    await countGrows(p, first + 6);
    app.child.kill('SIGTERM');
    await app.exited;
    const db = new Database(p.db, { readonly: true });
    const rows = db.prepare('SELECT target_id, latency_ms FROM measurements').all() as { target_id: number; latency_ms: number }[];
    db.close();
    expect(rows.length).toBeGreaterThan(6);
    expect(new Set(rows.map((r) => r.target_id))).toEqual(new Set([1, 2, 3]));
    expect(rows.every((r) => r.latency_ms >= 0 && r.latency_ms < 100)).toBe(true);
  });

  it('stops writing on SIGUSR1 (database bytes unchanged) and resumes on SIGUSR2', async () => {
    const p = await prepareProbeRoot(root());
    const app = startApp(p);
    await countGrows(p, statusCount(await waitUp(p, app)));
    app.child.kill('SIGUSR1');
    const paused = await waitFor('paused', async () => {
      const s = (await http(p.port, '/status')).body;
      return s.paused === true ? s : undefined;
    });
    const before = await dbDigest(p);
    await sleep(QUIET_MS);
    expect(await dbDigest(p)).toBe(before);
    expect(statusCount((await http(p.port, '/status')).body)).toBe(statusCount(paused));
    app.child.kill('SIGUSR2');
    await countGrows(p, statusCount(paused));
    expect((await http(p.port, '/status')).body.paused).toBe(false);
  });

  it('starts paused when config.json says measurements.paused, and writes nothing', async () => {
    const p = await prepareProbeRoot(root(), { config: { measurements: { paused: true } } });
    const app = startApp(p);
    expect(await waitUp(p, app)).toMatchObject({ paused: true, measurementCount: 0 });
    const before = await dbDigest(p);
    await sleep(QUIET_MS);
    expect(await dbDigest(p)).toBe(before);
    expect(statusCount((await http(p.port, '/status')).body)).toBe(0);
  });

  // What each schema version gets written, so that a migration applied wrongly shows.
  const schemas = [
    { dbVersion: 1, release: releaseFor('1.0.0'), configVersion: 1, columns: ['latency_ms'], alarms: false },
    { dbVersion: 2, release: releaseFor('1.1.0'), configVersion: 2, columns: ['latency_ms', 'severity'], alarms: true },
    { dbVersion: 3, release: releaseFor('1.2.0-bad'), configVersion: 4, columns: ['latency_us', 'severity'], alarms: true },
  ];
  it.each(schemas)('writes the columns of database version $dbVersion', async ({ dbVersion, release, configVersion, columns, alarms }) => {
    const { fault: _none, ...healthy } = release;
    const p = await prepareProbeRoot(root(), { dbVersion, release: healthy, config: { configVersion, alarms: { warningMs: 20, criticalMs: 60 } } });
    const app = startApp(p);
    await countGrows(p, statusCount(await waitUp(p, app)) + 9);
    const status = (await http(p.port, '/status')).body;
    if (alarms) expect(status.alarmCount as number).toBeGreaterThan(0);
    else expect(status).not.toHaveProperty('alarmCount');
    app.child.kill('SIGTERM');
    expect((await app.exited).code).toBe(0);
    const db = new Database(p.db, { readonly: true });
    const row = db.prepare('SELECT * FROM measurements ORDER BY id DESC LIMIT 1').get() as Record<string, unknown>;
    db.close();
    for (const c of columns) expect(row[c]).not.toBeNull();
    if (dbVersion === 3) expect(Number.isInteger(row.latency_us)).toBe(true);
  });

  it('adds the reference targets of the slot data named by config (1.1.1)', async () => {
    const p = await prepareProbeRoot(root(), {
      dbVersion: 2,
      release: releaseFor('1.1.0'),
      config: { configVersion: 3, targets: { referenceFile: 'targets-default.json' } },
      slotData: { 'targets-default.json': REFERENCE_TARGETS },
    });
    const app = startApp(p);
    expect(await waitUp(p, app)).toMatchObject({ configVersion: 3, targetCount: 3 + REFERENCE_TARGETS.length });
  });
});

describe('probe-app refuses to start outside its supported versions', () => {
  const refusals = [
    { what: 'a database version above its range', opts: { userVersion: 2 }, stderr: /database version 2 .*1\.\.1/ },
    { what: 'a database version below its range', opts: { release: releaseFor('1.1.0'), config: { configVersion: 2 } }, stderr: /database version 1 .*2\.\.2/ },
    { what: 'a config version outside its range', opts: { config: { configVersion: 2 } }, stderr: /configVersion 2 .*1\.\.1/ },
    { what: 'a config without configVersion', opts: { config: { configVersion: undefined } }, stderr: /configVersion null .*1\.\.1/ },
    { what: 'a missing database', opts: { noDatabase: true }, stderr: /database .*probe\.db is missing/ },
  ];
  it.each(refusals)('exits 3 with one line on stderr on $what', async ({ opts, stderr }) => {
    const p = await prepareProbeRoot(root(), opts);
    const before = opts.noDatabase ? null : await dbDigest(p);
    const app = startApp(p);
    expect((await app.exited).code).toBe(3);
    const lines = app.stderr().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(stderr);
    expect(lines[0]).toMatch(/supported/);
    // A refused start leaves the database as it was.
    if (before !== null) expect(await dbDigest(p)).toBe(before);
    else expect(existsSync(p.db)).toBe(false);
  });
});

describe('probe-app test faults', () => {
  it('answers /health 503 with fault "unhealthy"', async () => {
    const p = await prepareProbeRoot(root(), { release: releaseFor('1.0.0', { fault: 'unhealthy' }) });
    const app = startApp(p);
    expect(await waitUp(p, app)).toMatchObject({ fault: 'unhealthy' });
    const health = await http(p.port, '/health');
    expect(health.status).toBe(503);
    expect(health.body.status).toBe('unhealthy');
  });

  it('exits 1 at once with fault "crash", before it listens or touches the database', async () => {
    const p = await prepareProbeRoot(root(), { release: releaseFor('1.0.0', { fault: 'crash' }) });
    const before = await dbDigest(p);
    const started = Date.now();
    const app = startApp(p);
    expect((await app.exited).code).toBe(1);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(app.stdout()).not.toMatch(/"event":"listening"/);
    expect(await dbDigest(p)).toBe(before);
  });
});

describe('probe-app busy inhibit', () => {
  it('creates run/inhibit with the reason on POST /busy and removes it on POST /idle', async () => {
    const p = await prepareProbeRoot(root());
    const inhibit = join(p.root, 'run', 'inhibit');
    const app = startApp(p);
    await waitUp(p, app);
    expect(existsSync(inhibit)).toBe(false);
    expect((await http(p.port, '/busy', 'POST', 'nightly export')).body).toMatchObject({ busy: true });
    expect((await readFile(inhibit, 'utf8')).trim()).toBe('nightly export');
    expect((await http(p.port, '/status')).body.busy).toBe(true);
    await http(p.port, '/idle', 'POST');
    expect(existsSync(inhibit)).toBe(false);
  });

  it('holds the inhibit while config "busy" is set, and drops it when it stops', async () => {
    const p = await prepareProbeRoot(root(), { config: { busy: 'calibrating' } });
    const inhibit = join(p.root, 'run', 'inhibit');
    const app = startApp(p);
    expect(await waitUp(p, app)).toMatchObject({ busy: true });
    expect((await readFile(inhibit, 'utf8')).trim()).toBe('calibrating');
    app.child.kill('SIGTERM');
    expect((await app.exited).code).toBe(0);
    expect(existsSync(inhibit)).toBe(false);
  });
});

describe('probe-app shutdown', () => {
  it('exits 0 on SIGTERM with the database closed cleanly', async () => {
    const p = await prepareProbeRoot(root());
    const app = startApp(p);
    await countGrows(p, statusCount(await waitUp(p, app)));
    app.child.kill('SIGTERM');
    expect(await app.exited).toEqual({ code: 0, signal: null });
    // Closing the last connection checkpoints the WAL and removes it.
    expect(existsSync(`${p.db}-wal`)).toBe(false);
    expect(app.stdout()).toMatch(/"event":"stopped"/);
    const db = new Database(p.db, { readonly: true });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    db.close();
  });
});
