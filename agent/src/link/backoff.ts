/**
 * Waiting between attempts, for every retry loop of the link (MQTT reconnects, HTTP polling,
 * downloads): exponential backoff with full jitter. The n-th failure in a row waits a random time
 * in [0, min(max, min * 2^(n-1))], so a thousand probes that lost the server at the same moment
 * come back spread over the whole window instead of in the same second.
 */
export interface BackoffWindow {
  readonly minDelayMs: number;
  readonly maxDelayMs: number;
}

/** A random delay in [0, min(max, min * 2^(attempt-1))] for the attempt-th failure in a row. */
export function backoffDelay(attempt: number, w: BackoffWindow, random: () => number = Math.random): number {
  const cap = Math.min(w.maxDelayMs, w.minDelayMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30));
  return Math.floor(random() * cap);
}

/** The same backoff for a loop that counts its own failures: next() after each, reset() on success. */
export class Backoff {
  private attempt = 0;
  private readonly window: BackoffWindow;

  constructor(
    minMs: number,
    maxMs: number,
    private readonly random: () => number = Math.random,
  ) {
    this.window = { minDelayMs: minMs, maxDelayMs: maxMs };
  }

  next(): number {
    this.attempt++;
    return backoffDelay(this.attempt, this.window, this.random);
  }

  reset(): void {
    this.attempt = 0;
  }

  get attempts(): number {
    return this.attempt;
  }
}

/** A sleep that an AbortSignal ends early (rejecting with the signal's reason). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason ?? new Error('aborted'));
      return;
    }
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal?.reason ?? new Error('aborted'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
