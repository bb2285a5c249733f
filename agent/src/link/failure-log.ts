import type { Logger } from 'pino';

/**
 * Why a connection to the fleet server failed, in an operator's words (docs/agent.md,
 * "Troubleshooting"): the broker or server refused the probe's token, is unreachable, or its TLS
 * certificate does not chain to the pinned CA. The raw error stays beside it.
 */
export function connectionFailureReason(message: string): string {
  if (/not authori[sz]ed|bad user ?name or password|\b401\b|\b403\b/i.test(message)) return 'bad token: the server refused the probe credentials (enroll the probe again)';
  if (/certificate|self[- ]signed|unable to verify|CERT_|ERR_TLS|altnames|wrong version number/i.test(message)) return 'TLS pin mismatch: the server certificate does not chain to the pinned CA';
  if (/ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|ECONNRESET|connack timeout|timed? ?out|closed|socket hang up/i.test(message)) return 'server unreachable';
  return 'connection failed';
}

/**
 * Logs every failed connection attempt with its reason, without flooding the log of a probe that
 * stays offline for weeks: a new reason is logged at once, the same reason again at most once per
 * `quietMs`, with the number of attempts since it was last logged.
 */
export class FailureLog {
  private lastReason: string | null = null;
  private lastAt = 0;
  private since = 0;

  constructor(
    private readonly log: Logger,
    private readonly what: string,
    private readonly quietMs = 10 * 60_000,
  ) {}

  failed(err: string, extra: Record<string, unknown> = {}): void {
    const reason = connectionFailureReason(err);
    const now = Date.now();
    this.since += 1;
    if (reason === this.lastReason && now - this.lastAt < this.quietMs) return;
    this.log.warn({ reason, err, attempts: this.since, ...extra }, `${this.what} failed: ${reason}`);
    this.lastReason = reason;
    this.lastAt = now;
    this.since = 0;
  }

  /** A success: the next failure is news again. */
  reset(): void {
    this.lastReason = null;
    this.since = 0;
  }
}
