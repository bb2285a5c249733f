import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { connect as netConnect, isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import type { MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { topics } from '../../../base/src/protocol/topics.js';
import type { ProbeEvent, ProbeState } from '../../../base/src/protocol/messages.js';
import { FailureLog } from './failure-log.js';
import { Backoff } from './backoff.js';
import type { Outbox } from './outbox.js';

/**
 * The probe's MQTT link (issue 4): username and client id = probe id, password = its token. It
 * subscribes to its own commands topic, publishes its state (QoS 1, not retained: the server keeps
 * the last state; see notes/fleet-facts.md) and drains the outbox in order. The last will, an
 * `offline` event, tells the server when the probe vanishes without a goodbye. Reconnects use
 * exponential backoff with full jitter; each attempt is a fresh client, and anything not
 * acknowledged is still in the outbox.
 */
/**
 * mqtt is CommonJS. Loaded through Node's ESM loader it keeps about 10 MiB more resident than
 * through require (measured here: 62.0 vs 52.4 MiB RSS for the module alone), and the agent's
 * memory budget is tight, so it is required.
 */
const require = createRequire(import.meta.url);
const mqtt = require('mqtt') as typeof import('mqtt');

/**
 * The link's socket. mqtt.connect() would load every transport mqtt.js has on first use
 * (WebSocket, SOCKS, TLS, and their dependencies) to pick one by URL scheme; the agent speaks
 * mqtt: and mqtts: only, so it opens the socket itself and hands it to MqttClient. TLS is loaded
 * only for mqtts:, where the server CA from the enrollment file is the only trust anchor.
 */
export function openBrokerSocket(url: URL, ca: string | undefined): Duplex {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (url.protocol === 'mqtts:') {
    const tls = require('node:tls') as typeof import('node:tls');
    return tls.connect({
      host,
      port: Number(url.port || 8883),
      ...(isIP(host) === 0 ? { servername: host } : {}),
      ...(ca ? { ca } : {}),
      rejectUnauthorized: true,
    });
  }
  if (url.protocol === 'mqtt:') return netConnect({ host, port: Number(url.port || 1883) });
  throw new Error(`${url.protocol} broker URLs are not supported; use mqtt: or mqtts:`);
}

export interface MqttLinkOptions {
  readonly url: string;
  readonly probeId: string;
  readonly token: string;
  /** PEM of the server CA, pinned for mqtts:. */
  readonly ca?: string;
  readonly reconnect: { readonly minMs: number; readonly maxMs: number };
  /** Seconds between keepalive exchanges on an idle link (docs/traffic.md). */
  readonly keepaliveSeconds: number;
  readonly outbox: Outbox;
  readonly log: Logger;
  readonly onCommand: (payload: Buffer) => void;
  readonly onConnect?: () => void;
}

export class MqttLink {
  private client: MqttClient | null = null;
  private readonly backoff: Backoff;
  private readonly failures: FailureLog;
  private stopped = false;
  private draining: Promise<void> | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private connectedSince: number | null = null;
  private disconnectedSince = Date.now();

  constructor(private readonly o: MqttLinkOptions) {
    this.backoff = new Backoff(o.reconnect.minMs, o.reconnect.maxMs);
    this.failures = new FailureLog(o.log, 'mqtt connection');
  }

  get connected(): boolean {
    return this.connectedSince !== null && this.client?.connected === true;
  }

  /** How long the link has been down (0 when up). */
  offlineForMs(): number {
    return this.connected ? 0 : Date.now() - this.disconnectedSince;
  }

  start(): void {
    this.stopped = false;
    this.connect();
  }

  private connect(): void {
    if (this.stopped) return;
    const { o } = this;
    const conn = randomBytes(6).toString('hex');
    const will: ProbeEvent = {
      v: 1,
      id: `offline-${conn}`,
      seq: o.outbox.lastSeq(),
      probeId: o.probeId,
      at: new Date().toISOString(),
      type: 'offline',
      message: 'the probe lost its connection without a goodbye',
    };
    const url = new URL(o.url);
    let failed: ((e: Error) => void) | null = null;
    const client = new mqtt.MqttClient(() => {
      const socket = openBrokerSocket(url, o.ca);
      // mqtt.js passes on only socket errors that carry a code; a TLS failure is a lost link too.
      socket.on('error', (e) => failed?.(e));
      return socket;
    }, {
      clientId: o.probeId,
      username: o.probeId,
      password: o.token,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
      keepalive: o.keepaliveSeconds,
      protocolVersion: 4,
      // mqtt-packet otherwise pre-builds a 2-byte Buffer for each of the 65,536 packet ids at the
      // first write: 65,536 objects, 6 MiB of the agent's 22 MiB of live heap when idle.
      writeCache: false,
      will: { topic: topics.events(o.probeId), payload: Buffer.from(JSON.stringify(will)), qos: 1, retain: false },
    });
    this.client = client;
    client.on('connect', () => {
      this.connectedSince = Date.now();
      this.backoff.reset();
      this.failures.reset();
      o.log.info({ broker: new URL(o.url).host }, 'mqtt connected');
      client.subscribe(topics.commands(o.probeId), { qos: 1 }, (err) => {
        if (err) o.log.warn({ err: err.message }, 'mqtt subscribe failed');
      });
      o.outbox.add({ type: 'online', id: `online-${conn}` });
      o.onConnect?.();
      void this.drain();
    });
    client.on('message', (topic, payload) => {
      if (topic === topics.commands(o.probeId)) o.onCommand(payload);
    });
    const lost = (why: string): void => {
      if (this.client !== client) return;
      if (this.connectedSince !== null) {
        this.disconnectedSince = Date.now();
        o.log.warn({ why }, 'mqtt disconnected');
      } else {
        this.failures.failed(why, { broker: url.host });
      }
      this.connectedSince = null;
      this.client = null;
      // The guard above ignores this client's later 'close' and 'error'. Its listeners must stay:
      // mqtt.js clears its CONNACK timer and keepalive in its own 'close' handler, and without
      // them a failed attempt kept the process alive for connectTimeout (a slow SIGTERM).
      client.end(true);
      if (this.stopped) return;
      const delay = this.backoff.next();
      this.retryTimer = setTimeout(() => this.connect(), delay);
      this.retryTimer.unref();
    };
    failed = (e) => lost(e.message);
    client.on('error', (e) => lost(e.message));
    client.on('close', () => lost('closed'));
  }

  /**
   * Sends the outbox in order, one QoS 1 publish at a time, deleting each once acknowledged. A
   * call while a drain runs gets that drain: it re-reads the outbox until it is empty, so it also
   * sends what the caller just added (stop() waits on this for its goodbye).
   */
  drain(): Promise<void> {
    return (this.draining ??= this.drainLoop());
  }

  private async drainLoop(): Promise<void> {
    // Nothing runs before drain() has stored this promise; after that, the loop's last look at
    // the outbox and the reset below happen in one step, so no event added can fall between.
    await null;
    try {
      for (;;) {
        const client = this.client;
        if (!client || !this.connected) return;
        const rows = this.o.outbox.peek(50);
        if (rows.length === 0) return;
        for (const row of rows) {
          if (this.client !== client || !this.connected) return;
          try {
            await client.publishAsync(topics.events(this.o.probeId), JSON.stringify(row.event), { qos: 1, retain: false });
          } catch (e) {
            this.o.log.warn({ err: (e as Error).message, seq: row.seq }, 'event not acknowledged; kept for the next connection');
            return;
          }
          this.o.outbox.delivered(row.seq);
        }
      }
    } finally {
      this.draining = null;
    }
  }

  async publishState(state: ProbeState): Promise<boolean> {
    const client = this.client;
    if (!client || !this.connected) return false;
    try {
      await client.publishAsync(topics.state(this.o.probeId), JSON.stringify(state), { qos: 1, retain: false });
      return true;
    } catch {
      return false;
    }
  }

  /** A goodbye: the offline event is sent while still connected, so the will is not needed. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    const client = this.client;
    if (client && this.connected) {
      this.o.outbox.add({ type: 'offline', message: 'the agent is stopping' });
      await Promise.race([this.drain(), new Promise((r) => setTimeout(r, 2000))]);
      this.client = null; // a deliberate close is not a lost link
      await client.endAsync().catch(() => undefined);
    } else if (client) {
      client.end(true);
    }
    this.client = null;
    this.connectedSince = null;
  }
}
