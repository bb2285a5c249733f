import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildState } from '../../agent/src/daemon/state-report.js';
import { Engine } from '../../agent/src/update/engine.js';
import { scratch } from '../helpers/packs.js';
import { freePort } from '../probe-app/probe-root.js';

/**
 * The state message's `health` asks the running app the way the health gate does: on the path
 * its release.json names (`health.path`), not on a fixed `/health`.
 */
const APP = `
const http = require('node:http');
const { port, healthPath } = JSON.parse(require('node:fs').readFileSync(process.env.PROBE_ROOT + '/etc/config.json', 'utf8'));
http.createServer((req, res) => { res.statusCode = req.url === healthPath ? 200 : 503; res.end(); }).listen(port, '127.0.0.1');
`;

/** A probe whose slot a runs an app that answers 200 on `answersOn` only; release.json names `releasePath`. */
async function probeAnswering(dir: string, answersOn: string, releasePath: string | undefined): Promise<Engine> {
  const engine = await Engine.open({ root: dir });
  const ctx = engine.context;
  const app = join(ctx.layout.slotsDir, 'a', 'app');
  await mkdir(app, { recursive: true });
  const release = { product: 'demo', version: '1.0.0', entry: 'app.cjs', db: { min: 0, max: 0 }, config: { min: 1, max: 1 }, ...(releasePath ? { health: { path: releasePath } } : {}) };
  await writeFile(join(app, 'release.json'), JSON.stringify(release));
  await writeFile(join(app, 'app.cjs'), APP);
  await symlink('slots/a', ctx.layout.current);
  await writeFile(ctx.layout.config, JSON.stringify({ configVersion: 1, port: await freePort(), healthPath: answersOn }));
  const now = new Date().toISOString();
  ctx.journal.recordRelease({ deploymentId: 'd1', product: 'demo', version: '1.0.0', securityVersion: 0, packCreatedAt: now, slot: 'a', dbVersion: null, configVersion: 1, committedAt: now });
  await ctx.runner.start(join(ctx.layout.slotsDir, 'a'));
  return engine;
}

async function healthOf(engine: Engine): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const s = await buildState(engine, 'probe-1', { waiting: 0, incomplete: 0 });
    if (s.health === 'ok' || Date.now() > deadline) return s.health;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe('buildState', () => {
  it("reports the app healthy when it answers on the path its release.json names", async () => {
    const tmp = await scratch('sonde-state-report-');
    const engine = await probeAnswering(tmp.dir, '/ready', '/ready');
    cleanups.push(async () => {
      await engine.context.runner.stop();
      engine.close();
      await tmp.cleanup();
    });
    expect(await healthOf(engine)).toBe('ok');
  });

  it('asks /health when release.json names no path, so an app answering elsewhere is degraded', async () => {
    const tmp = await scratch('sonde-state-report-');
    const engine = await probeAnswering(tmp.dir, '/ready', undefined);
    cleanups.push(async () => {
      await engine.context.runner.stop();
      engine.close();
      await tmp.cleanup();
    });
    // Give the app time to listen, then the verdict is settled.
    await new Promise((r) => setTimeout(r, 1500));
    const s = await buildState(engine, 'probe-1', { waiting: 0, incomplete: 0 });
    expect(s.appRunning).toBe(true);
    expect(s.health).toBe('degraded');
  });
});
