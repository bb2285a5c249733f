import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { treeDigest } from './packs.js';
import { FAST_HEALTH, httpJson, openEngine, stopApp, waitFor, wholeProbe } from './probe.js';

/**
 * More of a probe than wholeProbe() compares, for refusals that must leave it exactly as it was:
 * also both slots file by file, the slot pointer, slot health, the keyring and the licence.
 */
export async function probeState(root: string): Promise<Record<string, unknown>> {
  const l = layoutOf(root);
  return {
    ...(await wholeProbe(root)),
    current: await readlink(l.current).catch(() => null),
    slotStatus: await readFile(l.slotStatus, 'utf8').catch(() => null),
    slots: await treeDigest(l.slotsDir),
    keyring: await treeDigest(l.keyring).catch(() => null),
    licence: await readFile(join(l.licenseDir, 'license.json'), 'utf8').catch(() => null),
    probeIdentity: await readFile(l.probeIdentity, 'utf8').catch(() => null),
  };
}

/** What an install left in <state>/staging (nothing, after any outcome). */
export async function stagingLeftovers(root: string): Promise<string[]> {
  return readdir(layoutOf(root).staging).catch(() => []);
}

/** A fresh root whose operator pre-seeded the port (and anything else) in config.json. */
export async function seedConfig(root: string, config: Record<string, unknown>): Promise<void> {
  await mkdir(join(root, 'etc'), { recursive: true });
  await writeFile(join(root, 'etc', 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
}

/**
 * Pauses the app's writes through its config and restarts it, so that its database stays
 * byte-for-byte still while a test compares before and after.
 */
export async function pauseApp(root: string, s: SamplePaths, port: number): Promise<void> {
  const path = layoutOf(root).config;
  const cfg = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  cfg.measurements = { ...(cfg.measurements as object), paused: true };
  await writeFile(path, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o600 });
  await stopApp(root);
  const engine = await openEngine(root, s);
  try {
    await engine.context.runner.start(join(layoutOf(root).slotsDir, (await engine.context.slots.active())!));
  } finally {
    engine.close();
  }
  await waitFor('paused app', async () => ((await httpJson(port, '/status')).body as { paused: boolean }).paused);
}

/** The app's /status, once it answers. */
export async function appStatus(port: number): Promise<Record<string, unknown>> {
  return waitFor('app /status', async () => {
    const r = await httpJson(port, '/status');
    return r.status === 200 ? (r.body as Record<string, unknown>) : null;
  });
}

// ---------------------------------------------------------------------------------------------
// The built CLI (`npm run build` first).

export const CLI = fileURLToPath(new URL('../../dist/cli/src/sonde.js', import.meta.url));

export interface CliRun {
  readonly args: readonly string[];
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `sonde ...args` with `input` on stdin (stdin is closed at once without it), in `cwd` when
 * given, with `env` added to the environment (e.g. SONDE_SERVER and SONDE_TOKEN).
 */
export function sonde(args: readonly string[], input = '', cwd?: string, env?: Readonly<Record<string, string>>): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const options = { maxBuffer: 16 * 1024 * 1024, timeout: 60_000, ...(cwd ? { cwd } : {}), ...(env ? { env: { ...process.env, ...env } } : {}) };
    const child = execFile(process.execPath, [CLI, ...args], options, (e, stdout, stderr) => {
      const code = e ? (typeof (e as { code?: unknown }).code === 'number' ? ((e as { code: number }).code) : -1) : 0;
      if (e && code === -1) reject(e);
      else resolve({ args, code, stdout, stderr });
    });
    child.stdin!.end(input);
  });
}

/** `sonde ...args` in `cwd`, which must exit 0 (its stderr is the failure's message); its stdout. */
export async function sondeOk(args: readonly string[], cwd?: string): Promise<string> {
  const r = await sonde(args, '', cwd);
  if (r.code !== 0) throw new Error(`sonde ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** The health flags matching FAST_HEALTH, for `sonde agent install|rollback`. */
export function fastHealthFlags(windowMs: number = FAST_HEALTH.windowMs): string[] {
  return ['--health-checks', String(FAST_HEALTH.required), '--health-interval', String(FAST_HEALTH.intervalMs), '--health-window', String(windowMs)];
}
