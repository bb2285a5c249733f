import Database from 'better-sqlite3';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import mqtt, { type MqttClient } from 'mqtt';
import pino from 'pino';
import { buildSamples, type SamplePaths } from '../../images/src/samples/index.js';
import { commandSchema, eventSchema, stateSchema, type Command, type ProbeEvent, type ProbeState } from '../../base/src/protocol/messages.js';
import { topics } from '../../base/src/protocol/topics.js';
import type { ServerModule } from '../../server/src/context.js';
import type { EnrollmentFile } from '../../server/src/inventory/probe-service.js';
import type { ServerOptionsInput } from '../../server/src/options.js';
import { startServer, type RunningServer } from '../../server/src/server.js';

/**
 * The fleet-server tests' harness: a real server (real SQLite, real aedes, real fastify on
 * 127.0.0.1 port 0) in a temp data directory with its log captured, an HTTP helper, and
 * simulated probes that speak the protocol exactly as the agent does, built from the shared
 * schemas (every message they send is parsed by stateSchema / eventSchema first).
 */
export interface TestServer {
  readonly server: RunningServer;
  readonly dir: string;
  readonly url: string;
  readonly mqttUrl: string;
  readonly admin: string;
  /** Every log line the server wrote. */
  readonly logs: string[];
  api<T = unknown>(method: string, path: string, o?: { token?: string | null; body?: unknown; headers?: Record<string, string> }): Promise<ApiAnswer<T>>;
  enroll(probeId: string): Promise<EnrollmentFile>;
  /** Waits until what is queued has been written. */
  settle(ms?: number): Promise<void>;
  close(): Promise<void>;
}

export interface ApiAnswer<T> {
  readonly status: number;
  readonly body: T;
  readonly headers: IncomingHttpHeaders;
  readonly raw: Buffer;
}

export async function tempDir(prefix = 'sonde-server-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function startTestServer(
  o: { keyring?: string; options?: Partial<ServerOptionsInput>; modules?: readonly ServerModule[]; dataDir?: string; keep?: boolean } = {},
): Promise<TestServer> {
  const dir = o.dataDir ?? (await tempDir());
  const logs: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(line);
      done();
    },
  });
  const server = await startServer(
    { dataDir: dir, port: 0, logLevel: 'debug', ingestIntervalMs: 20, ...(o.keyring ? { keyring: o.keyring } : {}), ...o.options },
    { logger: pino({ level: 'debug', base: { app: 'sonde-server' } }, stream), ...(o.modules ? { modules: o.modules } : {}) },
  );
  const url = server.httpUrls[0]!;
  const admin = server.adminToken ?? '';
  const self: TestServer = {
    server,
    dir,
    url,
    mqttUrl: server.mqttUrls[0]!,
    admin,
    logs,
    api: (method, path, a = {}) => api(url, method, path, { token: a.token === undefined ? admin : a.token, body: a.body, headers: a.headers }),
    async enroll(probeId) {
      const r = await self.api<EnrollmentFile>('POST', `/api/v1/probes/${probeId}/enroll`, { body: {} });
      if (r.status !== 201 && r.status !== 200) throw new Error(`enroll ${probeId}: ${r.status} ${JSON.stringify(r.body)}`);
      return r.body;
    },
    async settle(ms = 60) {
      await new Promise((r) => setTimeout(r, ms));
      await server.context.ingest.flush();
    },
    async close() {
      await server.close();
      if (!o.keep && !o.dataDir) await rm(dir, { recursive: true, force: true });
    },
  };
  return self;
}

/** One HTTP request with node:http (no URL normalisation: path tricks reach the server as written). */
export function api<T = unknown>(
  base: string,
  method: string,
  path: string,
  o: { token?: string | null | undefined; body?: unknown; headers?: Record<string, string> | undefined } = {},
): Promise<ApiAnswer<T>> {
  const u = new URL(base);
  const headers: Record<string, string> = { ...(o.headers ?? {}) };
  if (o.token) headers['authorization'] = `Bearer ${o.token}`;
  let payload: Buffer | null = null;
  if (o.body !== undefined) {
    payload = Buffer.isBuffer(o.body) ? o.body : Buffer.from(JSON.stringify(o.body));
    if (!Buffer.isBuffer(o.body)) headers['content-type'] ??= 'application/json';
    headers['content-length'] = String(payload.length);
  }
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: u.hostname, port: u.port, path, method, headers, timeout: 20_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        let body: unknown = raw.toString();
        if ((res.headers['content-type'] ?? '').includes('json') && raw.length) body = JSON.parse(raw.toString());
        resolve({ status: res.statusCode ?? 0, body: body as T, headers: res.headers, raw });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

// ---------------------------------------------------------------------------------------------
// Simulated probes

export interface SimOptions {
  readonly ca?: string;
  /** Log in with another client id than the probe id (an attack). */
  readonly clientId?: string;
  /** Fail instead of retrying when the broker refuses. */
  readonly expectRefusal?: boolean;
  /** MQTT keepalive in seconds (mqtt.js' default: 60). */
  readonly keepalive?: number;
}

/**
 * A probe as the server sees it: the agent's MQTT link (username = client id = probe id, its token
 * as password, clean session, QoS 1, an `offline-<conn>` last will and an `online-<conn>` event
 * per connection), publishing states and events that pass the shared schemas.
 */
export class SimProbe {
  readonly commands: Command[] = [];
  readonly rawCommands: Buffer[] = [];
  private seq = 0;
  private conn = '';

  private constructor(
    readonly probeId: string,
    readonly client: MqttClient,
  ) {}

  static async connect(url: string, creds: { probeId: string; token: string }, o: SimOptions = {}): Promise<SimProbe> {
    const conn = randomBytes(6).toString('hex');
    const will: ProbeEvent = eventSchema.parse({
      v: 1,
      id: `offline-${conn}`,
      seq: 0,
      probeId: creds.probeId,
      at: new Date().toISOString(),
      type: 'offline',
      message: 'the probe lost its connection without a goodbye',
    });
    const client = await mqtt.connectAsync(
      url,
      {
        clientId: o.clientId ?? creds.probeId,
        username: creds.probeId,
        password: creds.token,
        clean: true,
        reconnectPeriod: 0,
        connectTimeout: 5000,
        protocolVersion: 4,
        ...(o.keepalive !== undefined ? { keepalive: o.keepalive } : {}),
        will: { topic: topics.events(creds.probeId), payload: Buffer.from(JSON.stringify(will)), qos: 1, retain: false },
        ...(o.ca ? { ca: o.ca, rejectUnauthorized: true } : {}),
      },
      false,
    );
    const sim = new SimProbe(creds.probeId, client);
    sim.conn = conn;
    client.on('message', (topic, payload) => {
      if (topic !== topics.commands(creds.probeId)) return;
      sim.rawCommands.push(Buffer.from(payload));
      const r = commandSchema.safeParse(JSON.parse(payload.toString()));
      if (r.success) sim.commands.push(r.data);
    });
    client.on('error', () => undefined);
    await client.subscribeAsync(topics.commands(creds.probeId), { qos: 1 });
    await sim.event('online', { id: `online-${conn}` });
    return sim;
  }

  get connection(): string {
    return this.conn;
  }

  stateOf(over: Partial<ProbeState> = {}): ProbeState {
    return probeState(this.probeId, over);
  }

  async state(over: Partial<ProbeState> = {}): Promise<ProbeState> {
    const s = this.stateOf(over);
    await this.client.publishAsync(topics.state(this.probeId), JSON.stringify(s), { qos: 1, retain: false });
    return s;
  }

  eventOf(type: ProbeEvent['type'], fields: Partial<ProbeEvent> = {}): ProbeEvent {
    return eventSchema.parse({
      v: 1,
      id: `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`,
      seq: ++this.seq,
      probeId: this.probeId,
      at: new Date().toISOString(),
      type,
      ...fields,
    });
  }

  async event(type: ProbeEvent['type'], fields: Partial<ProbeEvent> = {}): Promise<ProbeEvent> {
    const e = this.eventOf(type, fields);
    await this.send(e);
    return e;
  }

  /** Publishes an event as given (a redelivery sends the same one again). */
  async send(e: ProbeEvent): Promise<void> {
    await this.client.publishAsync(topics.events(this.probeId), JSON.stringify(eventSchema.parse(e)), { qos: 1, retain: false });
  }

  /** The cable is pulled: the broker publishes the last will. */
  drop(): void {
    this.client.stream.destroy();
    this.client.end(true);
  }

  async close(): Promise<void> {
    await this.client.endAsync(true).catch(() => undefined);
  }
}

export async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false> | T | null | undefined | false, timeoutMs = 10_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < until) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

// ---------------------------------------------------------------------------------------------
// Sample packs, verdict-named variants, and "nothing changed"

/**
 * The sample packs and keys (images/src/samples), built once per vitest run and shared by the
 * server test files of every worker: the first to create the folder builds, the others wait for
 * its `ready` marker. Folders of earlier runs (whose parent process is gone) are removed.
 */
export async function serverSamples(): Promise<SamplePaths> {
  const prefix = 'sonde-server-samples-';
  for (const name of await readdir(tmpdir()).catch(() => [] as string[])) {
    if (!name.startsWith(prefix)) continue;
    const pid = Number(name.slice(prefix.length));
    if (!Number.isSafeInteger(pid) || pid === process.ppid) continue;
    if (!alive(pid)) await rm(join(tmpdir(), name), { recursive: true, force: true }).catch(() => undefined);
  }
  const dir = join(tmpdir(), `${prefix}${process.ppid}`);
  const ready = join(dir, 'ready.json');
  let mine = false;
  try {
    await mkdir(dir);
    mine = true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  if (mine) {
    const s = await buildSamples(join(dir, 'out'));
    await writeFile(ready, JSON.stringify(s));
    return s;
  }
  const until = Date.now() + 120_000;
  while (Date.now() < until) {
    try {
      return JSON.parse(await readFile(ready, 'utf8')) as SamplePaths;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  throw new Error(`the sample packs in ${dir} were not built in time`);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The outer tar entries of a pack: name, where its data starts, its size. */
export function packEntries(bytes: Buffer): { name: string; offset: number; size: number }[] {
  const out: { name: string; offset: number; size: number }[] = [];
  let at = 0;
  while (at + 512 <= bytes.length) {
    const header = bytes.subarray(at, at + 512);
    if (header.every((b) => b === 0)) break;
    const name = header.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(header.subarray(124, 136).toString('utf8').replace(/\0.*$/s, '').trim(), 8);
    out.push({ name, offset: at + 512, size });
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

/** A copy of `pack` with one byte of `entry` (a payload, manifest.json, …) flipped. */
export async function tampered(pack: string, out: string, entry: (name: string) => boolean): Promise<string> {
  const bytes = Buffer.from(await readFile(pack));
  const e = packEntries(bytes).find((x) => entry(x.name));
  if (!e) throw new Error(`no such entry in ${pack}`);
  const at = e.offset + Math.floor(e.size / 2);
  bytes[at] = bytes[at]! ^ 0x01;
  await writeFile(out, bytes);
  return out;
}

/**
 * Everything a refused request must leave as it was: every table but the audit log (which
 * records refusals on purpose), row by row, and the files of the pack store and the keyring.
 */
export async function stateDigest(dataDir: string): Promise<Record<string, string>> {
  const db = new Database(join(dataDir, 'sonde.db'), { readonly: true, fileMustExist: true });
  const out: Record<string, string> = {};
  try {
    const tables = db.prepare(`SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'audit' ORDER BY name`).all() as { name: string }[];
    for (const t of tables) {
      const rows = db.prepare(`SELECT * FROM "${t.name}" ORDER BY rowid`).raw().all();
      out[t.name] = createHash('sha256').update(JSON.stringify(rows)).digest('hex');
    }
  } finally {
    db.close();
  }
  for (const sub of ['packs', 'keyring']) out[`${sub}/`] = (await readdir(join(dataDir, sub))).sort().join(',');
  out['uploads/'] = (await readdir(join(dataDir, 'uploads'))).sort().join(',');
  return out;
}

/** Everything the server holds about one probe: its row, groups, tags, events, deployments, commands. */
export function probeDigest(dataDir: string, probeId: string): Record<string, string> {
  const db = new Database(join(dataDir, 'sonde.db'), { readonly: true, fileMustExist: true });
  try {
    const out: Record<string, string> = {};
    for (const [table, column] of [
      ['probes', 'id'],
      ['probe_groups', 'probe_id'],
      ['probe_tags', 'probe_id'],
      ['events', 'probe_id'],
      ['deployments', 'probe_id'],
      ['commands', 'probe_id'],
      ['tokens', 'probe_id'],
    ] as const) {
      const rows = db.prepare(`SELECT * FROM ${table} WHERE ${column} = ? ORDER BY rowid`).raw().all(probeId);
      out[table] = createHash('sha256').update(JSON.stringify(rows)).digest('hex');
    }
    return out;
  } finally {
    db.close();
  }
}

/** A valid state message of a healthy probe on 1.0.0 (the shared schema), with `over` applied. */
export function probeState(probeId: string, over: Partial<ProbeState> = {}): ProbeState {
  return stateSchema.parse({
    v: 1,
    probeId,
    at: new Date().toISOString(),
    agentVersion: '0.1.0',
    product: 'probe-app',
    version: '1.0.0',
    appVersion: '1.0.0',
    slot: 'a',
    dbVersion: 1,
    configVersion: 1,
    health: 'ok',
    appRunning: true,
    lastDeployment: null,
    busy: false,
    disk: { freeBytes: 1_000_000_000, totalBytes: 2_000_000_000 },
    uptimeSeconds: 100,
    inbox: { waiting: 0, incomplete: 0 },
    ...over,
  });
}
