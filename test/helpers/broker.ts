import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash, timingSafeEqual } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Aedes, type AedesPublishPacket, type AuthenticateError, type Client } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';
import { parseTopic, TOPIC_PREFIX } from '../../base/src/protocol/topics.js';
import { freePort } from '../probe-app/probe-root.js';
import { canConnect } from '../../base/src/net/can-connect.js';

/**
 * MQTT brokers for the daemon tests, confined the way the fleet server will confine them
 * (DESIGN.md, "Fleet server"; notes/fleet-facts.md): username = client id = probe id, password =
 * the probe's token (kept as a SHA-256 hash, like the server), and a probe may publish only to its
 * own state and events topics and subscribe only to its own commands topic. A privileged "server"
 * user may do anything.
 *
 * Two brokers: aedes in-process (the server's embedded broker), whose 'publish' hook is the
 * server-side ingest the tests read; and Mosquitto as a foreground child process with a temp
 * config, a password file made by `mosquitto_passwd -b`, and `%u` pattern ACLs (interop).
 */
const run = promisify(execFile);

export const SERVER_USER = 'sonde-server';

/** One message the broker accepted from a client, in arrival order (raw: duplicates included). */
export interface Received {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: number;
  readonly retain: boolean;
  /** The publishing client, or null for a message the broker made (a last will has its owner's). */
  readonly clientId: string | null;
  readonly at: number;
}

/** A publish or subscribe the ACL refused. */
export interface Denied {
  readonly clientId: string;
  readonly action: 'publish' | 'subscribe' | 'connect';
  readonly topic: string;
}

export interface AedesBroker {
  readonly port: number;
  readonly url: string;
  /** Everything clients published under sonde/v1/probes/, across restarts. */
  readonly received: Received[];
  readonly denied: Denied[];
  /** Connections accepted since the broker first started, per client id. */
  readonly connects: Map<string, number>;
  /** Granted subscriptions since the broker first started, per client id (a probe is ready for commands). */
  readonly subscribes: Map<string, number>;
  readonly up: boolean;
  addUser(username: string, password: string): void;
  /** Retained messages the broker holds now. */
  retained(): Promise<{ topic: string; payload: Buffer }[]>;
  /**
   * The broker goes down: the listening socket closes and every client connection is destroyed,
   * with nothing said to the clients (like a crash or a cable pulled at the server).
   */
  down(): Promise<void>;
  /**
   * The broker dies the moment it has taken in the first message that `match` accepts, before
   * it can acknowledge it: the client never gets that PUBACK and must send the message again.
   * Resolves once the broker is down.
   */
  dieOn(match: (r: Received) => boolean): Promise<void>;
  /** A fresh broker on the same port (a restart: no sessions, no retained messages). */
  restart(): Promise<void>;
  close(): Promise<void>;
}

const sha256 = (s: string | Buffer): Buffer => createHash('sha256').update(s).digest();

/** The ACL, shared by both brokers' tests: what a probe may touch. */
export function probeMayPublish(probeId: string, topic: string): boolean {
  const t = parseTopic(topic);
  return t !== null && t.probeId === probeId && (t.kind === 'state' || t.kind === 'events');
}

export function probeMaySubscribe(probeId: string, topic: string): boolean {
  const t = parseTopic(topic);
  return t !== null && t.probeId === probeId && t.kind === 'commands';
}

export async function startAedesBroker(opts: { port?: number } = {}): Promise<AedesBroker> {
  const port = opts.port ?? (await freePort());
  const users = new Map<string, Buffer>();
  const received: Received[] = [];
  const denied: Denied[] = [];
  const connects = new Map<string, number>();
  const subscribes = new Map<string, number>();
  let aedes: Aedes | null = null;
  let dying: { match: (r: Received) => boolean; done: (p: Promise<void>) => void } | null = null;
  let server: Server | null = null;
  const sockets = new Set<Socket>();

  const authFailure = (): AuthenticateError => Object.assign(new Error('bad username or password'), { returnCode: 4 as const });

  const makeAedes = async (): Promise<Aedes> => {
    const broker = await Aedes.createBroker({
      authenticate: (client, username, password, done) => {
        const want = username === undefined ? undefined : users.get(username);
        const ok = want !== undefined && password !== undefined && timingSafeEqual(want, sha256(password));
        // A probe's client id is its username: one probe cannot take another's session.
        if (!ok || (username !== SERVER_USER && client.id !== username)) {
          denied.push({ clientId: client.id, action: 'connect', topic: '' });
          done(authFailure(), false);
          return;
        }
        (client as Client & { sondeUser?: string }).sondeUser = username;
        connects.set(client.id, (connects.get(client.id) ?? 0) + 1);
        done(null, true);
      },
      authorizePublish: (client, packet, done) => {
        const user = (client as (Client & { sondeUser?: string }) | null)?.sondeUser;
        if (dying && client) {
          const r: Received = { topic: packet.topic, payload: Buffer.from(packet.payload), qos: packet.qos, retain: packet.retain, clientId: client.id, at: Date.now() };
          if (dying.match(r)) {
            // aedes writes a QoS 1 PUBACK right after this hook, before it publishes. Here the
            // server has taken the message in (recorded) and dies before that PUBACK: down()
            // destroys every socket synchronously, and the publish goes no further.
            const d = dying;
            dying = null;
            received.push(r);
            d.done(down());
            done(new Error('the broker died'));
            return;
          }
        }
        if (user === SERVER_USER || (user !== undefined && probeMayPublish(user, packet.topic))) return done(null);
        denied.push({ clientId: client?.id ?? '', action: 'publish', topic: packet.topic });
        // aedes closes the connection of a client whose publish is refused.
        done(new Error(`${user ?? '?'} may not publish to ${packet.topic}`));
      },
      authorizeSubscribe: (client, sub, done) => {
        const user = (client as Client & { sondeUser?: string }).sondeUser;
        if (user === SERVER_USER || (user !== undefined && probeMaySubscribe(user, sub.topic))) return done(null, sub);
        denied.push({ clientId: client.id, action: 'subscribe', topic: sub.topic });
        done(null, null); // a failure return code in the SUBACK
      },
    });
    broker.on('subscribe', (subs, client) => {
      if (subs.length > 0) subscribes.set(client.id, (subscribes.get(client.id) ?? 0) + 1);
    });
    broker.on('publish', (packet: AedesPublishPacket, client: Client | null) => {
      if (!packet.topic.startsWith(`${TOPIC_PREFIX}/`)) return;
      // A last will is published by the broker for its owner; the packet carries the owner's id.
      const clientId = client?.id ?? (packet as AedesPublishPacket & { clientId?: string }).clientId ?? null;
      received.push({ topic: packet.topic, payload: Buffer.from(packet.payload), qos: packet.qos, retain: packet.retain, clientId, at: Date.now() });
    });
    return broker;
  };

  const listen = async (): Promise<void> => {
    aedes = await makeAedes();
    const broker = aedes;
    server = createServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      broker.handle(socket);
    });
    const srv = server;
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen(port, '127.0.0.1', () => {
        srv.off('error', reject);
        resolve();
      });
    });
  };

  const down = async (): Promise<void> => {
    const srv = server;
    const broker = aedes;
    server = null;
    aedes = null;
    if (srv) {
      const closed = new Promise<void>((resolve) => srv.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    }
    if (broker) await new Promise<void>((resolve) => broker.close(() => resolve()));
  };

  await listen();
  const self: AedesBroker = {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    received,
    denied,
    connects,
    subscribes,
    get up() {
      return server !== null;
    },
    addUser(username, password) {
      users.set(username, sha256(password));
    },
    async retained() {
      if (!aedes) return [];
      const persistence = (aedes as unknown as { persistence: { createRetainedStream(p: string): AsyncIterable<{ topic: string; payload: Buffer }> } }).persistence;
      const out: { topic: string; payload: Buffer }[] = [];
      for await (const p of persistence.createRetainedStream('#')) {
        if (!p.topic.startsWith('$SYS')) out.push({ topic: p.topic, payload: Buffer.from(p.payload) });
      }
      return out;
    },
    down,
    dieOn(match) {
      return new Promise<void>((resolve, reject) => {
        dying = { match, done: (p) => p.then(resolve, reject) };
      });
    },
    async restart() {
      await down();
      await listen();
    },
    close: down,
  };
  return self;
}

/** A privileged client (the fleet server's side): subscribes to every probe, publishes commands. */
export interface ServerClient {
  readonly client: MqttClient;
  /** Messages delivered to this client, in order. */
  readonly messages: { topic: string; payload: Buffer; retain: boolean }[];
  command(probeId: string, body: unknown): Promise<void>;
  close(): Promise<void>;
}

export async function connectServerClient(url: string, password: string, subscribe: readonly string[] = []): Promise<ServerClient> {
  const client = await mqtt.connectAsync(url, {
    clientId: `${SERVER_USER}-${process.pid}-${Math.random().toString(16).slice(2, 8)}`,
    username: SERVER_USER,
    password,
    clean: true,
    reconnectPeriod: 200,
    connectTimeout: 5000,
    protocolVersion: 4,
  });
  const messages: ServerClient['messages'] = [];
  client.on('message', (topic, payload, packet) => messages.push({ topic, payload: Buffer.from(payload), retain: packet.retain }));
  for (const t of subscribe) await client.subscribeAsync(t, { qos: 1 });
  return {
    client,
    messages,
    async command(probeId, body) {
      const payload = Buffer.isBuffer(body) ? body : typeof body === 'string' ? body : JSON.stringify(body);
      await client.publishAsync(`${TOPIC_PREFIX}/${probeId}/commands`, payload, { qos: 1 });
    },
    close: async () => {
      await client.endAsync(true).catch(() => undefined);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Mosquitto

export const MOSQUITTO = '/usr/sbin/mosquitto';
export const MOSQUITTO_PASSWD = '/usr/bin/mosquitto_passwd';

export interface MosquittoBroker {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** Everything Mosquitto logged (log_type all, to stdout). */
  log(): string;
  close(): Promise<void>;
}

/**
 * Mosquitto 2.0 in the foreground with a temp config: loopback only, no persistence, no anonymous
 * clients, a password file made with `mosquitto_passwd -b` (PBKDF2 hashes), and pattern ACLs keyed
 * on the username, so each probe is confined to its own topics in two lines (notes/fleet-facts.md).
 */
export async function startMosquitto(users: Readonly<Record<string, string>>): Promise<MosquittoBroker> {
  const dir = await mkdtemp(join(tmpdir(), 'sonde-mosquitto-'));
  const passwd = join(dir, 'passwd');
  const acl = join(dir, 'acl');
  let first = true;
  for (const [user, password] of Object.entries(users)) {
    await run(MOSQUITTO_PASSWD, [...(first ? ['-c'] : []), '-b', passwd, user, password]);
    first = false;
  }
  await writeFile(
    acl,
    [
      `user ${SERVER_USER}`,
      `topic readwrite ${TOPIC_PREFIX}/#`,
      '',
      // Every other user is a probe: its own state and events out, its own commands in.
      `pattern write ${TOPIC_PREFIX}/%u/state`,
      `pattern write ${TOPIC_PREFIX}/%u/events`,
      `pattern read ${TOPIC_PREFIX}/%u/commands`,
      '',
    ].join('\n'),
  );
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  await writeFile(
    conf,
    [
      'per_listener_settings false',
      'allow_anonymous false',
      `password_file ${passwd}`,
      `acl_file ${acl}`,
      'persistence false',
      'log_dest stdout',
      'log_type all',
      // Running as root, Mosquitto would switch to user mosquitto, which cannot read the temp dir.
      'user root',
      `listener ${port} 127.0.0.1`,
      '',
    ].join('\n'),
  );
  // Mosquitto's stdout is block-buffered on a pipe; stdbuf makes its log arrive line by line.
  const child: ChildProcess = spawn('stdbuf', ['-oL', MOSQUITTO, '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const failure = child.exitCode !== null ? `mosquitto exited (${child.exitCode})` : Date.now() > deadline ? 'mosquitto did not start listening' : null;
    if (failure) {
      child.kill('SIGKILL');
      await exited;
      await rm(dir, { recursive: true, force: true });
      throw new Error(`${failure}: ${out}`);
    }
    if (await canConnect(port)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    dir,
    log: () => out,
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

