import { describe, expect, it } from 'vitest';
import { backoffDelay, sleep } from '../../agent/src/link/backoff.js';

const window = { minDelayMs: 100, maxDelayMs: 1000 };

describe('backoffDelay', () => {
  it.each([
    { failures: 0, ceiling: 100 },
    { failures: 1, ceiling: 100 },
    { failures: 2, ceiling: 200 },
    { failures: 3, ceiling: 400 },
    { failures: 4, ceiling: 800 },
    { failures: 5, ceiling: 1000 },
    { failures: 2000, ceiling: 1000 },
  ])('draws from the whole window [0, $ceiling] after $failures failures in a row', ({ failures, ceiling }) => {
    expect(backoffDelay(failures, window, () => 0)).toBe(0);
    expect(backoffDelay(failures, window, () => 0.999999)).toBe(ceiling - 1);
    expect(backoffDelay(failures, window, () => 0.5)).toBe(ceiling / 2);
  });

  it('spreads real draws over the window (full jitter), not onto its edge', () => {
    const draws = Array.from({ length: 500 }, () => backoffDelay(10, window));
    expect(Math.min(...draws)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...draws)).toBeLessThan(1000);
    expect(new Set(draws).size).toBeGreaterThan(100);
  });
});

describe('sleep', () => {
  it('rejects with the abort reason as soon as it is aborted', async () => {
    const ac = new AbortController();
    const started = Date.now();
    setTimeout(() => ac.abort(new Error('stop')), 20);
    await expect(sleep(60_000, ac.signal)).rejects.toThrow('stop');
    expect(Date.now() - started).toBeLessThan(1000);
  });
});
