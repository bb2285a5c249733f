import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../agent/src/update/engine.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { receiptOf } from '../../agent/src/update/receipts.js';
import { setSiteVar } from '../../agent/src/update/site-vars.js';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { scratch } from '../helpers/packs.js';
import { pauseApp, seedConfig } from '../helpers/probe-state.js';
import { httpJson, openEngine, sharedSamples, stopApp, waitFor, wholeProbe } from '../helpers/probe.js';
import { variantPack } from '../helpers/sample-variants.js';
import { freePort } from '../probe-app/probe-root.js';

/**
 * Deployment hooks (issue 19; docs/probe-layout.md, "Hooks"): each runs at its step with the
 * documented environment, its failure does what its step says, its output is in the receipt with
 * every site-variable value masked. (The crash matrix kills the agent before and after each.)
 */
const CANARY = 'canary-hook-Zq8-site-secret';

/** A hook that records its step and environment, prints the probe's filled config (which holds the canary), and exits `code`. */
const hook = (code = 0, extra = ''): string => `#!/bin/sh
echo "$SONDE_HOOK $SONDE_OLD_VERSION->$SONDE_NEW_VERSION vars=$SONDE_SITE_VARS" >> "$SONDE_PROBE_ROOT/hooks.log"
${extra}
cat "\${SONDE_CONFIG_COPY:-$SONDE_PROBE_ROOT/etc/config.json}"
echo "$SONDE_HOOK says done"
exit ${code}
`;

const ALL_OK = { 'pre-install': hook(), migrate: hook(0, 'test -f "$SONDE_DB_COPY" && test -f "$SONDE_CONFIG_COPY" && echo "copies at $SONDE_STAGING"'), 'post-switch': hook(), 'post-commit': hook(), 'on-rollback': hook() };

let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let n = 0;

async function probeOn100(): Promise<{ root: string; port: number }> {
  const root = join(tmp.dir, `probe-${++n}`);
  const port = await freePort();
  await seedConfig(root, { port });
  await setSiteVar(layoutOf(root).siteVars, 'CollectorPassword', CANARY);
  const r = await install(root, s.packs['1.0.0']);
  expect(r.committed).toBe(true);
  // The app's writes paused, so that the database can be compared byte for byte before and after.
  await pauseApp(root, s, port);
  return { root, port };
}

async function install(root: string, pack: string): ReturnType<Engine['install']> {
  const engine = await openEngine(root, s);
  try {
    return await engine.install(pack);
  } finally {
    engine.close();
  }
}

async function receipt(root: string, id: string): Promise<ReturnType<typeof receiptOf>> {
  return JSON.parse(await readFile(join(layoutOf(root).receipts, `${id}.json`), 'utf8')) as ReturnType<typeof receiptOf>;
}

const hooksLog = async (root: string): Promise<string[]> => (await readFile(join(root, 'hooks.log'), 'utf8').catch(() => '')).trim().split('\n').filter(Boolean);

const roots: string[] = [];
beforeAll(async () => {
  tmp = await scratch('sonde-hooks-');
  s = await sharedSamples(join(tmp.dir, 'samples'));
}, 120_000);

afterAll(async () => {
  for (const r of roots) await stopApp(r).catch(() => undefined);
  await tmp.cleanup();
});

describe('deployment hooks', () => {
  it('run once each at their step, with the documented environment, their output in the receipt with site variables masked', async () => {
    const { root, port } = await probeOn100();
    roots.push(root);
    const pack = await variantPack(s, tmp.dir, 'hooks-ok', '1.1.0', { hooks: ALL_OK });
    const r = await install(root, pack);
    expect(r.committed, r.deployment.errorMessage ?? '').toBe(true);
    expect(await hooksLog(root)).toEqual([
      'pre-install 1.0.0->1.1.0 vars=CollectorPassword',
      'migrate 1.0.0->1.1.0 vars=CollectorPassword',
      'post-switch 1.0.0->1.1.0 vars=CollectorPassword',
      'post-commit 1.0.0->1.1.0 vars=CollectorPassword',
    ]);
    const rec = await receipt(root, r.deployment.id);
    expect(rec.hooks.map((h) => [h.hook, h.exitCode])).toEqual([['pre-install', 0], ['migrate', 0], ['post-switch', 0], ['post-commit', 0]]);
    expect(rec.hooks.find((h) => h.hook === 'migrate')!.output).toContain('copies at ');
    // 1.1.0's config holds the collector password: every hook printed it, no receipt shows it.
    expect(rec.hooks.find((h) => h.hook === 'post-switch')!.output).toContain('********');
    expect(JSON.stringify(rec)).not.toContain(CANARY);
    expect((await httpJson(port, '/status')).body).toMatchObject({ version: '1.1.0' });
  });

  it('a failing pre-install refuses the pack with HOOK_FAILED and leaves the probe as it was', async () => {
    const { root } = await probeOn100();
    roots.push(root);
    const before = await wholeProbe(root);
    const pack = await variantPack(s, tmp.dir, 'hooks-pre', '1.1.0', { hooks: { ...ALL_OK, 'pre-install': hook(4, 'echo "not enough room for the capture buffers"') } });
    const r = await install(root, pack);
    expect(r.deployment).toMatchObject({ outcome: 'failed', errorCode: 'HOOK_FAILED' });
    expect(r.deployment.errorMessage).toMatch(/^the pre-install hook exited 4: .*pre-install says done/);
    expect(await hooksLog(root)).toEqual(['pre-install 1.0.0->1.1.0 vars=CollectorPassword']);
    expect(await wholeProbe(root)).toEqual(before);
  });

  it('a failing migrate fails the install before the switch, probe whole on 1.0.0', async () => {
    const { root } = await probeOn100();
    roots.push(root);
    const before = await wholeProbe(root);
    const pack = await variantPack(s, tmp.dir, 'hooks-migrate', '1.1.0', { hooks: { ...ALL_OK, migrate: hook(2) } });
    const r = await install(root, pack);
    expect(r.deployment).toMatchObject({ outcome: 'failed', errorCode: 'HOOK_FAILED' });
    expect(await hooksLog(root)).toEqual(['pre-install 1.0.0->1.1.0 vars=CollectorPassword', 'migrate 1.0.0->1.1.0 vars=CollectorPassword']);
    expect(await wholeProbe(root)).toEqual(before);
    expect(JSON.stringify(await receipt(root, r.deployment.id))).not.toContain(CANARY);
  });

  it('a failing post-switch rolls back, the release runs its on-rollback, and 1.0.0 serves again', async () => {
    const { root, port } = await probeOn100();
    roots.push(root);
    const pack = await variantPack(s, tmp.dir, 'hooks-switch', '1.1.0', { hooks: { ...ALL_OK, 'post-switch': hook(5) } });
    const r = await install(root, pack);
    expect(r.deployment).toMatchObject({ outcome: 'rolled-back', errorCode: 'HOOK_FAILED' });
    expect((await hooksLog(root)).map((l) => l.split(' ')[0])).toEqual(['pre-install', 'migrate', 'post-switch', 'on-rollback']);
    expect(await waitFor('1.0.0 serves', async () => ((await httpJson(port, '/status')).body as { version?: string }).version === '1.0.0')).toBe(true);
    expect((await receipt(root, r.deployment.id)).hooks.map((h) => [h.hook, h.exitCode])).toEqual([['pre-install', 0], ['migrate', 0], ['post-switch', 5], ['on-rollback', 0]]);
  });

  it('a failing post-commit is in the receipt and the release stays committed', async () => {
    const { root } = await probeOn100();
    roots.push(root);
    const pack = await variantPack(s, tmp.dir, 'hooks-commit', '1.1.0', { hooks: { ...ALL_OK, 'post-commit': hook(3) } });
    const r = await install(root, pack);
    expect(r.committed).toBe(true);
    expect(r.deployment.errorCode).toBeNull();
    expect((await receipt(root, r.deployment.id)).hooks.find((h) => h.hook === 'post-commit')).toMatchObject({ exitCode: 3 });
  });

  it('a hook past its timeout (hooks.json) is killed, with what it said, and refuses the pack', async () => {
    const { root } = await probeOn100();
    roots.push(root);
    const slow = `#!/bin/sh\necho "waiting for the capture card"\nsleep 30\n`;
    const pack = await variantPack(s, tmp.dir, 'hooks-slow', '1.1.0', { hooks: { 'pre-install': slow, 'hooks.json': JSON.stringify({ 'pre-install': { timeoutMs: 500 } }) } });
    const t0 = Date.now();
    const r = await install(root, pack);
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(r.deployment).toMatchObject({ outcome: 'failed', errorCode: 'HOOK_FAILED' });
    expect(r.deployment.errorMessage).toMatch(/pre-install hook was killed by SIGKILL \(timeout\): waiting for the capture card/);
  });
});
