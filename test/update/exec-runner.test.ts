import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scratch } from '../helpers/packs.js';
import { fastHealthFlags, seedConfig, sonde } from '../helpers/probe-state.js';
import { stopApp, waitFor } from '../helpers/probe.js';
import { freePort } from '../probe-app/probe-root.js';

/**
 * The `exec` runner with a vendor app that is not Node and not the sample: a shell service
 * (busybox httpd serving a folder) packed with `sonde pack` and installed with `sonde agent
 * install`, 1.0.0 then 2.0.0, then a 3.0.0 that dies at start and is rolled back with its last
 * words in the verdict; then a release whose command is not executable. The app gets the probe's
 * variables and the release's own environment, with placeholders filled in.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let W: string;
let R: string;
let port: number;
const packs: Record<string, string> = {};

const SERVE = `#!/bin/sh
# A shell service: the port from the probe's config, the pages from this release's www/.
port=$(sed -n 's/.*"port": *\\([0-9][0-9]*\\).*/\\1/p' "$PROBE_ROOT/etc/config.json")
printf '%s\\n' "$GREETING" > "$PROBE_SLOT/app/www/greeting"
echo "websvc $PROBE_VERSION serving on $port"
exec busybox httpd -f -p "127.0.0.1:$port" -h "$PROBE_SLOT/app/www"
`;

const DIES = `#!/bin/sh
echo "websvc $PROBE_VERSION: cannot open /dev/capture0: no such device" >&2
exit 3
`;

async function recipe(version: string, script: string | null, command: string[] = ['bin/serve']): Promise<string> {
  const src = join(W, `websvc-${version}`);
  await mkdir(join(src, 'app', 'bin'), { recursive: true });
  await mkdir(join(src, 'app', 'www'), { recursive: true });
  await writeFile(join(src, 'app', 'www', 'health'), 'ok\n');
  await writeFile(join(src, 'app', 'www', 'version'), `${version}\n`);
  if (script !== null) {
    await writeFile(join(src, 'app', 'bin', 'serve'), script);
    await chmod(join(src, 'app', 'bin', 'serve'), 0o755);
  }
  const release = {
    product: 'websvc',
    version,
    runner: { type: 'exec', command, env: { GREETING: `hello from @VERSION@ in @APP@` } },
    db: { min: 0, max: 0 },
    config: { min: 0, max: 0 },
    health: { path: '/health' },
  };
  await writeFile(join(src, 'app', 'release.json'), JSON.stringify(release, null, 2));
  await writeFile(join(src, 'pack.json'), JSON.stringify({ kind: 'product', product: 'websvc', version, compatible: ['probe-x1'], securityVersion: 0, payloads: { app: 'app' } }));
  const out = join(W, `websvc-${version}.spk`);
  const r = await sonde(['pack', src, '--sign', join(W, 'K', 'signer.key'), '--cert', join(W, 'K', 'signer.crt'), '-o', out], '', W);
  expect(r.code, r.stderr).toBe(0);
  return out;
}

async function install(pack: string): Promise<{ code: number; out: string }> {
  const r = await sonde(['agent', 'install', pack, '--root', R, '--keyring', join(W, 'K', 'root.crt'), '--model', 'probe-x1', ...fastHealthFlags(4000)], '', W);
  return { code: r.code, out: r.stdout + r.stderr };
}

async function get(path: string): Promise<string | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    return res.ok ? (await res.text()).trim() : null;
  } catch {
    return null;
  }
}

async function status(): Promise<Record<string, unknown>> {
  const r = await sonde(['agent', 'status', '--root', R, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

beforeAll(async () => {
  tmp = await scratch('sonde-exec-runner-');
  W = tmp.dir;
  R = join(W, 'probe');
  expect((await sonde(['keys', 'init-ca', '--dir', 'K'], '', W)).code).toBe(0);
  expect((await sonde(['keys', 'issue-signer', '--dir', 'K'], '', W)).code).toBe(0);
  packs.v1 = await recipe('1.0.0', SERVE);
  packs.v2 = await recipe('2.0.0', SERVE);
  packs.v3 = await recipe('3.0.0', DIES);
  packs.v4 = await recipe('4.0.0', null, ['bin/missing']);
  port = await freePort();
  await seedConfig(R, { port });
}, 120_000);

afterAll(async () => {
  await stopApp(R).catch(() => undefined);
  await tmp.cleanup();
});

describe('the exec runner', () => {
  it('runs a shell service from its release, with the probe variables and its own environment', async () => {
    const r = await install(packs.v1!);
    expect(r.code, r.out).toBe(0);
    expect(await waitFor('1.0.0 answers', () => get('/version'))).toBe('1.0.0');
    expect(await get('/greeting')).toBe(`hello from 1.0.0 in ${join(R, 'slots', (await status()).slot as string, 'app')}`);
    expect(await status()).toMatchObject({ version: '1.0.0', runner: 'exec', app: { running: true } });
  });

  it('upgrades it: the old service is stopped and the new one answers', async () => {
    const r = await install(packs.v2!);
    expect(r.code, r.out).toBe(0);
    expect(await get('/version')).toBe('2.0.0');
    expect(await status()).toMatchObject({ version: '2.0.0', runner: 'exec', app: { running: true } });
  });

  it('rolls back a release that dies at start, quoting what it said, and 2.0.0 serves again', async () => {
    const r = await install(packs.v3!);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('HEALTH_CHECK_FAILED');
    expect(r.out).toContain('cannot open /dev/capture0');
    expect(await waitFor('2.0.0 answers again', () => get('/version'))).toBe('2.0.0');
    expect(await status()).toMatchObject({ version: '2.0.0', runner: 'exec', lastOutcome: { outcome: 'rolled-back' } });
  });

  it('refuses a release whose command is not an executable of the release: APP_START_FAILED, rolled back', async () => {
    const r = await install(packs.v4!);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('APP_START_FAILED');
    expect(await waitFor('2.0.0 answers again', () => get('/version'))).toBe('2.0.0');
    expect(JSON.parse(await readFile(join(R, 'var', 'sonde', 'runner.json'), 'utf8'))).toMatchObject({ type: 'exec', version: '2.0.0' });
  });
});

describe('the sample upgrade story under the exec runner', () => {
  it('1.0.0 -> 1.1.0 -> 1.1.1 run as `@NODE@ probe-app.cjs`, and the unhealthy 1.2.0 is rolled back', async () => {
    const { sharedSamples, openEngine, httpJson, stopApp: stop } = await import('../helpers/probe.js');
    const { variantPack } = await import('../helpers/sample-variants.js');
    const { setSiteVar } = await import('../../agent/src/update/site-vars.js');
    const { layoutOf } = await import('../../agent/src/update/layout.js');
    const s = await sharedSamples(join(W, 'samples'));
    const asExec = async (app: string): Promise<void> => {
      const path = join(app, 'release.json');
      const release = JSON.parse(await readFile(path, 'utf8').catch(() => 'null')) as Record<string, unknown> | null;
      if (release) await writeFile(path, JSON.stringify({ ...release, runner: { type: 'exec', command: ['@NODE@', 'probe-app.cjs'], stopTimeoutMs: 3000 } }));
    };
    const root = join(W, 'sample-probe');
    const samplePort = await freePort();
    await seedConfig(root, { port: samplePort });
    await setSiteVar(layoutOf(root).siteVars, 'CollectorPassword', 'exec-story-secret');
    try {
      for (const [v, app] of [['1.0.0', '1.0.0'], ['1.1.0', '1.1.0'], ['1.1.1', '1.1.0']] as const) {
        const engine = await openEngine(root, s);
        try {
          const r = await engine.install(await variantPack(s, join(W, 'variants'), `exec-${v}`, v, { app: asExec }));
          expect(r.committed, `${v}: ${r.deployment.errorMessage}`).toBe(true);
        } finally {
          engine.close();
        }
        expect(await waitFor(`${app} answers`, async () => ((await httpJson(samplePort, '/status').catch(() => ({ body: {} }))).body as { version?: string }).version === app)).toBe(true);
      }
      const engine = await openEngine(root, s);
      try {
        const bad = await engine.install(await variantPack(s, join(W, 'variants'), 'exec-bad', '1.2.0-bad', { app: asExec }));
        expect(bad.deployment).toMatchObject({ outcome: 'rolled-back', errorCode: 'HEALTH_CHECK_FAILED' });
      } finally {
        engine.close();
      }
      expect(await waitFor('1.1.0 answers again', async () => ((await httpJson(samplePort, '/status').catch(() => ({ body: {} }))).body as { version?: string }).version === '1.1.0')).toBe(true);
      const st = await sonde(['agent', 'status', '--root', root, '--json']);
      expect(JSON.parse(st.stdout)).toMatchObject({ version: '1.1.1', runner: 'exec', app: { running: true } });
    } finally {
      await stop(root);
    }
  }, 120_000);
});
