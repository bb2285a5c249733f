import type { Logger } from 'pino';
import type { Store } from '../store/types.js';
import type { Webhooks } from '../webhooks/webhook.js';

/**
 * A probe stuck past a deadline (issue 5, webhook): a command the probe accepted, or whose
 * download it started, with no word from the probe about it for `afterMs`. Each such command is
 * reported once, as a `probe.stuck` webhook.
 */
export class StuckCheck {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly store: Store,
    private readonly webhooks: Webhooks,
    private readonly log: Logger,
    readonly afterMs: number,
    readonly everyMs: number = Math.min(60_000, Math.max(1000, Math.floor(afterMs / 4))),
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.run(), this.everyMs);
    this.timer.unref();
  }

  /** One pass; returns the commands reported. */
  async run(now = new Date()): Promise<string[]> {
    while (this.running) await this.running;
    let reported: string[] = [];
    this.running = (async () => {
      const stuck = await this.store.commands.stuck(new Date(now.getTime() - this.afterMs).toISOString());
      for (const c of stuck) {
        this.webhooks.notify('probe.stuck', {
          probeId: c.probeId,
          commandId: c.commandId,
          rolloutId: c.rolloutId,
          status: c.status,
          since: c.updatedAt,
          deadlineSeconds: Math.round(this.afterMs / 1000),
        });
        await this.store.commands.markStuckReported(c.commandId, now.toISOString());
        this.log.warn({ probeId: c.probeId, commandId: c.commandId, status: c.status, since: c.updatedAt }, 'probe stuck past its deadline');
      }
      reported = stuck.map((c) => c.commandId);
    })().finally(() => {
      this.running = null;
    });
    await this.running;
    return reported;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
