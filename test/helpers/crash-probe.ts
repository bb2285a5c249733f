import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readdir, readFile, readlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import type { SamplePackId, SamplePaths } from '../../images/src/samples/index.js';
import { configVersionOf } from '../../agent/src/update/config-ops.js';
import { Engine } from '../../agent/src/update/engine.js';
import type { Deployment } from '../../agent/src/update/journal.js';
import { layoutOf, slotDir, type SlotName } from '../../agent/src/update/layout.js';
import { OUTCOMES } from '../../agent/src/update/machine.js';
import { readReleaseInfo } from '../../agent/src/update/release-info.js';
import { setSiteVar } from '../../agent/src/update/site-vars.js';
import { freePort } from '../probe-app/probe-root.js';
import { FAST_HEALTH, dbDigest, httpJson, openEngine, stopApp, waitFor } from './probe.js';

/**
 * Crash and kill tests of the install engine (issue 3): a baseline probe built once per scenario,
 * copied per case with `cp -a`; the real CLI run as a child process (so SIGKILL is a real power
 * cut for the agent); and what "the probe is whole on the old or the new release" means.
 */
const run = promisify(execFile);

export const SONDE_CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../../dist/cli/src/sonde.js');

/** What one release looks like on a whole probe. */
export interface ReleaseShape {
  readonly version: string;
  readonly appVersion: string;
  readonly dbVersion: number;
  readonly configVersion: number;
}

export type ScenarioName = 'upgrade' | 'rollback';

export interface Scenario {
  readonly name: ScenarioName;
  /** Installed, in order, to make the baseline. */
  readonly history: readonly SamplePackId[];
  /** The pack the scenario installs. */
  readonly pack: SamplePackId;
  readonly old: ReleaseShape;
  /** The release the pack commits; null when it can never commit (it rolls back by itself). */
  readonly new: ReleaseShape | null;
}

export const SCENARIOS: Readonly<Record<ScenarioName, Scenario>> = {
  // 1.0.0 -> 1.1.0: app, database 1 -> 2, config 1 -> 2; commits.
  upgrade: {
    name: 'upgrade',
    history: ['1.0.0'],
    pack: '1.1.0',
    old: { version: '1.0.0', appVersion: '1.0.0', dbVersion: 1, configVersion: 1 },
    new: { version: '1.1.0', appVersion: '1.1.0', dbVersion: 2, configVersion: 2 },
  },
  // 1.1.1 -> 1.2.0-crash: the new app exits at start, the health gate fails, the engine rolls back.
  rollback: {
    name: 'rollback',
    history: ['1.0.0', '1.1.0', '1.1.1'],
    pack: '1.2.0-crash',
    old: { version: '1.1.1', appVersion: '1.1.0', dbVersion: 2, configVersion: 3 },
    new: null,
  },
};

export interface Baseline {
  readonly scenario: Scenario;
  readonly samples: SamplePaths;
  readonly root: string;
  readonly port: number;
  readonly db: ReturnType<typeof dbDigest>;
  readonly config: string;
  /** Deployment ids in the baseline's journal: anything else was started by the case. */
  readonly deployments: ReadonlySet<string>;
}

export const CANARY = 'canary-crash-Kx4-site-secret';

/**
 * A probe on the scenario's old release, installed through the engine, with measurement writes
 * paused through config.json (so every app restarted later stays paused and the database bytes
 * can be compared) and the app stopped.
 */
export async function makeBaseline(root: string, s: SamplePaths, scenario: Scenario): Promise<Baseline> {
  const layout = layoutOf(root);
  const port = await freePort();
  const engine = await openEngine(root, s);
  try {
    // The operator pre-seeds the port; the product's template fills in the rest.
    await setSiteVar(layout.siteVars, 'CollectorPassword', CANARY);
    await mkdir(layout.etc, { recursive: true });
    await writeFile(layout.config, JSON.stringify({ port }));
    for (const id of scenario.history) {
      const r = await engine.install(s.packs[id]);
      if (!r.committed) throw new Error(`baseline: ${id} did not commit: ${r.deployment.errorCode} ${r.deployment.errorMessage}`);
      // Let the app write rows, so that a migrated or restored database has content to compare.
      await waitFor(`rows under ${id}`, async () => ((await httpJson(port, '/status')).body as { measurementCount: number }).measurementCount > 3);
    }
    const cfg = JSON.parse(await readFile(layout.config, 'utf8')) as Record<string, unknown>;
    cfg.measurements = { ...(cfg.measurements as object), paused: true };
    await writeFile(layout.config, `${JSON.stringify(cfg, null, 2)}\n`, { mode: 0o600 });
    await engine.context.runner.stop();
  } finally {
    engine.close();
  }
  const e = await Engine.open({ root });
  try {
    const deployments = new Set(e.context.journal.history(1000).map((d) => d.id));
    return { scenario, samples: s, root, port, db: dbDigest(layout.db), config: await readFile(layout.config, 'utf8'), deployments };
  } finally {
    e.close();
  }
}

/** A private copy of the baseline (cp -a keeps modes, times and the `current` symlink). */
export async function copyBaseline(base: Baseline, dest: string): Promise<string> {
  await run('cp', ['-a', base.root, dest]);
  return dest;
}

/** Starts the active release's app, as it runs on a probe before an install, and waits for it. */
export async function startActiveApp(root: string, port: number, expectVersion: string): Promise<void> {
  const engine = await Engine.open({ root });
  try {
    const active = await engine.context.slots.active();
    if (!active) throw new Error(`${root} has no active slot`);
    await engine.context.runner.start(slotDir(engine.context.layout, active));
  } finally {
    engine.close();
  }
  await waitFor(`app ${expectVersion} up and paused`, async () => {
    const b = (await httpJson(port, '/status')).body as { version: string; paused: boolean };
    return b.version === expectVersion && b.paused;
  });
}

export interface AgentRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

export interface RunningAgent {
  readonly child: ChildProcess;
  readonly done: Promise<AgentRun>;
}

/** `sonde <args>` as a child process, with extra environment (SONDE_CRASH_AT, …). */
export function spawnAgent(args: readonly string[], env: Record<string, string> = {}): RunningAgent {
  const started = Date.now();
  const clean = { ...process.env };
  delete clean.SONDE_CRASH_AT;
  delete clean.SONDE_FILL_DISK_AT;
  delete clean.SONDE_FILL_DISK_PATH;
  const child = spawn(process.execPath, [SONDE_CLI, ...args], { env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
  const done = new Promise<AgentRun>((ok) => child.once('close', (code, signal) => ok({ code, signal, stdout, stderr, ms: Date.now() - started })));
  return { child, done };
}

export function runAgent(args: readonly string[], env: Record<string, string> = {}): Promise<AgentRun> {
  return spawnAgent(args, env).done;
}

/** `pack`: a sample pack's id, or the path of another pack (a variant). */
export function installArgs(s: SamplePaths, pack: SamplePackId | string, root: string): string[] {
  const path = pack.includes('/') ? pack : s.packs[pack as SamplePackId];
  return [
    'agent', 'install', path, '--root', root,
    '--keyring', s.keys.rootCert, '--key', s.keys.fleetKey,
    '--health-checks', String(FAST_HEALTH.required), '--health-interval', String(FAST_HEALTH.intervalMs), '--health-window', String(FAST_HEALTH.windowMs),
    '--json',
  ];
}

/** `sonde agent install --json`'s answer: the receipt plus ok. */
export interface InstallAnswer {
  readonly ok: boolean;
  readonly id: string;
  readonly outcome: string;
  readonly errorCode: string | null;
  readonly reason: string | null;
}

export function installAnswer(r: AgentRun): InstallAnswer {
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as InstallAnswer;
  } catch {
    throw new Error(`no JSON answer from sonde agent install (code ${r.code}, signal ${r.signal}): ${r.stdout}\n${r.stderr}`);
  }
}

/** `sonde agent recover`; it must end normally. */
export async function recover(root: string): Promise<Deployment['state'] | null> {
  const r = await runAgent(['agent', 'recover', '--root', root, '--json']);
  expect(r.signal, `recover was killed: ${r.stderr}`).toBeNull();
  expect(r.code, `recover failed: ${r.stdout}${r.stderr}`).toBe(0);
  const answer = JSON.parse(r.stdout.trim()) as { recovered: { outcome: string } | null };
  return (answer.recovered?.outcome ?? null) as Deployment['state'] | null;
}

/** The deployments a case started (not in the baseline), oldest first. */
export async function newDeployments(base: Baseline, root: string): Promise<Deployment[]> {
  const e = await Engine.open({ root });
  try {
    return e.context.journal
      .history(1000)
      .filter((d) => !base.deployments.has(d.id))
      .reverse();
  } finally {
    e.close();
  }
}

/** The journal's transitions of one deployment (to-states, in order). */
export async function transitionsOf(root: string, id: string): Promise<string[]> {
  const e = await Engine.open({ root });
  try {
    return e.context.journal.transitions(id).map((t) => t.to);
  } finally {
    e.close();
  }
}

export interface Whole {
  readonly on: 'old' | 'new';
  readonly last: Deployment | null;
}

/**
 * The probe is whole on the old or the new release: no unfinished deployment; `current` names a
 * good slot holding the journal's current release, with that release's app; database and config
 * at that release's versions (and, on the old release, byte-for-byte the baseline's); the last
 * deployment ended in an outcome and left its receipt; staging is empty; the release's app runs.
 */
export async function expectWhole(base: Baseline, root: string, why: string, opts: { appRunning?: boolean } = {}): Promise<Whole> {
  const layout = layoutOf(root);
  const sc = base.scenario;
  const e = await Engine.open({ root });
  let on: 'old' | 'new';
  let last: Deployment | null;
  let shape: ReleaseShape;
  try {
    const { journal, slots } = e.context;
    const unfinished = journal.unfinished();
    expect(unfinished, `${why}: an unfinished deployment is left (${unfinished?.state})`).toBeNull();

    const link = await readlink(layout.current);
    const slot = link.split('/').pop() as SlotName;
    expect(['a', 'b'], `${why}: current -> ${link}`).toContain(slot);
    const release = journal.releases()[0];
    expect(release, `${why}: the journal names no current release`).toBeDefined();
    const info = await slots.info(slot);
    expect(info, `${why}: slot ${slot} is not a good slot holding ${release!.version}`).toEqual({ name: slot, health: 'good', version: release!.version });
    expect(release!.slot, `${why}: the journal's current release is in slot ${release!.slot}, current points at ${slot}`).toBe(slot);

    if (release!.version === sc.old.version) on = 'old';
    else if (sc.new && release!.version === sc.new.version) on = 'new';
    else throw new Error(`${why}: the probe is on ${release!.version}, neither ${sc.old.version} nor ${sc.new?.version ?? '(none)'}`);
    shape = on === 'old' ? sc.old : sc.new!;

    expect((await readReleaseInfo(join(slotDir(layout, slot), 'app'))).version, `${why}: the app in slot ${slot}`).toBe(shape.appVersion);
    const db = dbDigest(layout.db);
    if (on === 'old') expect(db, `${why}: the database is not the baseline's`).toEqual(base.db);
    else expect(db.version, `${why}: database version`).toBe(shape.dbVersion);
    const configText = await readFile(layout.config, 'utf8');
    expect(configVersionOf(JSON.parse(configText) as Record<string, unknown>), `${why}: config version`).toBe(shape.configVersion);
    if (on === 'old') expect(configText, `${why}: config.json is not the baseline's`).toBe(base.config);

    last = journal.history(1)[0] ?? null;
    expect(last?.endedAt, `${why}: the last deployment has not ended`).not.toBeNull();
    expect(OUTCOMES as readonly string[], `${why}: the last deployment ended in ${last?.state}`).toContain(last!.state);
    // On the new release the last deployment committed it, or was a re-install refused as such.
    if (on === 'new' && last!.state !== 'committed') expect(last!.errorCode, `${why}: on the new release after ${last!.state}`).toBe('ALREADY_INSTALLED');
    if (on === 'old' && !base.deployments.has(last!.id)) expect(['rolled-back', 'failed'], `${why}: on the old release after ${last!.state}`).toContain(last!.state);
    const receipt = JSON.parse(await readFile(join(layout.receipts, `${last!.id}.json`), 'utf8').catch(() => 'null')) as { outcome: string; endedAt: string | null } | null;
    expect(receipt, `${why}: deployment ${last!.id} ended without a receipt`).not.toBeNull();
    expect(receipt!.outcome, `${why}: the receipt's outcome`).toBe(last!.state);
    expect(receipt!.endedAt, `${why}: the receipt's end time`).not.toBeNull();
    expect(await readdir(layout.staging).catch(() => []), `${why}: staging is not empty`).toEqual([]);
  } finally {
    e.close();
  }
  if (opts.appRunning ?? true) {
    const version = await waitFor(`${why}: the ${shape.appVersion} app answering`, async () => {
      const b = (await httpJson(base.port, '/status')).body as { version: string };
      return b.version === shape.appVersion ? b.version : null;
    }, 8000).catch(async (err: unknown) => {
      const b = await httpJson(base.port, '/status').catch((x: unknown) => ({ body: String(x) }));
      throw new Error(`${(err as Error).message}; /status: ${JSON.stringify(b.body)}`);
    });
    expect(version).toBe(shape.appVersion);
  }
  return { on, last };
}

/** Every process started for this probe root (PROBE_ROOT=<root>), found through /proc. */
export async function probeProcesses(root: string): Promise<number[]> {
  const want = `PROBE_ROOT=${resolve(root)}`;
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const env = await readFile(`/proc/${name}/environ`, 'utf8').catch(() => '');
    if (env.split('\0').includes(want)) pids.push(Number(name));
  }
  return pids;
}

/** Stops the app the way the engine does, then kills anything else still running for the root. */
export async function stopEverything(root: string): Promise<void> {
  await stopApp(root).catch(() => undefined);
  for (const pid of await probeProcesses(root)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  await waitFor('the probe processes to end', async () => (await probeProcesses(root)).length === 0, 5000);
}

/**
 * A copy of a baseline that serves on its own port, so that two cases can run side by side. Only
 * config.json's "port" differs; the copy's config bytes become its baseline.
 */
export async function relocateBaseline(base: Baseline, dest: string): Promise<Baseline> {
  await copyBaseline(base, dest);
  const port = await freePort();
  const config = layoutOf(dest).config;
  const doc = JSON.parse(await readFile(config, 'utf8')) as Record<string, unknown>;
  await writeFile(config, `${JSON.stringify({ ...doc, port }, null, 2)}\n`, { mode: 0o600 });
  return { ...base, root: dest, port, config: await readFile(config, 'utf8') };
}
