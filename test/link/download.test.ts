import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { download, type DownloadOptions } from '../../agent/src/link/download.js';
import { LinkError, type LinkCode } from '../../agent/src/link/errors.js';
import { startFlakyServer, type FlakyServer, type Misbehaviour } from '../helpers/flaky-http.js';

const MiB = 1024 * 1024;
/** Tiny waits: the backoff's shape is tested on its own (download-backoff.test.ts). */
const fast = { attempts: 5, minDelayMs: 1, maxDelayMs: 5 };

let dir: string;
let server: FlakyServer;
let dest: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sonde-download-'));
  server = await startFlakyServer({ size: 4 * MiB });
  dest = join(dir, 'staging', 'downloads', `${server.sha256}.spk`);
});

afterEach(async () => {
  await server.close();
  await rm(dir, { recursive: true, force: true });
});

function fetchPack(extra: Partial<DownloadOptions> = {}): ReturnType<typeof download> {
  return download({ url: server.url, sha256: server.sha256, size: server.body.length, dest, retry: fast, ...extra });
}

async function sha256Of(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function refusal(p: Promise<unknown>, code: LinkCode): Promise<LinkError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, `expected ${code}`).toBeInstanceOf(LinkError);
  expect((e as LinkError).code).toBe(code);
  return e as LinkError;
}

const ranges = (): (string | undefined)[] => server.requests.map((r) => r.range);

/**
 * Where the client stood when each request reached the server: the bytes in its .part, as its
 * last onProgress said. A resume must ask for exactly those bytes on. (Not the bytes the server
 * sent: a cut connection also loses what was still in flight inside the client.)
 */
function trackResumes(): { onProgress: (bytes: number) => void; offsetsAtRequest: number[] } {
  let latest = 0;
  const offsetsAtRequest: number[] = [];
  server.onRequest = () => offsetsAtRequest.push(latest);
  return { onProgress: (bytes) => (latest = bytes), offsetsAtRequest };
}

describe('download', () => {
  describe('resumes where it stopped', () => {
    it('survives twelve cut connections, asking each time for the rest, and ends byte-exact', async () => {
      server.set({ cut: { afterBytes: 300_000, times: 12 } });
      const { onProgress, offsetsAtRequest } = trackResumes();

      const result = await fetchPack({ onProgress });

      expect(server.requests).toHaveLength(13);
      expect(server.requests.slice(0, 12).every((r) => !r.completed)).toBe(true);
      expect(ranges()[0]).toBeUndefined();
      for (let i = 1; i < 13; i++) {
        const from = offsetsAtRequest[i]!;
        expect(ranges()[i]).toBe(`bytes=${from}-`);
        expect(server.requests[i]!.status).toBe(206);
        // Each resume got further than the last, and never past what the server had sent.
        expect(from).toBeGreaterThan(offsetsAtRequest[i - 1]!);
        expect(from).toBeLessThanOrEqual(offsetsAtRequest[i - 1]! + server.requests[i - 1]!.bytesSent);
      }
      expect(await sha256Of(dest)).toBe(server.sha256);
      expect(await exists(`${dest}.part`)).toBe(false);
      expect(result).toMatchObject({ path: dest, alreadyPresent: false, resumedFrom: 0, requests: 13 });
    });

    it('gives up on a connection that goes silent and resumes after it', async () => {
      server.set({ stall: { afterBytes: MiB, times: 2 } });
      const { onProgress, offsetsAtRequest } = trackResumes();

      await fetchPack({ idleTimeoutMs: 250, onProgress });

      expect(server.requests).toHaveLength(3);
      expect(ranges()).toEqual([undefined, `bytes=${offsetsAtRequest[1]}-`, `bytes=${offsetsAtRequest[2]}-`]);
      expect(offsetsAtRequest[2]).toBeGreaterThan(offsetsAtRequest[1]!);
      expect(await sha256Of(dest)).toBe(server.sha256);
    });

    it('retries through 503 answers', async () => {
      server.set({ unavailable: 3 });

      await fetchPack();

      expect(server.requests.map((r) => r.status)).toEqual([503, 503, 503, 200]);
      expect(await sha256Of(dest)).toBe(server.sha256);
    });

    it('starts over from 0 when a Range request is answered with the whole file (200)', async () => {
      server.set({ cut: { afterBytes: 700_000, times: 3 }, ignoreRange: true });
      const { onProgress, offsetsAtRequest } = trackResumes();
      const progress: number[] = [];

      await fetchPack({ onProgress: (bytes) => (onProgress(bytes), progress.push(bytes)) });

      expect(ranges()).toEqual([undefined, ...offsetsAtRequest.slice(1).map((from) => `bytes=${from}-`)]);
      expect(offsetsAtRequest.slice(1).every((from) => from > 0)).toBe(true);
      expect(server.requests.map((r) => r.status)).toEqual([200, 200, 200, 200]);
      expect(progress.filter((b) => b === 0)).toHaveLength(3);
      expect(await sha256Of(dest)).toBe(server.sha256);
    });

    it('starts over from 0 when the Content-Range does not start where it asked', async () => {
      server.set({ cut: { afterBytes: 500_000, times: 1 }, contentRangeSkew: 4096 });
      const { onProgress, offsetsAtRequest } = trackResumes();

      await fetchPack({ onProgress });

      expect(ranges()).toEqual([undefined, `bytes=${offsetsAtRequest[1]}-`, undefined]);
      expect(server.requests.map((r) => r.status)).toEqual([200, 206, 200]);
      expect(await sha256Of(dest)).toBe(server.sha256);
    });

    it('picks up the .part a killed agent left behind', async () => {
      await mkdir(join(dir, 'staging', 'downloads'), { recursive: true });
      await writeFile(`${dest}.part`, server.body.subarray(0, 1_500_000));
      const progress: number[] = [];

      const result = await fetchPack({ onProgress: (bytes) => progress.push(bytes) });

      expect(ranges()).toEqual(['bytes=1500000-']);
      expect(result.resumedFrom).toBe(1_500_000);
      expect(progress[0]).toBe(1_500_000);
      expect(await sha256Of(dest)).toBe(server.sha256);
    });

    it('renames a complete, matching .part without fetching (a crash just before the rename)', async () => {
      await mkdir(join(dir, 'staging', 'downloads'), { recursive: true });
      await writeFile(`${dest}.part`, server.body);

      await fetchPack();

      expect(server.requests).toHaveLength(0);
      expect(await sha256Of(dest)).toBe(server.sha256);
    });

    it.each([
      { leftover: 'a complete .part with a flipped byte', bytes: (b: Buffer) => Buffer.concat([b.subarray(0, 10), Buffer.from([b[10]! ^ 1]), b.subarray(11)]) },
      { leftover: 'a .part longer than the pack', bytes: (b: Buffer) => Buffer.concat([b, Buffer.alloc(10)]) },
    ])('fetches from 0 again over $leftover', async ({ bytes }) => {
      await mkdir(join(dir, 'staging', 'downloads'), { recursive: true });
      await writeFile(`${dest}.part`, bytes(server.body));

      await fetchPack();

      expect(ranges()).toEqual([undefined]);
      expect(await sha256Of(dest)).toBe(server.sha256);
    });
  });

  describe('is idempotent', () => {
    it('returns at once when dest already holds the pack', async () => {
      await fetchPack();
      const before = server.requests.length;

      const again = await fetchPack();

      expect(again).toMatchObject({ alreadyPresent: true, requests: 0 });
      expect(server.requests.length).toBe(before);
    });

    it('replaces a damaged dest rather than trusting it', async () => {
      await mkdir(join(dir, 'staging', 'downloads'), { recursive: true });
      await writeFile(dest, Buffer.alloc(server.body.length));

      const result = await fetchPack();

      expect(result.alreadyPresent).toBe(false);
      expect(await sha256Of(dest)).toBe(server.sha256);
    });
  });

  describe('never lets wrong bytes reach dest', () => {
    it.each([
      { where: 'the first byte', corruptAt: 0, cut: undefined },
      { where: 'the middle', corruptAt: 2 * MiB, cut: undefined },
      { where: 'the last byte', corruptAt: 4 * MiB - 1, cut: undefined },
      { where: 'a byte served after a resume', corruptAt: 3 * MiB, cut: { afterBytes: MiB, times: 2 } },
    ])('rejects bytes that do not hash to the command (flipped at $where) and deletes the .part', async ({ corruptAt, cut }) => {
      server.set({ corruptAt, ...(cut ? { cut } : {}) });

      const e = await refusal(fetchPack(), 'DOWNLOAD_HASH_MISMATCH');

      expect(e.message).toContain(server.sha256);
      expect(await exists(`${dest}.part`)).toBe(false);
      expect(await exists(dest)).toBe(false);
    });

    const sizeCases: { name: string; misbehave: Misbehaviour; sizeDelta: number }[] = [
      { name: 'streams more bytes than named (chunked, no Content-Length)', misbehave: { extra: { bytes: 64 * MiB, declared: false } }, sizeDelta: 0 },
      { name: 'declares a longer Content-Length', misbehave: { extra: { bytes: MiB, declared: true } }, sizeDelta: 0 },
      { name: 'holds a longer file than the command names', misbehave: {}, sizeDelta: -1 },
      { name: 'holds a shorter file than the command names', misbehave: {}, sizeDelta: +1 },
      { name: 'says in its Content-Range that the file is longer, on a resume', misbehave: { cut: { afterBytes: MiB, times: 1 }, extra: { bytes: 10, declared: true } }, sizeDelta: 0 },
    ];
    it.each(sizeCases)('cuts off a server that $name: SIZE_MISMATCH, .part deleted', async ({ misbehave, sizeDelta }) => {
      server.set(misbehave);
      let most = 0;

      await refusal(fetchPack({ size: server.body.length + sizeDelta, onProgress: (b) => (most = Math.max(most, b)) }), 'DOWNLOAD_SIZE_MISMATCH');

      expect(most).toBeLessThanOrEqual(server.body.length + sizeDelta);
      expect(await exists(`${dest}.part`)).toBe(false);
      expect(await exists(dest)).toBe(false);
    });

    it('stops reading at the first byte past the size, long before the server is done', async () => {
      server.set({ extra: { bytes: 64 * MiB, declared: false } });

      await refusal(fetchPack(), 'DOWNLOAD_SIZE_MISMATCH');
      // Give the server a moment to notice the closed socket.
      await new Promise((r) => setTimeout(r, 50));

      const [req] = server.requests;
      expect(server.requests).toHaveLength(1);
      expect(req!.completed).toBe(false);
      expect(req!.bytesSent).toBeLessThan(server.body.length + 32 * MiB);
    });
  });

  describe('when the server stays away', () => {
    it('throws DOWNLOAD_FAILED after its attempts, keeps the .part, and a second call resumes from it', async () => {
      server.set({ cut: { afterBytes: MiB, times: 1 } });
      // After the first (cut) request the server goes down for good.
      server.onRequest = (_, i) => {
        if (i === 1) server.set({ unavailable: Infinity });
      };

      const e = await refusal(fetchPack({ retry: { ...fast, attempts: 4 } }), 'DOWNLOAD_FAILED');

      expect(e.message).toContain('HTTP 503');
      expect(e.message).toContain('4 in a row without progress');
      expect(server.requests.map((r) => r.status)).toEqual([200, 503, 503, 503, 503]);
      const kept = (await stat(`${dest}.part`)).size;
      expect(kept).toBeGreaterThan(0);
      expect(kept).toBeLessThanOrEqual(MiB);
      expect(await exists(dest)).toBe(false);

      server.onRequest = undefined;
      server.set({});
      const result = await fetchPack();

      expect(server.requests[5]!.range).toBe(`bytes=${kept}-`);
      expect(result.resumedFrom).toBe(kept);
      expect(await sha256Of(dest)).toBe(server.sha256);
    });

    it('gives up at its deadline however many attempts remain', async () => {
      server.set({ unavailable: Infinity });
      const started = Date.now();

      const e = await refusal(fetchPack({ retry: { attempts: 1_000_000, minDelayMs: 20, maxDelayMs: 20, deadlineMs: 300 } }), 'DOWNLOAD_FAILED');

      expect(e.message).toContain('deadline');
      expect(Date.now() - started).toBeLessThan(2000);
    });

    it('retries a refused connection, then fails naming the reason', async () => {
      await server.close();

      const e = await refusal(fetchPack({ retry: { ...fast, attempts: 3 } }), 'DOWNLOAD_FAILED');

      expect(e.message).toContain('ECONNREFUSED');
      expect(e.message).toContain('3 request(s)');
    });

    it('fails with DOWNLOAD_FAILED naming the errno when staging cannot be made, without asking the server', async () => {
      await writeFile(join(dir, 'not-a-folder'), 'x');

      const e = await refusal(fetchPack({ dest: join(dir, 'not-a-folder', 'pack.spk') }), 'DOWNLOAD_FAILED');

      expect(e.message).toMatch(/: E(EXIST|NOTDIR)$/);
      expect(server.requests).toHaveLength(0);
    });

    it('refuses a URL that is not http: or https:', async () => {
      await refusal(fetchPack({ url: 'ftp://127.0.0.1/pack.spk' }), 'DOWNLOAD_FAILED');
      expect(server.requests).toHaveLength(0);
    });
  });

  describe('cancellation', () => {
    it('stops mid-transfer on abort and keeps the .part for the next call', async () => {
      const ac = new AbortController();
      const onProgress = (bytes: number): void => {
        if (bytes >= MiB) ac.abort();
      };

      await refusal(fetchPack({ signal: ac.signal, onProgress }), 'DOWNLOAD_CANCELLED');

      const kept = (await stat(`${dest}.part`)).size;
      expect(kept).toBeGreaterThanOrEqual(MiB);
      expect(kept).toBeLessThan(server.body.length);
      expect(await exists(dest)).toBe(false);

      await fetchPack();
      expect(server.requests.at(-1)!.range).toBe(`bytes=${kept}-`);
      expect(await sha256Of(dest)).toBe(server.sha256);
    });

    it('stops while waiting to retry', async () => {
      server.set({ unavailable: Infinity });
      const ac = new AbortController();
      // Abort once the 503 is on its way: the client is then (or is about to be) waiting a minute.
      server.onRequest = () => void setTimeout(() => ac.abort(), 50);
      const started = Date.now();

      await refusal(fetchPack({ signal: ac.signal, retry: { attempts: 100, minDelayMs: 60_000, maxDelayMs: 60_000 } }), 'DOWNLOAD_CANCELLED');

      expect(Date.now() - started).toBeLessThan(2000);
      expect(server.requests).toHaveLength(1);
    });

    it('does nothing when already aborted', async () => {
      await refusal(fetchPack({ signal: AbortSignal.abort() }), 'DOWNLOAD_CANCELLED');
      expect(server.requests).toHaveLength(0);
    });
  });

  describe('authorization', () => {
    const token = 'canary-token-6f1d2c9a';

    it('sends the bearer token on every request, resumes included', async () => {
      server.set({ token, cut: { afterBytes: MiB, times: 2 } });

      await fetchPack({ token });

      expect(server.requests).toHaveLength(3);
      expect(server.requests.every((r) => r.authorization === `Bearer ${token}`)).toBe(true);
      expect(await sha256Of(dest)).toBe(server.sha256);
    });

    it.each([
      { refused: 'no token', sent: undefined, status: 401 },
      { refused: 'a wrong token', sent: 'canary-wrong-91be', status: 403 },
    ])('fails fast with the status named when the server refuses $refused', async ({ sent, status }) => {
      server.set({ token });

      const e = await refusal(fetchPack({ retry: { ...fast, attempts: 50 }, ...(sent ? { token: sent } : {}) }), 'DOWNLOAD_FAILED');

      expect(e.message).toContain(`HTTP ${status}`);
      expect(server.requests).toHaveLength(1);
      expect(e.message).not.toContain(token);
      if (sent) expect(e.message).not.toContain(sent);
    });
  });
});
