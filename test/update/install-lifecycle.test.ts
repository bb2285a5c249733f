import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { setSiteVar } from '../../agent/src/update/site-vars.js';
import { readStatus } from '../../agent/src/update/status.js';
import { scratch } from '../helpers/packs.js';
import { freePort } from '../probe-app/probe-root.js';
import { dbDigest, httpJson, openEngine, sharedSamples, stopApp, waitFor, wholeProbe } from '../helpers/probe.js';

/**
 * The release story of issue 3 on one probe, with the real sample app and its real database:
 * 1.0.0 -> 1.1.0 -> 1.1.1, then the bad and the crashing release roll back by themselves.
 */
const CANARY = 'canary-Zq7-site-secret';
let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let root: string;
let port: number;

async function install(id: keyof SamplePaths['packs']): Promise<Awaited<ReturnType<Awaited<ReturnType<typeof openEngine>>['install']>>> {
  const engine = await openEngine(root, s);
  try {
    return await engine.install(s.packs[id]);
  } finally {
    engine.close();
  }
}

beforeAll(async () => {
  tmp = await scratch('sonde-lifecycle-');
  s = await sharedSamples(join(tmp.dir, 'samples'));
  root = join(tmp.dir, 'probe');
  port = await freePort();
  await mkdir(join(root, 'etc'), { recursive: true });
  // The operator pre-seeds the port; the product's template fills in the rest.
  await writeFile(join(root, 'etc', 'config.json'), JSON.stringify({ port }));
  await setSiteVar(layoutOf(root).siteVars, 'CollectorPassword', CANARY);
}, 180_000);

afterAll(async () => {
  await stopApp(root).catch(() => undefined);
  await tmp.cleanup();
});

describe('install engine: the sample releases', () => {
  it('installs the 1.0.0 product on a fresh root and starts its app', async () => {
    const r = await install('1.0.0');
    expect(r.deployment.errorMessage).toBeNull();
    expect(r.committed).toBe(true);
    const st = await waitFor('app status', async () => (await httpJson(port, '/status')).body as { version: string; measurementCount: number });
    expect(st.version).toBe('1.0.0');
    await waitFor('measurements', async () => ((await httpJson(port, '/status')).body as { measurementCount: number }).measurementCount > 3);
  });

  it('migrates the rows written under 1.0.0 into 1.1.0 and fills the site variable', async () => {
    const before = new Database(layoutOf(root).db, { readonly: true });
    const rowsBefore = (before.prepare('SELECT COUNT(*) AS n FROM measurements').get() as { n: number }).n;
    before.close();
    const r = await install('1.1.0');
    expect(r.deployment.errorMessage).toBeNull();
    expect(r.committed).toBe(true);
    const db = new Database(layoutOf(root).db, { readonly: true });
    expect(db.pragma('user_version', { simple: true })).toBe(2);
    expect((db.prepare('SELECT COUNT(*) AS n FROM measurements').get() as { n: number }).n).toBeGreaterThanOrEqual(rowsBefore);
    db.close();
    const config = JSON.parse(await readFile(layoutOf(root).config, 'utf8')) as { configVersion: number; port: number; collector: { password: string } };
    expect(config.configVersion).toBe(2);
    expect(config.port).toBe(port);
    expect(config.collector.password).toBe(CANARY);
  });

  it('applies the data- and config-only 1.1.1 keeping the 1.1.0 app, rows from 1.0.0 still there', async () => {
    const r = await install('1.1.1');
    expect(r.committed).toBe(true);
    const engine = await openEngine(root, s);
    const st = await readStatus(engine.context);
    engine.close();
    expect(st.version).toBe('1.1.1');
    expect(st.appVersion).toBe('1.1.0');
    expect(st.configVersion).toBe(3);
    const db = new Database(layoutOf(root).db, { readonly: true });
    const first = db.prepare('SELECT * FROM measurements ORDER BY rowid LIMIT 1').get() as Record<string, unknown>;
    db.close();
    expect(first).toBeDefined();
  });

  it.each(['1.2.0-bad', '1.2.0-crash'] as const)('rolls %s back by itself, says why, and leaves the probe exactly as before', async (id) => {
    // Pause the app's writes through its config so the restarted old app stays paused too.
    const cfgPath = layoutOf(root).config;
    const cfg = JSON.parse(await readFile(cfgPath, 'utf8')) as Record<string, unknown>;
    cfg.measurements = { ...(cfg.measurements as object), paused: true };
    await writeFile(cfgPath, `${JSON.stringify(cfg, null, 2)}\n`);
    await stopApp(root);
    const engine = await openEngine(root, s);
    await engine.context.runner.start(join(layoutOf(root).slotsDir, (await engine.context.slots.active())!));
    engine.close();
    await waitFor('paused app', async () => ((await httpJson(port, '/status')).body as { paused: boolean }).paused);
    const before = await wholeProbe(root);

    // Every persistence point the install passes, to check that the rollback undid once.
    const trace = join(root, '..', `points-${id}.log`);
    process.env.SONDE_FAULT_TRACE = trace;
    const r = await install(id).finally(() => delete process.env.SONDE_FAULT_TRACE);
    expect(r.committed).toBe(false);
    expect(r.deployment.state).toBe('rolled-back');
    // One undo, each of its steps passed once: no second pass re-writing the pointer, the slot's
    // status or the bootloader's environment (flash a real probe wears) once the rollback is done.
    const points = (await readFile(trace, 'utf8')).split('\n').map((l) => l.split(' ').slice(3).join(' '));
    for (const step of ['rollback:app-stopped', 'rollback:pointer-restored', 'rollback:db-restored', 'rollback:config-restored', 'rollback:app-started']) {
      expect(points.filter((p) => p === step), step).toHaveLength(1);
    }
    expect(r.deployment.errorCode).toBe('HEALTH_CHECK_FAILED');
    await waitFor('old app back', async () => ((await httpJson(port, '/status')).body as { version: string }).version === '1.1.0');
    expect(await wholeProbe(root)).toEqual(before);
    const receipt = JSON.parse(await readFile(join(layoutOf(root).receipts, `${r.deployment.id}.json`), 'utf8')) as { outcome: string; errorCode: string; reason: string };
    expect(receipt).toMatchObject({ outcome: 'rolled-back', errorCode: 'HEALTH_CHECK_FAILED' });
    // A dead app's last words are quoted, so the operator reads why without logging in.
    expect(receipt.reason).toMatch(id === '1.2.0-crash' ? /the app process exited; its last output: .*crashing at start/ : /503/);
    expect(dbDigest(layoutOf(root).db).version).toBe(2);
  });
});
