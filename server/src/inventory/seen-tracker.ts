import type { Logger } from 'pino';
import type { Store } from '../store/types.js';

/**
 * A probe's "last seen" (issue 24, docs/traffic.md). An idle probe publishes nothing for an hour
 * at a time; its MQTT keepalive says it is alive every few minutes. The embedded broker reports
 * each keepalive here; they are kept in memory and written together every `flushMs` (one
 * transaction, one row per probe seen), so a 10,000-probe fleet costs a few hundred row updates a
 * minute, not one write per ping. Messages move last seen as before (the ingest).
 */
export class SeenTracker {
  private pending = new Map<string, string>();
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly flushMs: number,
  ) {}

  note(probeId: string): void {
    this.pending.set(probeId, new Date().toISOString());
  }

  start(): void {
    this.timer = setInterval(() => void this.flush(), this.flushMs);
    this.timer.unref();
  }

  flush(): Promise<void> {
    if (this.pending.size === 0) return this.flushing;
    const batch = this.pending;
    this.pending = new Map();
    this.flushing = this.flushing.then(() => this.store.probes.touch(batch)).catch((e: unknown) => this.log.warn({ err: (e as Error).message, probes: batch.size }, 'last seen not written'));
    return this.flushing;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.flush();
  }
}
