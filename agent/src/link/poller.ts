import { request as httpRequest } from 'node:http';
import { createRequire } from 'node:module';
import type { Logger } from 'pino';
import { FailureLog } from './failure-log.js';
import { Backoff } from './backoff.js';

/**
 * The polling fallback (issue 4): while MQTT has been unreachable for a while, ask the server over
 * HTTP for the next command (`GET /api/v1/probes/{id}/next`: 200 with a command, 204 with none),
 * on an interval, backing off exponentially (with jitter) while the server does not answer.
 */
export interface PollerOptions {
  readonly baseUrl: string;
  readonly probeId: string;
  readonly token: string;
  readonly ca?: string;
  readonly intervalMs: number;
  readonly maxIntervalMs: number;
  /** Poll only while this says so (the MQTT link has been down long enough). */
  readonly shouldPoll: () => boolean;
  readonly onCommand: (payload: Buffer) => void;
  readonly log: Logger;
}

export function fetchNext(o: Pick<PollerOptions, 'baseUrl' | 'probeId' | 'token' | 'ca'>): Promise<Buffer | null> {
  const url = new URL(`/api/v1/probes/${encodeURIComponent(o.probeId)}/next`, o.baseUrl);
  // https (and TLS) loads only for an https: server, i.e. one off loopback.
  const request = url.protocol === 'https:' ? (createRequire(import.meta.url)('node:https') as typeof import('node:https')).request : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: 'GET', headers: { authorization: `Bearer ${o.token}`, accept: 'application/json' }, timeout: 10_000, ...(o.ca ? { ca: o.ca } : {}) },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > 64 * 1024) req.destroy(new Error('response too large'));
          else chunks.push(c);
        });
        res.on('end', () => {
          if (res.statusCode === 204) resolve(null);
          else if (res.statusCode === 200) resolve(Buffer.concat(chunks));
          else reject(new Error(`the server answered ${res.statusCode}`));
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

export class Poller {
  private timer: NodeJS.Timeout | null = null;
  private readonly backoff: Backoff;
  private readonly failures: FailureLog;
  private stopped = true;

  constructor(private readonly o: PollerOptions) {
    this.backoff = new Backoff(o.intervalMs, o.maxIntervalMs);
    this.failures = new FailureLog(o.log, 'polling the server');
  }

  start(): void {
    this.stopped = false;
    this.schedule(this.o.intervalMs);
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    if (!this.o.shouldPoll()) {
      this.backoff.reset();
      this.schedule(this.o.intervalMs);
      return;
    }
    try {
      const payload = await fetchNext(this.o);
      this.backoff.reset();
      this.failures.reset();
      if (payload) this.o.onCommand(payload);
      this.schedule(this.o.intervalMs);
    } catch (e) {
      const wait = this.o.intervalMs + this.backoff.next();
      this.failures.failed((e as Error).message, { retryInMs: wait });
      this.schedule(Math.min(wait, this.o.maxIntervalMs));
    }
  }
}
