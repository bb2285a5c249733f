import { describe, expect, it } from 'vitest';
import { ProgressPacer } from '../../agent/src/daemon/progress-pacer.js';

/**
 * Download progress at a bounded rate (issue 24): each tenth, at least every 30 s while a cap or a
 * window holds the download back, never more than one event in 2 s but the last.
 */
function run(steps: { at: number; bytes: number; message?: string }[], total = 1000): number[] {
  let now = 0;
  const pacer = new ProgressPacer(() => now);
  const sent: number[] = [];
  for (const s of steps) {
    now = s.at;
    if (pacer.due(s.bytes, total, s.message)) sent.push(s.at);
  }
  return sent;
}

describe('download progress pacing', () => {
  it('a fast download: the first event and the last, nothing in between faster than 2 s', () => {
    const steps = Array.from({ length: 100 }, (_, i) => ({ at: i * 10, bytes: (i + 1) * 10 }));
    expect(run(steps)).toEqual([0, 990]);
  });

  it('a download held to a crawl by its cap: an event at least every 30 s though no tenth passes', () => {
    // 1 byte a second of a 10,000-byte pack for 200 s: no tenth passes.
    const steps = Array.from({ length: 200 }, (_, i) => ({ at: i * 1000, bytes: i }));
    const sent = run(steps, 10_000);
    expect(sent).toEqual([0, 30_000, 60_000, 90_000, 120_000, 150_000, 180_000]);
  });

  it('a steady download: one event per tenth when tenths are at least 2 s apart', () => {
    const steps = Array.from({ length: 101 }, (_, i) => ({ at: i * 500, bytes: i * 10 }));
    expect(run(steps)).toEqual([0, 5000, 10_000, 15_000, 20_000, 25_000, 30_000, 35_000, 40_000, 45_000, 50_000]);
  });

  it('a message (a wait for the window) always goes out', () => {
    expect(run([{ at: 0, bytes: 0 }, { at: 100, bytes: 0, message: 'waiting for its download window: opens in 30 min' }])).toEqual([0, 100]);
  });
});
