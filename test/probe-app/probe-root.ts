import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import {
  CONFIG_TEMPLATE_V1,
  probeAppSource,
  releaseJsonOf,
  sampleRelease,
  SAMPLE_MIGRATIONS,
  type ReleaseJson,
} from '../../images/src/samples/index.js';

/**
 * A probe root prepared by hand, as the install engine would leave it, and the sample app run
 * against it as a real child process (the `process` runner's way: cwd = the slot's app/,
 * PROBE_ROOT, PROBE_SLOT, NODE_PATH).
 */
export const NODE_MODULES = resolve(dirname(fileURLToPath(import.meta.url)), '../../node_modules');

export interface ProbeRoot {
  readonly root: string;
  readonly slot: string;
  readonly appDir: string;
  readonly db: string;
  readonly config: string;
  readonly port: number;
}

export interface ProbeRootOptions {
  /** Migrations 0001..N are run; default 1. */
  readonly dbVersion?: number;
  /** PRAGMA user_version written after the migrations; default dbVersion. */
  readonly userVersion?: number;
  /** No probe.db at all. */
  readonly noDatabase?: boolean;
  /** release.json; default the 1.0.0 app's. */
  readonly release?: ReleaseJson;
  /** Merged over the 1.0.0 template, after `port` and `pollMs` are set. */
  readonly config?: Record<string, unknown>;
  readonly licence?: Record<string, unknown>;
  /** Files for <slot>/data/. */
  readonly slotData?: Record<string, unknown>;
}

export const TEST_POLL_MS = 40;

/** A free loopback port: listen on port 0 and give it back. */
export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => done(port));
    });
  });
}

export function releaseFor(version: Parameters<typeof sampleRelease>[0], patch: Partial<ReleaseJson> = {}): ReleaseJson {
  const base = releaseJsonOf(sampleRelease(version));
  if (!base) throw new Error(`sample release ${version} has no app`);
  return { ...base, ...patch };
}

export async function prepareProbeRoot(root: string, o: ProbeRootOptions = {}): Promise<ProbeRoot> {
  const slot = join(root, 'slots', 'a');
  const appDir = join(slot, 'app');
  const db = join(root, 'data', 'probe.db');
  const config = join(root, 'etc', 'config.json');
  for (const d of [appDir, join(root, 'data'), join(root, 'etc'), join(root, 'run')]) await mkdir(d, { recursive: true });
  await copyFile(await probeAppSource(), join(appDir, 'probe-app.cjs'));
  await writeFile(join(appDir, 'release.json'), JSON.stringify(o.release ?? releaseFor('1.0.0'), null, 2));
  if (!o.noDatabase) {
    const version = o.dbVersion ?? 1;
    const conn = new Database(db);
    for (const m of SAMPLE_MIGRATIONS.filter((x) => x.version <= version)) conn.exec(m.up);
    conn.pragma(`user_version = ${o.userVersion ?? version}`);
    conn.close();
  }
  const port = await freePort();
  await writeFile(config, JSON.stringify({ ...CONFIG_TEMPLATE_V1, port, pollMs: TEST_POLL_MS, ...o.config }, null, 2));
  if (o.licence) {
    await mkdir(join(root, 'license'), { recursive: true });
    await writeFile(join(root, 'license', 'license.json'), JSON.stringify(o.licence));
  }
  for (const [name, content] of Object.entries(o.slotData ?? {})) {
    await mkdir(join(slot, 'data'), { recursive: true });
    await writeFile(join(slot, 'data', name), JSON.stringify(content));
  }
  return { root, slot, appDir, db, config, port };
}

export interface RunningApp {
  readonly child: ChildProcess;
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<RunningApp>();

export function startApp(p: ProbeRoot): RunningApp {
  const child = spawn(process.execPath, ['probe-app.cjs'], {
    cwd: p.appDir,
    env: { ...process.env, PROBE_ROOT: p.root, PROBE_SLOT: p.slot, NODE_PATH: NODE_MODULES },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => {
    child.once('close', (code, signal) => done({ code, signal }));
  });
  const app: RunningApp = { child, stdout: () => out, stderr: () => err, exited };
  running.add(app);
  void exited.then(() => running.delete(app));
  return app;
}

/** Kills every app still running; for afterEach. */
export async function killAll(): Promise<void> {
  const apps = [...running];
  for (const a of apps) a.child.kill('SIGKILL');
  await Promise.all(apps.map((a) => a.exited));
}

export interface HttpAnswer {
  status: number;
  body: Record<string, unknown>;
}

export async function http(port: number, path: string, method: 'GET' | 'POST' = 'GET', body?: string): Promise<HttpAnswer> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method, ...(body !== undefined ? { body } : {}) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/**
 * Polls until `check` returns a value other than undefined; fails after `ms`, or as soon as
 * `stop` returns true.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  ms = 10_000,
  stop: () => boolean = () => false,
): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    if (stop()) throw new Error(`stopped waiting for ${what}`);
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch {
      // not up yet
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits until the app answers on its port; returns the first /status. Fails at once if it exits. */
export async function waitUp(p: ProbeRoot, app: RunningApp): Promise<Record<string, unknown>> {
  const up = waitFor('the app to answer /status', async () => (await http(p.port, '/status')).body, 10_000, () => app.child.exitCode !== null || app.child.signalCode !== null);
  const died = app.exited.then(({ code, signal }) => {
    throw new Error(`the app exited (code ${code}, signal ${signal}) before answering: ${app.stderr()}`);
  });
  return Promise.race([up, died]);
}

/** sha256 of probe.db and its WAL, as they are on disk now. */
export async function dbDigest(p: ProbeRoot): Promise<string> {
  const h = createHash('sha256');
  for (const f of [p.db, `${p.db}-wal`]) h.update(await readFile(f).catch(() => Buffer.alloc(0)));
  return h.digest('hex');
}

export function statusCount(s: Record<string, unknown>): number {
  return s.measurementCount as number;
}
