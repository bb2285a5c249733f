import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Metrics } from '../metrics/registry.js';
import type { SettingsRepository } from '../store/types.js';

/**
 * The webhook (issue 5): one configurable URL that receives a JSON POST when something needs a
 * person: a rollout paused itself (`rollout.paused`, sent by the rollouts module), a probe stuck
 * past its deadline (`probe.stuck`, inventory/stuck-check.ts). Deliveries are queued, retried
 * three times with backoff, and never block or fail the caller; a failure is logged with code
 * WEBHOOK_FAILED. The URL is read from the settings at each delivery, so changing it applies at once.
 */
export const WEBHOOK_URL_SETTING = 'webhook.url';

export interface WebhookPayload {
  readonly id: string;
  readonly type: string;
  readonly at: string;
  readonly data: Readonly<Record<string, unknown>>;
}

export interface WebhookOptions {
  readonly timeoutMs?: number;
  readonly retryDelaysMs?: readonly number[];
}

export class Webhooks {
  private queue: Promise<void> = Promise.resolve();
  private readonly timeoutMs: number;
  private readonly delays: readonly number[];
  private closed = false;

  constructor(
    private readonly settings: SettingsRepository,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    o: WebhookOptions = {},
  ) {
    this.timeoutMs = o.timeoutMs ?? 5000;
    this.delays = o.retryDelaysMs ?? [1000, 5000, 15_000];
  }

  /** Queues a delivery; returns at once. Deliveries go out one at a time, in order. */
  notify(type: string, data: Record<string, unknown>): WebhookPayload {
    const payload: WebhookPayload = { id: randomUUID(), type, at: new Date().toISOString(), data };
    this.queue = this.queue.then(() => this.deliver(payload)).catch(() => undefined);
    return payload;
  }

  /** Resolves once every queued delivery has been made or given up (tests, shutdown). */
  flush(): Promise<void> {
    return this.queue;
  }

  close(): void {
    this.closed = true;
  }

  private async deliver(payload: WebhookPayload): Promise<void> {
    const url = await this.settings.get(WEBHOOK_URL_SETTING);
    if (!url) {
      this.metrics.webhooks.inc({ result: 'unconfigured' });
      return;
    }
    const body = JSON.stringify(payload);
    for (let attempt = 0; ; attempt++) {
      let why: string;
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'user-agent': 'sonde-server', 'x-sonde-event': payload.type },
          body,
          signal: AbortSignal.timeout(this.timeoutMs),
          redirect: 'error',
        });
        await res.arrayBuffer().catch(() => undefined);
        if (res.ok) {
          this.metrics.webhooks.inc({ result: 'delivered' });
          this.log.info({ webhook: payload.type, id: payload.id }, 'webhook delivered');
          return;
        }
        why = `HTTP ${res.status}`;
      } catch (e) {
        why = (e as Error).name === 'TimeoutError' ? `no answer in ${this.timeoutMs} ms` : (e as Error).message;
      }
      const delay = this.delays[attempt];
      if (delay === undefined || this.closed) {
        this.metrics.webhooks.inc({ result: 'failed' });
        // The URL may carry a secret in its query string: log its origin only.
        this.log.warn({ code: 'WEBHOOK_FAILED', webhook: payload.type, id: payload.id, to: originOf(url), why }, 'webhook not delivered');
        return;
      }
      await new Promise((r) => setTimeout(r, delay).unref());
    }
  }
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
}
