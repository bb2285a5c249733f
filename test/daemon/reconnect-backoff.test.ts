import { describe, expect, it } from 'vitest';
import { Backoff } from '../../agent/src/link/backoff.js';

/**
 * Reconnects back off exponentially with full jitter (agent/src/link/backoff.ts), so a
 * fleet that lost its broker at the same moment does not come back in the same second. That the
 * daemon really reconnects after a broker restart is shown in mqtt-install.test.ts.
 */
const FLEET = 1000;
const MIN = 1000;
const MAX = 60_000;

function histogram(values: readonly number[], bucketMs: number): Map<number, number> {
  const h = new Map<number, number>();
  for (const v of values) h.set(Math.floor(v / bucketMs), (h.get(Math.floor(v / bucketMs)) ?? 0) + 1);
  return h;
}

describe('Backoff (reconnect)', () => {
  it('spreads the first reconnect of 1000 probes over the whole first window: no 100 ms bucket holds more than 15 %', () => {
    const first = Array.from({ length: FLEET }, () => new Backoff(MIN, MAX).next());
    expect(first.every((d) => d >= 0 && d < MIN)).toBe(true);
    const buckets = histogram(first, 100);
    expect(buckets.size).toBe(10);
    const largest = Math.max(...buckets.values());
    expect(largest / FLEET).toBeLessThan(0.15);
    // Not bunched at either end.
    expect(Math.min(...first)).toBeLessThan(50);
    expect(Math.max(...first)).toBeGreaterThan(MIN - 50);
  });

  it('spreads a later reconnect of 1000 probes as widely over its doubled window', () => {
    const fifth = Array.from({ length: FLEET }, () => {
      const b = new Backoff(MIN, MAX);
      for (let i = 0; i < 4; i++) b.next();
      return b.next();
    });
    expect(fifth.every((d) => d >= 0 && d < MIN * 16)).toBe(true);
    const buckets = histogram(fifth, 1600); // ten buckets over 16 s
    expect(Math.max(...buckets.values()) / FLEET).toBeLessThan(0.15);
  });

  it('doubles the window on each failure up to the maximum, and starts over after reset()', () => {
    const top = (): number => 0.999999;
    const b = new Backoff(MIN, MAX, top);
    const waits = Array.from({ length: 10 }, () => b.next());
    expect(waits).toEqual([999, 1999, 3999, 7999, 15_999, 31_999, 59_999, 59_999, 59_999, 59_999]);
    expect(b.attempts).toBe(10);
    b.reset();
    expect(b.attempts).toBe(0);
    expect(b.next()).toBe(999);
  });

  it('never waits a negative or an unbounded time, even after a very long outage', () => {
    const b = new Backoff(MIN, MAX);
    for (let i = 0; i < 10_000; i++) {
      const w = b.next();
      expect(w).toBeGreaterThanOrEqual(0);
      expect(w).toBeLessThan(MAX);
    }
  });
});
