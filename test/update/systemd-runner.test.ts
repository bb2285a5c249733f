import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SAMPLE_UNIT, SAMPLE_UNIT_FILE, type SamplePaths } from '../../images/src/samples/index.js';
import { LAB_SKIP } from '../helpers/lab.js';
import { scratch } from '../helpers/packs.js';
import { sharedSamples, FAST_HEALTH } from '../helpers/probe.js';
import { variantPack } from '../helpers/sample-variants.js';
import { startSystemdContainer, type SystemdContainer } from '../helpers/systemd-container.js';

/**
 * The systemd runner against real systemd: a container whose PID 1 is systemd 252 (the host's),
 * where `sonde agent install` runs as root. The sample releases run as the unit they ship
 * (app/systemd/probe-app.service): the upgrade story 1.0.0 -> 1.1.0 -> 1.1.1, a release whose unit
 * dies at start rolled back with its journal quoted, a move to a `process` release that removes
 * the unit, and a unit file Sonde did not install that it never replaces.
 */
const UNIT = SAMPLE_UNIT;
const ROOT = '/var/lib/sonde/probe';

/** Lays `patch` over the app's release.json (a data-only service pack has no app: nothing to do). */
async function patchRelease(appDir: string, patch: Record<string, unknown>, drop: string[] = []): Promise<boolean> {
  const path = join(appDir, 'release.json');
  let release: Record<string, unknown>;
  try {
    release = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return false;
  }
  for (const k of drop) delete release[k];
  await writeFile(path, JSON.stringify({ ...release, ...patch }, null, 2));
  return true;
}

/** The sample app's app folder, made to run as a systemd unit. */
async function asUnit(appDir: string): Promise<void> {
  if (!(await patchRelease(appDir, { runner: { type: 'systemd', units: [UNIT] } }))) return;
  await mkdir(join(appDir, 'systemd'), { recursive: true });
  await writeFile(join(appDir, 'systemd', UNIT), SAMPLE_UNIT_FILE);
}

let tmp: { dir: string; cleanup: () => Promise<void> };
let box: SystemdContainer | null = null;
let s: SamplePaths;
const packs: Record<string, string> = {};

/** A host path under the shared folder, as the container sees it. */
const inside = (hostPath: string): string => hostPath.replace(box!.shared, '/w');

async function install(pack: string): Promise<{ code: number; out: string }> {
  const health = ['--health-checks', String(FAST_HEALTH.required), '--health-interval', String(FAST_HEALTH.intervalMs), '--health-window', '6000'];
  const r = await box!.sonde(['agent', 'install', inside(pack), '--root', ROOT, '--keyring', inside(join(s.out, 'keys', 'root.crt')), '--key', inside(join(s.out, 'keys', 'fleet.key')), ...health]);
  return { code: r.code, out: r.stdout + r.stderr };
}

async function status(): Promise<Record<string, unknown>> {
  const r = await box!.sonde(['agent', 'status', '--root', ROOT, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

async function systemctl(...args: string[]): Promise<string> {
  return (await box!.exec(['systemctl', ...args])).stdout.trim();
}

/** The sample app's /status inside the container. */
async function appVersion(): Promise<string | null> {
  const r = await box!.exec(['/usr/bin/node', '-e', "fetch('http://127.0.0.1:8080/status').then((r) => r.json()).then((j) => console.log(j.version)).catch(() => console.log('none'))"]);
  const v = r.stdout.trim();
  return v === 'none' || v === '' ? null : v;
}

beforeAll(async () => {
  if (LAB_SKIP) return;
  tmp = await scratch('sonde-systemd-runner-');
  box = await startSystemdContainer(join(tmp.dir, 'box'));
  s = await sharedSamples(join(box.shared, 'samples'));
  // 1.1.0 fills the collector password into its config: the operator sets it first (read from stdin).
  const set = await box.exec(['sh', '-c', `printf 'canary-s3cret' | /usr/bin/node /opt/sonde/dist/cli/src/sonde.js agent vars set CollectorPassword --root ${ROOT}`]);
  expect(set.code, set.stderr).toBe(0);
  const dir = join(box.shared, 'packs');
  await mkdir(dir, { recursive: true });
  for (const v of ['1.0.0', '1.1.0', '1.1.1', '1.2.0-crash'] as const) packs[v] = await variantPack(s, dir, `unit-${v}`, v, { app: asUnit });
  // 1.2.0: the crashing sample's content without its fault (database 3, config 4), under each runner.
  const fixed = (version: string, unit: boolean) => async (app: string): Promise<void> => {
    await patchRelease(app, { version }, ['fault']);
    if (unit) await asUnit(app);
  };
  packs.process = await variantPack(s, dir, 'process-1.2.0', '1.2.0-crash', { recipe: { version: '1.2.0' }, app: fixed('1.2.0', false) });
  packs.unitAgain = await variantPack(s, dir, 'unit-1.2.1', '1.2.0-crash', { recipe: { version: '1.2.1', requires: '>=1.1.0 <1.3.0' }, app: fixed('1.2.1', true) });
}, 240_000);

afterAll(async () => {
  await box?.destroy();
  await tmp?.cleanup();
});

describe.skipIf(LAB_SKIP)('the systemd runner, in a container whose PID 1 is systemd', () => {
  it('runs each release of the upgrade story as the unit it ships: 1.0.0 -> 1.1.0 -> 1.1.1', async () => {
    // 1.1.1 is a data and config service pack: the 1.1.0 app runs on.
    for (const [v, app] of [['1.0.0', '1.0.0'], ['1.1.0', '1.1.0'], ['1.1.1', '1.1.0']] as const) {
      const r = await install(packs[v]!);
      expect(r.code, `${v}: ${r.out}`).toBe(0);
      expect(await systemctl('is-active', UNIT), v).toBe('active');
      expect(await appVersion(), v).toBe(app);
      const st = await status();
      expect(st, v).toMatchObject({ version: v, runner: 'systemd', app: { running: true } });
      expect((st.app as { pid: number }).pid).toBe(Number(await systemctl('show', '-p', 'MainPID', '--value', UNIT)));
    }
    expect(await systemctl('is-enabled', UNIT)).toBe('enabled');
    expect(await systemctl('show', '-p', 'ExecStart', '--value', UNIT)).toContain(`${ROOT}/slots/`);
  });

  it('rolls back a release whose unit dies at start, quoting its journal; the previous unit runs again', async () => {
    const r = await install(packs['1.2.0-crash']!);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('HEALTH_CHECK_FAILED');
    expect(r.out).toMatch(/last output: .*crash/i);
    expect(await systemctl('is-active', UNIT)).toBe('active');
    expect(await appVersion()).toBe('1.1.0');
    expect(await status()).toMatchObject({ version: '1.1.1', runner: 'systemd', lastOutcome: { outcome: 'rolled-back' } });
  });

  it('moves to a process release: the unit is stopped, disabled and its file removed', async () => {
    const r = await install(packs.process!);
    expect(r.code, r.out).toBe(0);
    expect(await systemctl('is-active', UNIT)).not.toBe('active');
    expect((await box!.exec(['test', '-e', `/etc/systemd/system/${UNIT}`])).code).not.toBe(0);
    expect(await appVersion()).toBe('1.2.0');
    expect(await status()).toMatchObject({ version: '1.2.0', runner: 'process', app: { running: true } });
  });

  it('never replaces a unit file it did not install: APP_START_FAILED, rolled back, the file untouched', async () => {
    const foreign = '[Service]\nExecStart=/bin/sleep infinity\n';
    await box!.exec(['sh', '-c', `printf '${foreign.replace(/\n/g, '\\n')}' > /etc/systemd/system/${UNIT}`]);
    const r = await install(packs.unitAgain!);
    expect(r.code).not.toBe(0);
    expect(r.out).toContain('APP_START_FAILED');
    expect((await box!.exec(['cat', `/etc/systemd/system/${UNIT}`])).stdout).toBe(foreign);
    expect(await appVersion()).toBe('1.2.0');
    expect(await status()).toMatchObject({ version: '1.2.0', runner: 'process' });
  });
});
