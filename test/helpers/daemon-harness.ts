import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { loadAgentConfig } from '../../agent/src/daemon/config.js';
import { loadCredentials } from '../../agent/src/daemon/credentials.js';
import { AgentDaemon } from '../../agent/src/daemon/daemon.js';
import { RecentLog } from '../../agent/src/daemon/recent-log.js';
import { eventSchema, stateSchema, type Command, type ProbeEvent, type ProbeState } from '../../base/src/protocol/messages.js';
import { parseTopic } from '../../base/src/protocol/topics.js';
import { Engine } from '../../agent/src/update/engine.js';
import type { Deployment } from '../../agent/src/update/journal.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { setSiteVar } from '../../agent/src/update/site-vars.js';
import { freePort } from '../probe-app/probe-root.js';
import type { Received } from './broker.js';
import { SONDE_CLI } from './crash-probe.js';
import { FAST_HEALTH, sharedSamples } from './probe.js';

/**
 * The daemon tests' probe and fleet-server stand-ins: a probe root with its agent config and
 * enrollment credentials, the daemon run in-process or as `sonde agent run` (a real child process,
 * so SIGKILL and SIGTERM are real), a small HTTP server playing the fleet server's pack download
 * (Range, cut connections, throttling) and polling endpoints, and readers for what the broker
 * received from a probe.
 */

// ---------------------------------------------------------------------------------------------
// Sample packs, built once per test run and shared by the daemon test files.

/**
 * The sample packs, built once per `vitest` run (its workers share a parent) and shared by every
 * daemon test file: building them makes keys and takes most of 20 s. The first worker to create
 * the folder builds; the others wait for its `samples.json`. Folders of runs that ended are removed.
 */
export async function daemonSamples(): Promise<SamplePaths> {
  const prefix = 'sonde-daemon-samples-';
  for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length));
    if (pid === process.ppid || !Number.isSafeInteger(pid)) continue;
    if (!alive(pid)) await rm(join(tmpdir(), name), { recursive: true, force: true }).catch(() => undefined);
  }
  const dir = join(tmpdir(), `${prefix}${process.ppid}`);
  const index = join(dir, 'samples.json');
  let builder = false;
  try {
    await mkdir(dir);
    builder = true;
  } catch {
    // another worker builds them
  }
  if (builder) {
    const s = await buildOrRemove(dir);
    await writeFile(`${index}.tmp`, JSON.stringify(s));
    await rename(`${index}.tmp`, index);
    return s;
  }
  const until = Date.now() + 120_000;
  while (Date.now() < until) {
    if (existsSync(index)) return JSON.parse(await readFile(index, 'utf8')) as SamplePaths;
    await sleep(200);
  }
  // The builder died: build a private copy.
  return sharedSamples(join(dir, `private-${process.pid}`));
}

async function buildOrRemove(dir: string): Promise<SamplePaths> {
  try {
    return await sharedSamples(join(dir, 'samples'));
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------
// The fleet server's HTTP side: pack downloads and the polling endpoint.

export interface PackRef {
  readonly url: string;
  readonly sha256: string;
  readonly size: number;
}

export interface HttpRecord {
  readonly path: string;
  readonly range: string | undefined;
  readonly authorization: string | undefined;
  readonly at: number;
  status: number;
  bytesSent: number;
}

export interface PackBehaviour {
  /** The next `times` pack requests send `afterBytes` body bytes, then the connection is cut. */
  cut?: { afterBytes: number; times: number };
  /** Body bytes go out `bytes` at a time, `everyMs` apart. */
  throttle?: { bytes: number; everyMs: number };
}

export interface FleetHttp {
  readonly port: number;
  readonly base: string;
  /** Every request, in arrival order. */
  readonly requests: HttpRecord[];
  /** Serves `bytes` at /api/v1/packs/<name>/content; returns the reference a command carries. */
  addPack(name: string, bytes: Buffer): PackRef;
  setPackBehaviour(b: PackBehaviour): void;
  /** The answer to the probe's next polls: a command (200, every time until changed), or none (204). */
  setNext(probeId: string, body: unknown): void;
  /** Answer polls with 503 while true. */
  unavailable: boolean;
  polls(probeId: string): HttpRecord[];
  packRequests(name: string): HttpRecord[];
  close(): Promise<void>;
}

/**
 * `tokens`: probe id -> token. Pack downloads need any probe's bearer token; a poll needs the
 * polling probe's own (401 otherwise), as the fleet server will.
 */
export async function startFleetHttp(tokens: ReadonlyMap<string, string>): Promise<FleetHttp> {
  const packs = new Map<string, Buffer>();
  const next = new Map<string, unknown>();
  const requests: HttpRecord[] = [];
  let behaviour: PackBehaviour = {};
  let cutsLeft = 0;
  const bearers = (): Set<string> => new Set([...tokens.values()].map((t) => `Bearer ${t}`));

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname;
    const rec: HttpRecord = { path, range: req.headers.range, authorization: req.headers.authorization, at: Date.now(), status: 0, bytesSent: 0 };
    requests.push(rec);
    const answer = (status: number, body?: string, headers: Record<string, string | number> = {}): void => {
      rec.status = status;
      res.writeHead(status, { ...headers, ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } : {}) });
      res.end(body);
    };

    const poll = /^\/api\/v1\/probes\/([^/]+)\/next$/.exec(path);
    if (poll && req.method === 'GET') {
      const probeId = decodeURIComponent(poll[1]!);
      const token = tokens.get(probeId);
      if (token === undefined || req.headers.authorization !== `Bearer ${token}`) return answer(401, JSON.stringify({ code: 'UNAUTHORIZED' }));
      if (self.unavailable) return answer(503, JSON.stringify({ code: 'UNAVAILABLE' }), { 'retry-after': 1 });
      const body = next.get(probeId);
      if (body === undefined || body === null) return answer(204);
      return answer(200, typeof body === 'string' ? body : JSON.stringify(body));
    }

    const content = /^\/api\/v1\/packs\/([^/]+)\/content$/.exec(path);
    if (content && req.method === 'GET') {
      if (!bearers().has(req.headers.authorization ?? '')) return answer(401);
      const file = packs.get(decodeURIComponent(content[1]!));
      if (!file) return answer(404);
      let start = 0;
      const headers: Record<string, string | number> = { 'content-type': 'application/octet-stream', 'accept-ranges': 'bytes' };
      let status = 200;
      const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
      if (range) {
        start = Number(range[1]);
        if (start >= file.length) return answer(416, undefined, { 'content-range': `bytes */${file.length}` });
        status = 206;
        headers['content-range'] = `bytes ${start}-${file.length - 1}/${file.length}`;
      }
      const body = file.subarray(start);
      headers['content-length'] = body.length;
      let limit = body.length;
      let cut = false;
      if (behaviour.cut && cutsLeft > 0) {
        cutsLeft--;
        limit = Math.min(limit, behaviour.cut.afterBytes);
        cut = true;
      }
      rec.status = status;
      res.writeHead(status, headers);
      void sendBody(res, body.subarray(0, limit), rec, behaviour.throttle).then((whole) => {
        if (!whole) return;
        // Cut: the bytes are in the kernel (their write callbacks ran); then the connection ends mid-body.
        if (cut) res.socket?.destroy();
        else res.end();
      });
      return;
    }
    answer(404);
  };

  const server: Server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const base = `http://127.0.0.1:${port}`;
  const self: FleetHttp = {
    port,
    base,
    requests,
    unavailable: false,
    addPack(name, bytes) {
      packs.set(name, bytes);
      return { url: `${base}/api/v1/packs/${encodeURIComponent(name)}/content`, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length };
    },
    setPackBehaviour(b) {
      behaviour = b;
      cutsLeft = b.cut?.times ?? 0;
    },
    setNext(probeId, body) {
      next.set(probeId, body);
    },
    polls: (probeId) => requests.filter((r) => r.path === `/api/v1/probes/${probeId}/next`),
    packRequests: (name) => requests.filter((r) => r.path === `/api/v1/packs/${encodeURIComponent(name)}/content`),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return self;
}

async function sendBody(res: ServerResponse, bytes: Buffer, rec: HttpRecord, throttle: PackBehaviour['throttle']): Promise<boolean> {
  const step = throttle?.bytes ?? 16 * 1024;
  for (let at = 0; at < bytes.length; at += step) {
    if (throttle && at > 0) await sleep(throttle.everyMs);
    const chunk = bytes.subarray(at, at + step);
    const ok = await new Promise<boolean>((resolve) => {
      if (res.destroyed) return resolve(false);
      const onClose = (): void => resolve(false);
      res.once('close', onClose);
      res.write(chunk, (err) => {
        res.off('close', onClose);
        resolve(!err);
      });
    });
    if (!ok) return false;
    rec.bytesSent += chunk.length;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// A probe: root, agent config, credentials.

export interface ProbeFixture {
  readonly id: string;
  readonly token: string;
  readonly root: string;
  readonly state: string;
  readonly configPath: string;
  readonly credentialsPath: string;
  /** The probe app's health port, pre-seeded in <root>/etc/config.json. */
  readonly appPort: number;
}

export interface ProbeOptions {
  /** The vendor keyring and fleet key; without them the probe can take commands but not install. */
  readonly samples?: SamplePaths;
  readonly mqttUrl: string;
  readonly httpBase: string;
  readonly id?: string;
  /** Default: a new random token. */
  readonly token?: string;
  /** Merged over the test defaults (one level deep). */
  readonly config?: Record<string, unknown>;
  readonly siteVars?: Record<string, string>;
}

export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** The agent config the tests run with: fast health checks, quick reconnects and downloads. */
export function testConfig(p: { root: string; state: string; credentials: string; samples?: SamplePaths | undefined }, over: Record<string, unknown> = {}): Record<string, unknown> {
  const base: Record<string, unknown> = {
    root: p.root,
    state: p.state,
    credentials: p.credentials,
    ...(p.samples ? { keyring: p.samples.keys.rootCert, recipientKey: p.samples.keys.fleetKey } : {}),
    health: { required: FAST_HEALTH.required, intervalMs: FAST_HEALTH.intervalMs, windowMs: FAST_HEALTH.windowMs },
    report: { stateIntervalMs: 60_000 },
    reconnect: { minMs: 100, maxMs: 800 },
    poll: { intervalMs: 60_000, maxIntervalMs: 900_000, afterOfflineMs: 30_000 },
    download: { attempts: 50, maxDelayMs: 100 },
    log: { level: 'debug' },
  };
  for (const [k, v] of Object.entries(over)) {
    const old = base[k];
    base[k] = v && typeof v === 'object' && !Array.isArray(v) && old && typeof old === 'object' ? { ...(old as object), ...(v as object) } : v;
  }
  return base;
}

export async function makeProbe(dir: string, o: ProbeOptions): Promise<ProbeFixture> {
  const id = o.id ?? `probe-${randomBytes(3).toString('hex')}`;
  const token = o.token ?? newToken();
  const root = join(dir, id, 'root');
  const state = join(root, 'var', 'sonde');
  const etc = join(dir, id, 'etc-sonde');
  await mkdir(join(root, 'etc'), { recursive: true });
  await mkdir(etc, { recursive: true });
  // The operator pre-seeds the app's port; the product's config template fills in the rest.
  const appPort = await freePort();
  await writeFile(join(root, 'etc', 'config.json'), JSON.stringify({ port: appPort }));
  for (const [name, value] of Object.entries(o.siteVars ?? {})) await setSiteVar(layoutOf(root).siteVars, name, value);
  const credentialsPath = join(etc, 'enrollment.json');
  await writeFile(credentialsPath, JSON.stringify({ format: 'sonde-enrollment-1', probeId: id, token, server: { http: o.httpBase, mqtt: o.mqttUrl } }), { mode: 0o600 });
  const configPath = join(etc, 'agent.json');
  await writeFile(configPath, JSON.stringify(testConfig({ root, state, credentials: credentialsPath, samples: o.samples }, o.config ?? {}), null, 2));
  return { id, token, root, state, configPath, credentialsPath, appPort };
}

// ---------------------------------------------------------------------------------------------
// The daemon, in-process and as a child process.

export type LogLine = Record<string, unknown> & { level: number; msg: string };

export interface InProcessDaemon {
  readonly daemon: AgentDaemon;
  readonly logs: LogLine[];
  stop(): Promise<void>;
}

/** AgentDaemon.start with the probe's real config and credential files; logs kept in memory. */
export async function startDaemon(p: ProbeFixture): Promise<InProcessDaemon> {
  const config = await loadAgentConfig(p.configPath);
  const creds = await loadCredentials(config.credentials);
  const logs: LogLine[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as LogLine);
      done();
    },
  });
  // As `sonde agent run` does: the log also goes to the in-memory copy diagnostics bundles carry.
  const recentLog = new RecentLog();
  const level = config.log.level as pino.Level;
  const log = pino({ level, base: { app: 'sonde-agent' } }, pino.multistream([{ level, stream }, { level, stream: recentLog }]));
  const daemon = await AgentDaemon.start(config, creds, log, { recentLog });
  let stopped = false;
  return {
    daemon,
    logs,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      await daemon.stop();
    },
  };
}

export interface DaemonProcess {
  readonly child: ChildProcess;
  /** The JSON log lines on stdout so far. */
  logs(): LogLine[];
  stdout(): string;
  stderr(): string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** `node dist/cli/src/sonde.js agent run --config FILE`, with extra environment. */
export function spawnDaemon(configPath: string, env: Record<string, string> = {}): DaemonProcess {
  const clean = { ...process.env };
  for (const k of ['SONDE_CRASH_AT', 'SONDE_FILL_DISK_AT', 'SONDE_FILL_DISK_PATH', 'NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID']) delete clean[k];
  const child = spawn(process.execPath, [SONDE_CLI, 'agent', 'run', '--config', configPath], { env: { ...clean, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  return {
    child,
    logs: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as LogLine),
    stdout: () => out,
    stderr: () => err,
    exited,
  };
}

/** Kills a daemon child still running (afterEach), SIGKILL, and waits for it. */
export async function killDaemon(d: DaemonProcess | undefined): Promise<void> {
  if (!d) return;
  if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGKILL');
  await d.exited;
}

// ---------------------------------------------------------------------------------------------
// Commands and what the server received.

let commandCounter = 0;

export function installCommand(probeId: string, pack: PackRef, commandId = `cmd-${Date.now().toString(36)}-${++commandCounter}`): Extract<Command, { type: 'install' }> {
  return { v: 1, type: 'install', commandId, probeId, issuedAt: new Date().toISOString(), pack: { url: pack.url, sha256: pack.sha256, size: pack.size } };
}

export function reportNow(probeId: string, commandId = `report-${++commandCounter}`): Extract<Command, { type: 'report-now' }> {
  return { v: 1, type: 'report-now', commandId, probeId, issuedAt: new Date().toISOString() };
}

/** A probe's events as the broker received them: raw, duplicates included, each schema-checked. */
export function rawEvents(received: readonly Received[], probeId: string): ProbeEvent[] {
  return received
    .filter((r) => {
      const t = parseTopic(r.topic);
      return t?.probeId === probeId && t.kind === 'events';
    })
    .map((r) => eventSchema.parse(JSON.parse(r.payload.toString())));
}

/** What the server keeps: the first copy of each event id. */
export function dedupe(events: readonly ProbeEvent[]): { unique: ProbeEvent[]; duplicates: number } {
  const seen = new Set<string>();
  const unique: ProbeEvent[] = [];
  for (const e of events) {
    if (seen.has(e.id)) continue;
    seen.add(e.id);
    unique.push(e);
  }
  return { unique, duplicates: events.length - unique.length };
}

export function stateMessages(received: readonly Received[], probeId: string): { state: ProbeState; retain: boolean }[] {
  return received
    .filter((r) => {
      const t = parseTopic(r.topic);
      return t?.probeId === probeId && t.kind === 'state';
    })
    .map((r) => ({ state: stateSchema.parse(JSON.parse(r.payload.toString())), retain: r.retain }));
}

export async function waitUntil<T>(what: string, fn: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 20_000, stop?: () => string | null): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    const why = stop?.();
    if (why) throw new Error(`gave up waiting for ${what}: ${why}`);
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** The outcome event of a command, once the server has it. */
export function outcomeOf(received: readonly Received[], probeId: string, commandId: string): ProbeEvent | undefined {
  return rawEvents(received, probeId).find((e) => e.type === 'install-outcome' && e.commandId === commandId);
}

export async function history(root: string): Promise<Deployment[]> {
  const e = await Engine.open({ root });
  try {
    return e.context.journal.history(1000);
  } finally {
    e.close();
  }
}

/** Event types in order, with the install states spelled out: a readable trace for assertions. */
export function trace(events: readonly ProbeEvent[]): string[] {
  return events.map((e) => (e.type === 'install-state' ? `install-state:${e.state}` : e.type === 'install-outcome' ? `install-outcome:${e.outcome}` : e.type));
}
