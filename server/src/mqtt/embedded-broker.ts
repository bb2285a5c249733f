import { Aedes, type AuthenticateError, type Client } from 'aedes';
import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { Logger } from 'pino';
import { MAX_MESSAGE_BYTES } from '../../../base/src/protocol/messages.js';
import { TOPIC_PREFIX } from '../../../base/src/protocol/topics.js';
import { ServerError } from '../errors.js';
import type { Metrics } from '../metrics/registry.js';
import { isProbeId, probeMayPublish, probeMaySubscribe } from './acl.js';
import type { Bus, MessageHandler } from './bus.js';
import { ConnectLimiter, firstHeaderFits, guardFrames, type ConnectLimit, type FrameLimits } from './frame-guard.js';

/**
 * The embedded MQTT broker (DESIGN.md: "one process, nothing to install"): aedes on 127.0.0.1,
 * plus MQTTS on each --listen address. Probes log in with username = client id = probe id and
 * their token as password; the ACLs of acl.ts confine each to its own topics. The server's own
 * publishes (commands) go through aedes.publish() in-process and bypass the ACL.
 *
 * notes/fleet-facts.md shapes two choices: no message from a probe is ever retained (the retain
 * flag is cleared on the way in, so SUBSCRIBE never scans a growing retained store), and probe
 * messages are handed to the ingest as they arrive, which writes them in batches.
 */
export interface EmbeddedBrokerOptions {
  readonly host: string;
  readonly port: number;
  readonly tls?: { readonly addresses: readonly string[]; readonly certPem: string; readonly keyPem: string } | undefined;
  /** true when `token` is the live token of probe `probeId`. */
  readonly authenticate: (probeId: string, token: string) => Promise<boolean>;
  readonly onMessage: MessageHandler;
  /** A probe's keepalive (PINGREQ): it is alive though it said nothing (docs/traffic.md). */
  readonly onPing?: (probeId: string) => void;
  readonly log: Logger;
  readonly metrics: Metrics;
  /** aedes' in-flight window for deliveries (default 100); fan-outs are chunked anyway. */
  readonly concurrency?: number;
  /** Bounds on packet sizes, before and after authentication (frame-guard.ts). */
  readonly frameLimits?: FrameLimits;
  /** Connection attempts per source address (frame-guard.ts). */
  readonly connectLimit?: ConnectLimit;
}

/** A CONNECT holds a client id, a username, a token and a last will: a few hundred bytes. */
export const DEFAULT_FRAME_LIMITS: FrameLimits = Object.freeze({ firstPacket: 16 * 1024, packet: MAX_MESSAGE_BYTES + 4096 });

/**
 * Logs the first event of each window and counts the rest, which the next logged line reports
 * (`suppressed`): under a flood the log stays a few lines a minute.
 */
class WindowedLog {
  private windowStart = 0;
  private suppressed = 0;

  constructor(
    private readonly log: Logger,
    private readonly msg: string,
    private readonly windowMs: number,
  ) {}

  note(address: string | null, why: string): void {
    const now = Date.now();
    if (now - this.windowStart < this.windowMs) {
      this.suppressed += 1;
      return;
    }
    this.log.warn({ address, why, suppressed: this.suppressed }, this.msg);
    this.windowStart = now;
    this.suppressed = 0;
  }
}

const BAD_CREDENTIALS = 4;
const NOT_AUTHORISED = 5;

function refusal(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

export class EmbeddedBroker implements Bus {
  readonly kind = 'embedded' as const;
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  /** The authenticated probe id of each client. */
  private readonly users = new WeakMap<Client, string>();
  private readonly limiter: ConnectLimiter;
  /** A flood must not become a flood of log lines: one line per window, with a count. */
  private readonly floodLog: WindowedLog;

  private constructor(
    private readonly aedes: Aedes,
    private readonly o: EmbeddedBrokerOptions,
  ) {
    this.limiter = new ConnectLimiter(o.connectLimit);
    this.floodLog = new WindowedLog(o.log, 'mqtt connection closed: packet too large', 10_000);
  }

  static async start(o: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
    let self: EmbeddedBroker | null = null;
    const aedes = await Aedes.createBroker({
      concurrency: o.concurrency ?? 100,
      authenticate: (client, username, password, done) => self!.authenticate(client, username, password, done),
      authorizePublish: (client, packet, done) => {
        if (client === null) return done(null);
        const user = self!.users.get(client);
        if (user !== undefined && probeMayPublish(user, packet.topic)) {
          packet.retain = false;
          return done(null);
        }
        o.metrics.mqttDenied.inc({ action: 'publish' });
        o.log.warn({ code: 'FORBIDDEN', probeId: user ?? null, topic: packet.topic }, 'mqtt publish refused');
        // aedes closes the connection of a client whose publish is refused.
        done(new Error('not authorised'));
      },
      authorizeSubscribe: (client, sub, done) => {
        const user = self!.users.get(client);
        if (user !== undefined && probeMaySubscribe(user, sub.topic)) return done(null, sub);
        o.metrics.mqttDenied.inc({ action: 'subscribe' });
        o.log.warn({ code: 'FORBIDDEN', probeId: user ?? null, topic: sub.topic }, 'mqtt subscribe refused');
        done(null, null);
      },
    });
    self = new EmbeddedBroker(aedes, o);
    aedes.on('publish', (packet, client) => {
      // Only what a probe published: the server's own commands come back here with no client.
      if (!client || !packet.topic.startsWith(`${TOPIC_PREFIX}/`)) return;
      o.onMessage(packet.topic, Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload), performance.now());
    });
    aedes.on('ping', (_packet, client) => {
      const user = client ? self!.users.get(client) : undefined;
      if (user !== undefined) o.onPing?.(user);
    });
    try {
      await self.listen();
    } catch (e) {
      await self.close();
      throw e;
    }
    return self;
  }

  private authenticate(
    client: Client,
    username: string | undefined,
    password: Buffer | undefined,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void {
    if (!isProbeId(username) || password === undefined) {
      this.o.metrics.mqttDenied.inc({ action: 'connect' });
      done(refusal('bad username or password', BAD_CREDENTIALS), false);
      return;
    }
    if (client.id !== username) {
      // One probe must not take over another's session by naming its client id.
      this.o.metrics.mqttDenied.inc({ action: 'connect' });
      done(refusal('the client id must be the probe id', NOT_AUTHORISED), false);
      return;
    }
    this.o
      .authenticate(username, password.toString('utf8'))
      .then((ok) => {
        if (!ok) {
          this.o.metrics.mqttDenied.inc({ action: 'connect' });
          this.o.log.warn({ code: 'AUTH_REQUIRED', probeId: username }, 'mqtt login refused');
          done(refusal('bad username or password', BAD_CREDENTIALS), false);
          return;
        }
        this.users.set(client, username);
        this.o.metrics.mqttConnections.inc();
        done(null, true);
      })
      .catch((e: unknown) => {
        this.o.log.error({ err: (e as Error).message }, 'mqtt authentication failed');
        done(refusal('server unavailable', 3), false);
      });
  }

  private async listen(): Promise<void> {
    const handle = (socket: Socket): void => {
      if (!this.limiter.admit(socket.remoteAddress)) {
        this.o.metrics.mqttDenied.inc({ action: 'connect-rate' });
        socket.destroy();
        return;
      }
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => undefined); // a peer that resets before the broker takes the socket
      const limits = this.o.frameLimits ?? DEFAULT_FRAME_LIMITS;
      const breach = (why: string): void => {
        this.o.metrics.mqttDenied.inc({ action: 'oversize' });
        this.floodLog.note(socket.remoteAddress ?? null, why);
      };
      void firstHeaderFits(socket, limits, breach).then((ok) => {
        if (!ok) return;
        guardFrames(socket, limits, breach);
        this.aedes.handle(socket);
      });
    };
    const plain = createServer(handle);
    await bind(plain, this.o.port, this.o.host);
    this.servers.push(plain);
    const tls = this.o.tls;
    if (tls) {
      for (const address of tls.addresses) {
        const secure = createTlsServer({ cert: tls.certPem, key: tls.keyPem, minVersion: 'TLSv1.2' }, handle);
        await bind(secure, this.port, address);
        this.servers.push(secure);
      }
    }
  }

  /** The port of the loopback listener (the TLS listeners use the same number). */
  get port(): number {
    const a = this.servers[0]?.address();
    return a && typeof a === 'object' ? a.port : this.o.port;
  }

  /**
   * Commands go out at QoS 0 from here. Probes connect with clean sessions, so a QoS 1 delivery
   * that the connection drops is discarded with the session anyway: the server's own layer is
   * what delivers a command for sure (it stays unacknowledged until the probe's events answer it,
   * goes out again when the probe reconnects, and is served on `/next`). QoS 1 only added a
   * message id, an in-flight entry and a PUBACK to parse per probe: 10,000 of each per fan-out.
   */
  publish(topic: string, payload: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.aedes.publish(
        { cmd: 'publish', topic, payload: typeof payload === 'string' ? Buffer.from(payload) : payload, qos: 0, retain: false, dup: false },
        (err) => (err ? reject(err) : resolve()),
      );
    });
  }

  clients(): number {
    return this.aedes.connectedClients;
  }

  /** The topics of the retained messages the broker holds (none from probes, ever). */
  async retainedTopics(): Promise<string[]> {
    const persistence = (this.aedes as unknown as { persistence: { createRetainedStream(pattern: string): AsyncIterable<{ topic: string }> } }).persistence;
    const topics: string[] = [];
    for await (const p of persistence.createRetainedStream('#')) if (!p.topic.startsWith('$SYS')) topics.push(p.topic);
    return topics;
  }

  async close(): Promise<void> {
    const closing = this.servers.map((s) => new Promise<void>((r) => s.close(() => r())));
    for (const s of this.sockets) s.destroy();
    await Promise.all(closing);
    await new Promise<void>((r) => this.aedes.close(() => r()));
  }
}

/**
 * The accept queue of each MQTT listener. Node's default (511) overflows when a whole fleet
 * reconnects at once: the kernel drops the SYNs it cannot queue, and each dropped client waits
 * for its SYN retransmits (1, 3, 7 s), past the agent's 10 s connect timeout (bench/fleet's
 * storm: 500 to 2,000 connect timeouts of 10,000 with 26,000 to 46,000 SYNs dropped). A longer
 * queue holds them as finished handshakes until the broker takes them. The kernel caps it at
 * net.core.somaxconn (4096 here).
 */
export const MQTT_ACCEPT_BACKLOG = 8192;

function bind(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (e: Error): void => reject(new ServerError('LISTEN_ADDRESS_INVALID', `MQTT cannot listen on ${host}:${port}: ${(e as NodeJS.ErrnoException).code ?? e.message}`, { cause: e }));
    server.once('error', fail);
    server.listen({ port, host, backlog: MQTT_ACCEPT_BACKLOG }, () => {
      server.off('error', fail);
      resolve();
    });
  });
}
