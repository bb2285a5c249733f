import { readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentStatus } from '../../agent/src/update/status.js';
import type { Engine } from '../../agent/src/update/engine.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { setSiteVar } from '../../agent/src/update/site-vars.js';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { scratch } from '../helpers/packs.js';
import { appStatus, fastHealthFlags, pauseApp, probeState, seedConfig, sonde, stagingLeftovers, type CliRun } from '../helpers/probe-state.js';
import { dbDigest, httpJson, openEngine, sharedSamples, stopApp, waitFor } from '../helpers/probe.js';
import { variantPack } from '../helpers/sample-variants.js';
import { freePort } from '../probe-app/probe-root.js';

/**
 * `sonde agent rollback` (run through the built CLI): back to the previous committed release while
 * its slot is whole, with the database taken down by the current release's .down.sql migrations
 * and the config the previous release ran with; refused, with the probe untouched, otherwise.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
/** 1.0.0 then 1.1.0, app writing rows. */
let root: string;
let port: number;
/** 1.0.0 only, then a 1.1.0 that raises the security floor; app paused. */
let single: string;
let singlePort: number;
let config100: string;
let securityTwo: string;

async function install(at: string, pack: string): ReturnType<Engine['install']> {
  const engine = await openEngine(at, s);
  try {
    return await engine.install(pack);
  } finally {
    engine.close();
  }
}

async function rollback(at: string, ...extra: string[]): Promise<CliRun> {
  return sonde(['agent', 'rollback', '--root', at, ...fastHealthFlags(), ...extra]);
}

async function status(at: string): Promise<AgentStatus> {
  const r = await sonde(['agent', 'status', '--root', at, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as AgentStatus;
}

type Row = { id: number; target_id: number; taken_at: string; latency_ms: number };
function measurements(at: string): Row[] {
  const db = new Database(layoutOf(at).db, { readonly: true });
  try {
    return db.prepare('SELECT id, target_id, taken_at, latency_ms FROM measurements ORDER BY id').all() as Row[];
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  tmp = await scratch('sonde-rollback-');
  s = await sharedSamples(join(tmp.dir, 'samples'));
  securityTwo = await variantPack(s, join(tmp.dir, 'variants'), 'security-two', '1.1.0', { recipe: { securityVersion: 2 } });

  root = join(tmp.dir, 'probe');
  port = await freePort();
  await seedConfig(root, { port, pollMs: 40 });
  await setSiteVar(layoutOf(root).siteVars, 'CollectorPassword', 'rollback-test-secret');
  expect((await install(root, s.packs['1.0.0'])).committed).toBe(true);
  await waitFor('rows under 1.0.0', async () => ((await appStatus(port)).measurementCount as number) > 3);
  config100 = await readFile(layoutOf(root).config, 'utf8');
  expect((await install(root, s.packs['1.1.0'])).committed).toBe(true);
  await waitFor('rows under 1.1.0', async () => {
    const st = await appStatus(port);
    return st.version === '1.1.0' && (st.measurementCount as number) > 8;
  });
  await pauseApp(root, s, port);

  single = join(tmp.dir, 'single');
  singlePort = await freePort();
  await seedConfig(single, { port: singlePort, pollMs: 40, measurements: { paused: true } });
  await setSiteVar(layoutOf(single).siteVars, 'CollectorPassword', 'rollback-test-secret');
  expect((await install(single, s.packs['1.0.0'])).committed).toBe(true);
}, 180_000);

afterAll(async () => {
  await stopApp(root).catch(() => undefined);
  await stopApp(single).catch(() => undefined);
  await tmp.cleanup();
});

describe('sonde agent rollback', () => {
  it('refuses with ROLLBACK_UNAVAILABLE when the other slot is no longer whole (status.json says bad), probe unchanged', async () => {
    const l = layoutOf(root);
    const good = await readFile(l.slotStatus, 'utf8');
    const slots = JSON.parse(good) as Record<string, { health: string; version: string | null }>;
    expect(slots.a).toEqual({ health: 'good', version: '1.0.0' });
    await writeFile(l.slotStatus, JSON.stringify({ ...slots, a: { health: 'bad', version: null } }));
    try {
      const before = await probeState(root);
      const receipts = await readdir(l.receipts);
      const r = await rollback(root);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stdout).toMatch(/^FAILED ROLLBACK_UNAVAILABLE: slot a no longer holds 1\.0\.0 whole/);
      expect(await probeState(root)).toEqual(before);
      expect(await stagingLeftovers(root)).toEqual([]);
      const added = (await readdir(l.receipts)).filter((n) => !receipts.includes(n));
      expect(added).toHaveLength(1);
      const receipt = JSON.parse(await readFile(join(l.receipts, added[0]!), 'utf8')) as { outcome: string; errorCode: string };
      expect(receipt).toMatchObject({ outcome: 'failed', errorCode: 'ROLLBACK_UNAVAILABLE' });
      expect((await appStatus(port)).version).toBe('1.1.0');
    } finally {
      await writeFile(l.slotStatus, good);
    }
  });

  it('returns 1.1.0 to 1.0.0: pointer back, database down to version 1 with its rows, the 1.0.0 config, app healthy, a new release', async () => {
    const l = layoutOf(root);
    const rowsBefore = measurements(root);
    expect(rowsBefore.length).toBeGreaterThan(8);
    expect(dbDigest(l.db).version).toBe(2);
    expect(await readlink(l.current)).toBe(join('slots', 'b'));

    const r = await rollback(root);
    expect(r.code, `${r.stdout}${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/^COMMITTED probe-app 1\.0\.0 \(rollback\) in slot a, db 1, config 1/);

    expect(await readlink(l.current)).toBe(join('slots', 'a'));
    // The .down.sql migrations ran: no alarms table, no severity column, every row still there.
    const db = new Database(l.db, { readonly: true });
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(1);
      expect(db.prepare(`SELECT name FROM sqlite_master WHERE name = 'alarms'`).get()).toBeUndefined();
      expect((db.prepare('PRAGMA table_info(measurements)').all() as { name: string }[]).map((c) => c.name)).toEqual(['id', 'target_id', 'taken_at', 'latency_ms']);
    } finally {
      db.close();
    }
    const last = rowsBefore[rowsBefore.length - 1]!.id;
    expect(measurements(root).filter((row) => row.id <= last)).toEqual(rowsBefore);
    expect(await readFile(l.config, 'utf8')).toBe(config100);

    const app = await waitFor('1.0.0 back', async () => {
      const st = await appStatus(port);
      return st.version === '1.0.0' ? st : null;
    });
    expect(app).toMatchObject({ dbVersion: 1, configVersion: 1 });
    expect((await httpJson(port, '/health')).status).toBe(200);

    const st = await status(root);
    expect(st).toMatchObject({ version: '1.0.0', appVersion: '1.0.0', slot: 'a', dbVersion: 1, configVersion: 1, app: { running: true } });
    expect(st.lastOutcome).toMatchObject({ outcome: 'committed', errorCode: null, version: '1.0.0' });
    const engine = await openEngine(root, s);
    try {
      const releases = engine.context.journal.releases();
      expect(releases.map((x) => x.version)).toEqual(['1.0.0', '1.1.0', '1.0.0']);
      expect(releases[0]).toMatchObject({ deploymentId: st.lastOutcome!.id, slot: 'a', dbVersion: 1, configVersion: 1 });
    } finally {
      engine.close();
    }
    expect(await stagingLeftovers(root)).toEqual([]);
  });

  it('refuses with ROLLBACK_UNAVAILABLE on a probe with a single release, probe unchanged', async () => {
    const l = layoutOf(single);
    const before = await probeState(single);
    const receipts = await readdir(l.receipts);
    const r = await rollback(single, '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, outcome: 'failed', errorCode: 'ROLLBACK_UNAVAILABLE' });
    expect(await probeState(single)).toEqual(before);
    expect(await stagingLeftovers(single)).toEqual([]);
    // Like any attempt, the refused rollback leaves one receipt.
    expect((await readdir(l.receipts)).filter((n) => !receipts.includes(n))).toHaveLength(1);
    expect((await appStatus(singlePort)).version).toBe('1.0.0');
  });

  it('refuses with ROLLBACK_BELOW_SECURITY_FLOOR when the previous release is below the floor, probe unchanged', async () => {
    const installed = await install(single, securityTwo);
    expect(installed.deployment.errorMessage).toBeNull();
    expect((await status(single)).securityFloor).toBe(2);
    const before = await probeState(single);
    const r = await rollback(single);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAILED ROLLBACK_BELOW_SECURITY_FLOOR: 1\.0\.0 \(securityVersion 1\) is below the probe's security floor 2/);
    expect(await probeState(single)).toEqual(before);
    expect(await stagingLeftovers(single)).toEqual([]);
    expect((await appStatus(singlePort)).version).toBe('1.1.0');
  });
});
