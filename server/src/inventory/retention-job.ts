import type { Logger } from 'pino';
import { DEFAULT_RETENTION, type PruneResult, type RetentionPolicy } from '../store/retention.js';
import type { Store } from '../store/types.js';

/** The policy of a server's options (`--keep-events`, `--keep-audit`, `--keep-history`). */
export function retentionPolicy(o: { keepEventsMs: number; keepAuditMs: number; keepHistoryMs: number }): RetentionPolicy {
  return { ...DEFAULT_RETENTION, eventsMaxAgeMs: o.keepEventsMs, auditMaxAgeMs: o.keepAuditMs, historyMaxAgeMs: o.keepHistoryMs };
}

/** Runs a retention pass at start and every `everyMs` (store/retention.ts says what goes). */
export class RetentionJob {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<PruneResult | null> | null = null;

  constructor(
    private readonly store: Store,
    private readonly policy: RetentionPolicy,
    private readonly log: Logger,
    private readonly everyMs: number,
  ) {}

  start(): void {
    void this.run();
    this.timer = setInterval(() => void this.run(), this.everyMs);
    this.timer.unref();
  }

  /** One pass (one at a time); null when it failed (logged, tried again at the next). */
  async run(now = new Date()): Promise<PruneResult | null> {
    while (this.running) await this.running;
    this.running = this.store
      .prune(this.policy, now)
      .then((r) => {
        if (r.events + r.audit + r.commands + r.deployments > 0) this.log.info({ ...r }, 'retention: old rows deleted');
        return r;
      })
      .catch((e: unknown) => {
        this.log.error({ err: (e as Error).message }, 'retention pass failed');
        return null;
      })
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }
}
