import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { download } from '../../agent/src/link/download.js';
import { startFlakyServer, type FlakyServer } from '../helpers/flaky-http.js';

/**
 * The bandwidth cap (issue 24): a download capped at 128 KiB/s from a server on loopback that
 * would send at hundreds of MB/s stays within 10 % of the cap over 60 s, and ends byte-exact.
 * This test takes a minute of wall time on purpose: the cap is a promise over a minute.
 */
const CAP = 128 * 1024;
const SECONDS = 60;
let dir: string;
let server: FlakyServer;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sonde-download-cap-'));
  server = await startFlakyServer({ size: CAP * SECONDS });
});
afterAll(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

describe('a capped download', () => {
  it('stays within 10 % of its cap over 60 s, in every 10 s slice, and completes byte-exact', { timeout: 120_000 }, async () => {
    const dest = join(dir, 'capped.spk');
    const seen: { t: number; bytes: number }[] = [];
    const t0 = performance.now();
    await download({
      url: server.url,
      sha256: server.sha256,
      size: server.body.length,
      dest,
      pace: { maxBytesPerSecond: CAP, windows: [] },
      onProgress: (bytes) => seen.push({ t: (performance.now() - t0) / 1000, bytes }),
    });
    const elapsed = (performance.now() - t0) / 1000;
    // The whole file at the cap takes 60 s (less the bucket's first quarter second).
    expect(elapsed).toBeGreaterThan(SECONDS * 0.9);
    expect(elapsed).toBeLessThan(SECONDS * 1.1);
    const at = (s: number): number => [...seen].reverse().find((x) => x.t <= s)?.bytes ?? 0;
    for (let s = 10; s <= 50; s += 10) {
      const rate = (at(s) - at(s - 10)) / 10;
      expect(rate / CAP, `slice ${s - 10}-${s} s`).toBeGreaterThan(0.9);
      expect(rate / CAP, `slice ${s - 10}-${s} s`).toBeLessThan(1.1);
    }
    expect(createHash('sha256').update(await readFile(dest)).digest('hex')).toBe(server.sha256);
  });
});
