/**
 * Waiting between download attempts: exponential backoff with full jitter, and a sleep that an
 * AbortSignal ends early.
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
