import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { download, type WindowClock } from '../../agent/src/link/download.js';
import { msUntilOpen, stricter, TokenBucket, windowOpen } from '../../agent/src/link/download-pace.js';
import { downloadLimitsSchema } from '../../base/src/protocol/download-limits.js';
import { startFlakyServer, type FlakyServer } from '../helpers/flaky-http.js';

/**
 * A download that respects the site (issue 24): a bandwidth cap, and a window of local time in an
 * IANA zone outside which it waits and inside which it resumes by Range. The windows are judged by
 * a clock the tests move; the cap is measured in real time (download-cap.test.ts).
 */
const MiB = 1024 * 1024;
let dir: string;
let server: FlakyServer;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sonde-download-pace-'));
  server = await startFlakyServer({ size: 2 * MiB });
});
afterEach(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

/** A wall clock that stands still until a wait moves it, or the test does. */
function fakeClock(iso: string): WindowClock & { set(iso: string): void; waits: number[] } {
  let t = Date.parse(iso);
  const waits: number[] = [];
  return {
    waits,
    now: () => new Date(t),
    sleep: async (ms) => {
      waits.push(ms);
      t += ms;
      await new Promise((r) => setImmediate(r));
    },
    set: (x) => (t = Date.parse(x)),
  };
}

const sha = async (p: string): Promise<string> => createHash('sha256').update(await readFile(p)).digest('hex');

describe('download windows (local time, IANA zones)', () => {
  it('judges local time in the zone named, over midnight and across a daylight-saving change', () => {
    const paris = { start: '22:00', end: '04:00', timeZone: 'Europe/Paris' };
    // 21:30 UTC in January is 22:30 in Paris (UTC+1): open. In July (UTC+2) it is 23:30: open.
    expect(windowOpen(new Date('2026-01-15T21:30:00Z'), paris)).toBe(true);
    expect(windowOpen(new Date('2026-01-15T20:30:00Z'), paris)).toBe(false);
    expect(windowOpen(new Date('2026-07-15T20:30:00Z'), paris)).toBe(true);
    expect(windowOpen(new Date('2026-07-15T02:30:00Z'), paris)).toBe(false);
    expect(windowOpen(new Date('2026-07-15T01:30:00Z'), paris)).toBe(true);
    expect(windowOpen(new Date('2026-07-15T12:00:00Z'), { start: '09:00', end: '09:00', timeZone: 'UTC' })).toBe(true);
    // The night Paris moves to summer time, 02:00 local does not exist; the window still opens at 01:00 UTC+1.
    expect(msUntilOpen(new Date('2026-03-28T23:00:00Z'), [{ start: '01:00', end: '05:00', timeZone: 'Europe/Paris' }])).toBe(60 * 60_000);
  });

  it('needs every window open at once (the rollout\'s and the probe\'s) and says when they never meet', () => {
    const a = { start: '01:00', end: '03:00', timeZone: 'UTC' };
    const b = { start: '02:00', end: '04:00', timeZone: 'UTC' };
    expect(msUntilOpen(new Date('2026-12-06T00:00:00Z'), [a, b])).toBe(2 * 3_600_000);
    expect(msUntilOpen(new Date('2026-12-06T00:00:00Z'), [a, { start: '05:00', end: '06:00', timeZone: 'UTC' }])).toBeNull();
    expect(stricter({ maxBytesPerSecond: 100_000, window: a }, { maxBytesPerSecond: 50_000 })).toEqual({ maxBytesPerSecond: 50_000, windows: [a] });
    expect(stricter(undefined, undefined)).toEqual({ maxBytesPerSecond: null, windows: [] });
    expect(downloadLimitsSchema.safeParse({ window: { start: '01:00', end: '02:00', timeZone: 'Mars/Olympus' } }).success).toBe(false);
    expect(downloadLimitsSchema.safeParse({ maxBytesPerSecond: 10 }).success).toBe(false);
  });

  it('a download started outside its window waits for it, fetching nothing, then downloads whole inside it', async () => {
    const clock = fakeClock('2026-12-06T00:30:00Z');
    const dest = join(dir, 'a.spk');
    const paused: number[] = [];
    await download({
      url: server.url,
      sha256: server.sha256,
      size: server.body.length,
      dest,
      clock,
      pace: { maxBytesPerSecond: null, windows: [{ start: '01:00', end: '02:00', timeZone: 'UTC' }] },
      onPaused: (ms) => {
        paused.push(ms);
        expect(server.requests).toHaveLength(0);
      },
    });
    expect(paused).toEqual([30 * 60_000]);
    expect(server.requests).toHaveLength(1);
    expect(await sha(dest)).toBe(server.sha256);
  });

  it('a window that closes mid-transfer stops the download with its bytes kept; it resumes by Range in the next window', async () => {
    const clock = fakeClock('2026-12-06T01:59:00Z');
    const dest = join(dir, 'b.spk');
    server.set({ throttle: { bytes: 64 * 1024, everyMs: 5 } });
    let closedAt = -1;
    await download({
      url: server.url,
      sha256: server.sha256,
      size: server.body.length,
      dest,
      clock,
      pace: { maxBytesPerSecond: null, windows: [{ start: '01:00', end: '02:00', timeZone: 'UTC' }] },
      onProgress: (bytes) => {
        // A third of the way in, the window's hour is over.
        if (closedAt < 0 && bytes > server.body.length / 3) {
          closedAt = bytes;
          clock.set('2026-12-06T02:00:00Z');
        }
      },
      onPaused: async () => {
        expect((await stat(`${dest}.part`)).size).toBeGreaterThanOrEqual(closedAt);
      },
    });
    // Paused until 01:00 the next day, then the rest asked for by Range.
    expect(clock.waits).toEqual([23 * 3_600_000]);
    expect(server.requests).toHaveLength(2);
    expect(server.requests[1]!.range).toMatch(/^bytes=\d+-$/);
    expect(Number(/bytes=(\d+)-/.exec(server.requests[1]!.range!)![1])).toBeGreaterThanOrEqual(closedAt);
    expect(await sha(dest)).toBe(server.sha256);
  });
});

describe('the token bucket', () => {
  it('lets a quarter second of the rate through at once, then holds the average to the rate', () => {
    let t = 0;
    const bucket = new TokenBucket(100_000, () => t);
    expect(bucket.take(25_000)).toBe(0);
    expect(bucket.take(10_000)).toBeCloseTo(100, 5);
    // Reading at the cap for a minute in 10 kB steps: every wait is what the rate demands.
    let waited = 0;
    for (let i = 0; i < 600; i++) {
      const w = bucket.take(10_000);
      waited += w;
      t += w;
    }
    expect(waited / 1000).toBeCloseTo(60 + 0.1, 1);
  });
});
