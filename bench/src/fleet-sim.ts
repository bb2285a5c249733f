#!/usr/bin/env node
/**
 * bench/fleet's simulated probes: one mqtt.js client per probe, as the agent's link makes them
 * (agent/src/link/mqtt-link.ts): username = client id = probe id, password = its token, clean
 * session, keepalive 30 s, an `offline` event as last will, a fresh client per attempt with the
 * agent's own exponential backoff and full jitter (Backoff, 1 s then doubling up to 60 s). On each
 * connect it subscribes to its commands topic, publishes an `online` event and its state; then its
 * state every 10 s at QoS 1, not retained. An install command is answered with `command-accepted`,
 * as the agent does before it starts downloading.
 *
 * Each state's `at` is its publish time to the microsecond (wallMs(), fleet-common.ts), which the
 * server process compares with the time the row was committed. One process holds at most a few
 * thousand probes (fleet.ts splits the fleet), well under the 20,000 open files a process may have.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import mqtt, { type MqttClient } from 'mqtt';
import { Backoff } from '../../agent/src/link/backoff.js';
import type { ProbeEvent, ProbeState } from '../../base/src/protocol/messages.js';
import { topics } from '../../base/src/protocol/topics.js';
import { childConfig, eldSummary, ELD_RESOLUTION_MS, isoMicro, notify, serve, wallMs } from './fleet-common.js';

export interface FleetSimConfig {
  readonly index: number;
  readonly url: string;
  /** JSON: [probeId, token][] */
  readonly credentials: string;
  /** Connects per second for this process's share of the ramp. */
  readonly rate: number;
  readonly stateIntervalMs: number;
  /** MQTT keepalive, seconds: below the state interval, each probe also pings between states (the server's last-seen path). */
  readonly keepaliveSeconds: number;
  readonly connectTimeoutMs: number;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  readonly product: string;
  readonly version: string;
}

export interface SimStats {
  readonly probes: number;
  readonly connected: number;
  /** CONNACK latency of each successful attempt since the last reset (ms, from mqtt.connect()). */
  readonly connack: number[];
  /** When each attempt whose CONNACK took over 1 s started (wall ms). */
  readonly slow: number[];
  readonly attempts: number;
  readonly timeouts: number;
  readonly errors: Record<string, number>;
  readonly firstAttemptAt: number;
  readonly lastConnackAt: number;
  readonly statesPublished: number;
  readonly eld: { p50: number; p99: number; max: number };
}

interface Probe {
  readonly id: string;
  readonly token: string;
  readonly backoff: Backoff;
  client: MqttClient | null;
  connected: boolean;
  seq: number;
  stateTimer: NodeJS.Timeout | null;
  retryTimer: NodeJS.Timeout | null;
  watchdog: NodeJS.Timeout | null;
  /** Install commands acknowledged (the agent ignores a repeat). */
  readonly seen: Set<string>;
  readonly startedAt: number;
}

const c = childConfig<FleetSimConfig>();
const probes: Probe[] = (JSON.parse(readFileSync(c.credentials, 'utf8')) as [string, string][]).map(([id, token]) => ({
  id,
  token,
  backoff: new Backoff(c.reconnectMinMs, c.reconnectMaxMs),
  client: null,
  connected: false,
  seq: 0,
  stateTimer: null,
  retryTimer: null,
  watchdog: null,
  seen: new Set(),
  startedAt: wallMs(),
}));

let stopping = false;
let connectedCount = 0;
let stats = freshStats();
/** Per probe, when the first command of the current fan-out reached it. */
let commandAt = new Map<string, number>();
const eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
eld.enable();

function freshStats(): { connack: number[]; slow: number[]; attempts: number; timeouts: number; errors: Record<string, number>; firstAttemptAt: number; lastConnackAt: number; statesPublished: number } {
  return { connack: [], slow: [], attempts: 0, timeouts: 0, errors: {}, firstAttemptAt: Number.POSITIVE_INFINITY, lastConnackAt: 0, statesPublished: 0 };
}

function stateOf(p: Probe): ProbeState {
  return {
    v: 1,
    probeId: p.id,
    at: isoMicro(wallMs()),
    agentVersion: '0.1.0',
    product: c.product,
    version: c.version,
    appVersion: c.version,
    slot: 'a',
    dbVersion: 1,
    configVersion: 1,
    health: 'ok',
    appRunning: true,
    lastDeployment: null,
    busy: false,
    disk: { freeBytes: 3_456_789_012, totalBytes: 7_812_345_678 },
    uptimeSeconds: Math.round((wallMs() - p.startedAt) / 1000),
    inbox: { waiting: 0, incomplete: 0 },
  };
}

function publishState(p: Probe): void {
  const client = p.client;
  if (!client || !p.connected) return;
  client.publish(topics.state(p.id), JSON.stringify(stateOf(p)), { qos: 1, retain: false });
  stats.statesPublished++;
}

function event(p: Probe, type: ProbeEvent['type'], fields: Partial<ProbeEvent> = {}): ProbeEvent {
  return { v: 1, id: `${type}-${randomBytes(6).toString('hex')}`, seq: ++p.seq, probeId: p.id, at: new Date().toISOString(), type, ...fields };
}

function countError(key: string): void {
  stats.errors[key] = (stats.errors[key] ?? 0) + 1;
}

function connect(p: Probe): void {
  if (stopping) return;
  p.retryTimer = null;
  const conn = randomBytes(6).toString('hex');
  const will: ProbeEvent = { ...event(p, 'offline', { message: 'the probe lost its connection without a goodbye' }), id: `offline-${conn}`, seq: p.seq };
  const started = wallMs();
  stats.attempts++;
  if (started < stats.firstAttemptAt) stats.firstAttemptAt = started;
  const client = mqtt.connect(c.url, {
    clientId: p.id,
    username: p.id,
    password: p.token,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: c.connectTimeoutMs,
    keepalive: c.keepaliveSeconds,
    protocolVersion: 4,
    will: { topic: topics.events(p.id), payload: Buffer.from(JSON.stringify(will)), qos: 1, retain: false },
  });
  p.client = client;
  // mqtt.js times out the CONNACK only once TCP is up; this covers a SYN that is never answered.
  p.watchdog = setTimeout(() => {
    if (p.client !== client || p.connected) return;
    stats.timeouts++;
    countError('connect timeout (no TCP connection)');
    lost(p, client);
  }, c.connectTimeoutMs + 1000);
  client.on('connect', () => {
    if (p.client !== client) return;
    const now = wallMs();
    stats.connack.push(now - started);
    if (now - started > 1000) stats.slow.push(started);
    if (now > stats.lastConnackAt) stats.lastConnackAt = now;
    if (p.watchdog) clearTimeout(p.watchdog);
    p.watchdog = null;
    p.connected = true;
    connectedCount++;
    p.backoff.reset();
    client.subscribe(topics.commands(p.id), { qos: 1 });
    client.publish(topics.events(p.id), JSON.stringify({ ...event(p, 'online'), id: `online-${conn}` }), { qos: 1, retain: false });
    publishState(p);
    // As the agent: one report timer for the life of the probe, skipped while disconnected.
    p.stateTimer ??= setInterval(() => publishState(p), c.stateIntervalMs);
  });
  client.on('message', (topic, payload) => {
    if (topic !== topics.commands(p.id)) return;
    const at = wallMs();
    if (!commandAt.has(p.id)) commandAt.set(p.id, at);
    let command: { type?: string; commandId?: string };
    try {
      command = JSON.parse(payload.toString()) as typeof command;
    } catch {
      countError('command not JSON');
      return;
    }
    if (command.type === 'install' && command.commandId && !p.seen.has(command.commandId)) {
      p.seen.add(command.commandId);
      client.publish(topics.events(p.id), JSON.stringify(event(p, 'command-accepted', { commandId: command.commandId })), { qos: 1, retain: false });
    }
  });
  client.on('error', (e: Error & { code?: string | number }) => {
    if (p.client !== client) return;
    if (/timeout/i.test(e.message)) stats.timeouts++;
    countError(typeof e.code === 'string' ? e.code : e.message);
    lost(p, client);
  });
  client.on('close', () => lost(p, client));
}

function lost(p: Probe, client: MqttClient): void {
  if (p.client !== client) return;
  if (p.watchdog) clearTimeout(p.watchdog);
  p.watchdog = null;
  if (p.connected) connectedCount--;
  p.connected = false;
  p.client = null;
  client.end(true);
  if (stopping) return;
  p.retryTimer = setTimeout(() => connect(p), p.backoff.next());
}

/** Connects the probes at `rate` per second from wall time `at`. */
function ramp(at: number): void {
  let started = 0;
  const tick = (): void => {
    const due = Math.min(probes.length, Math.floor(((wallMs() - at) * c.rate) / 1000));
    while (started < due && !stopping) connect(probes[started++]!);
    if (started < probes.length && !stopping) setTimeout(tick, 5);
  };
  setTimeout(tick, Math.max(0, at - wallMs()));
}

serve({
  ramp: (a: { at: number }) => {
    ramp(a.at);
    return null;
  },
  stats: (): SimStats => ({
    probes: probes.length,
    connected: connectedCount,
    ...stats,
    eld: eldSummary(eld),
  }),
  connected: () => connectedCount,
  resetStats: () => {
    stats = freshStats();
    eld.reset();
    return null;
  },
  /** The cable is pulled on every probe at once: each socket is destroyed, the wills follow. */
  drop: () => {
    const at = wallMs();
    for (const p of probes) p.client?.stream.destroy();
    return at;
  },
  fanoutReset: () => {
    commandAt = new Map();
    return null;
  },
  /** How many probes received a command since fanoutReset; with `times`, when each did. */
  commands: (a: { times: boolean }) => ({ received: commandAt.size, times: a.times ? [...commandAt.values()] : [] }),
  quit: () => {
    stopping = true;
    for (const p of probes) {
      for (const t of [p.stateTimer, p.retryTimer, p.watchdog]) if (t) clearTimeout(t);
      p.client?.end(true);
    }
    setTimeout(() => process.exit(0), 200);
    return null;
  },
});
notify('ready', { pid: process.pid, probes: probes.length });
