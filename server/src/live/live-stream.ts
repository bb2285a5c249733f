import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Principal } from '../auth/principal.js';
import type { RouteDoc } from '../context.js';
import { ServerError } from '../errors.js';
import type { Store } from '../store/types.js';
import type { Change, ChangeFeed, LiveEvent } from './change-feed.js';

/**
 * The dashboard's live stream (issue 22): `GET /api/v1/live`, Server-Sent Events. The page opens
 * one stream and re-reads what it shows when a change names it; there is no polling loop per row,
 * nor any per page.
 *
 * Changes are gathered for `flushMs` (500 ms) and sent as one `change` message to every stream:
 * the probes whose state, online status or labels changed (`"*"` past 500 of them: re-read
 * everything), the newest events (at most 50), the commands and rollouts that moved, whether
 * the packs changed. A burst of 10,000 states costs each stream one message, and the feed is not
 * even followed while no stream is open.
 *
 * Every `heartbeatMs` (25 s) each stream gets a comment line, and its caller is checked again: a
 * signed-out session, a revoked token or an expired session ends the stream with a `signed-out`
 * message. A stream whose reader is slower than the flushes is skipped until its socket drains,
 * then told to re-read everything (`{"resync":true}`). At most `maxStreams` streams are open
 * at once (a viewer's token opening thousands must not exhaust the server): past that, 503
 * LIVE_STREAMS_EXHAUSTED.
 */
export const LIVE_ROUTES: readonly RouteDoc[] = [
  {
    method: 'GET',
    path: '/api/v1/live',
    tag: 'session',
    summary: 'Server-Sent Events: `change` messages naming the probes, events, commands, rollouts and packs that changed (every 500 ms at most); `signed-out` when the caller is no longer valid',
    access: 'viewer',
    returns: { '200': 'text/event-stream' },
    responses: { '200': 'the stream', '401': 'AUTH_REQUIRED', '503': 'LIVE_STREAMS_EXHAUSTED' },
  },
];

const MAX_IDS = 500;
const MAX_EVENTS = 50;

interface Stream {
  readonly principal: Principal;
  readonly reply: FastifyReply;
  lagging: boolean;
}

export interface LiveOptions {
  readonly flushMs?: number | undefined;
  readonly heartbeatMs?: number | undefined;
  readonly maxStreams?: number | undefined;
}

type Hub = { commands: { commandId: string; probeId: string; rolloutId: string | null; status: string }[] };

export class LiveHub {
  private readonly streams = new Set<Stream>();
  private unfollow: (() => void) | null = null;
  private flushTimer: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private probes: Set<string> | '*' = new Set();
  private rollouts = new Set<string>();
  private commands: Hub['commands'] = [];
  private events: LiveEvent[] = [];
  private packs = false;
  private readonly flushMs: number;
  private readonly heartbeatMs: number;
  readonly maxStreams: number;

  constructor(
    private readonly feed: ChangeFeed,
    private readonly store: Store,
    private readonly log: Logger,
    o: LiveOptions = {},
  ) {
    this.flushMs = o.flushMs ?? 500;
    this.heartbeatMs = o.heartbeatMs ?? 25_000;
    this.maxStreams = o.maxStreams ?? 200;
  }

  get open(): number {
    return this.streams.size;
  }

  attach(req: FastifyRequest, reply: FastifyReply): void {
    if (this.streams.size >= this.maxStreams) throw new ServerError('LIVE_STREAMS_EXHAUSTED', `${this.maxStreams} live streams are open already`);
    const stream: Stream = { principal: req.principal!, reply, lagging: false };
    reply.hijack();
    reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-content-type-options': 'nosniff',
    });
    // The client reconnects after 3 s if the stream drops (a server restart).
    reply.raw.write('retry: 3000\nevent: hello\ndata: {}\n\n');
    this.streams.add(stream);
    reply.raw.on('close', () => this.detach(stream));
    reply.raw.on('drain', () => {
      if (!stream.lagging) return;
      stream.lagging = false;
      this.write(stream, 'event: change\ndata: {"resync":true}\n\n');
    });
    if (!this.unfollow) this.unfollow = this.feed.subscribe((c) => this.gather(c));
    this.heartbeat ??= setInterval(() => void this.beat(), this.heartbeatMs);
  }

  close(): void {
    for (const s of [...this.streams]) s.reply.raw.end();
    this.streams.clear();
    this.stopFollowing();
  }

  private detach(s: Stream): void {
    this.streams.delete(s);
    if (this.streams.size === 0) this.stopFollowing();
  }

  private stopFollowing(): void {
    this.unfollow?.();
    this.unfollow = null;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    this.takePending();
  }

  /** What was gathered since the last flush, as one message; the gathering starts afresh. */
  private takePending(): { probes: string[] | '*'; events: LiveEvent[]; commands: Hub['commands']; rollouts: string[]; packs: boolean } {
    const message = { probes: this.probes === '*' ? ('*' as const) : [...this.probes], events: this.events, commands: this.commands, rollouts: [...this.rollouts], packs: this.packs };
    this.probes = new Set();
    this.rollouts = new Set();
    this.commands = [];
    this.events = [];
    this.packs = false;
    return message;
  }

  private gather(c: Change): void {
    switch (c.kind) {
      case 'probes':
        if (this.probes !== '*') {
          for (const id of c.ids) this.probes.add(id);
          if (this.probes.size > MAX_IDS) this.probes = '*';
        }
        break;
      case 'events':
        this.events.push(...c.events);
        if (this.events.length > MAX_EVENTS) this.events = this.events.slice(-MAX_EVENTS);
        break;
      case 'commands':
        this.commands.push(...c.commands);
        if (this.commands.length > MAX_IDS) this.commands = this.commands.slice(-MAX_IDS);
        break;
      case 'rollout':
        this.rollouts.add(c.id);
        break;
      case 'packs':
        this.packs = true;
        break;
    }
    this.flushTimer ??= setTimeout(() => this.flush(), this.flushMs);
  }

  private flush(): void {
    this.flushTimer = null;
    const text = `event: change\ndata: ${JSON.stringify(this.takePending())}\n\n`;
    for (const s of this.streams) if (!s.lagging) this.write(s, text);
  }

  private write(s: Stream, text: string): void {
    if (!s.reply.raw.write(text)) s.lagging = true;
  }

  /** A comment keeps proxies from closing the stream; each caller is checked again. */
  private async beat(): Promise<void> {
    for (const s of [...this.streams]) {
      if (await this.stillValid(s.principal).catch(() => false)) {
        this.write(s, ': keep-alive\n\n');
      } else {
        s.reply.raw.end('event: signed-out\ndata: {}\n\n');
        this.detach(s);
        this.log.info({ tokenId: s.principal.tokenId }, 'live stream ended: its caller is no longer valid');
      }
    }
  }

  private async stillValid(p: Principal): Promise<boolean> {
    if (p.kind !== 'staff') return false;
    if (p.session) return (await this.store.sessions.find(p.session.hash, new Date().toISOString())) !== null;
    const t = await this.store.tokens.get(p.tokenId);
    return t !== null && t.revokedAt === null;
  }
}

export function registerLiveRoutes(app: FastifyInstance, hub: LiveHub): void {
  app.get('/api/v1/live', { config: { access: 'viewer' } }, async (req, reply) => {
    // HEAD (which fastify answers with this handler) says what a GET would, without a stream.
    if (req.method === 'HEAD') return reply.type('text/event-stream; charset=utf-8').header('cache-control', 'no-store').send('');
    hub.attach(req, reply);
  });
  app.addHook('onClose', async () => hub.close());
}
