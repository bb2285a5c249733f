import type { DownloadWindow } from '../../../base/src/protocol/download-limits.js';
import { msUntilClose, msUntilOpen, TokenBucket } from './download-pace.js';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, stat, unlink } from 'node:fs/promises';
import http, { type ClientRequest, type IncomingMessage } from 'node:http';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { backoffDelay, sleep, type BackoffWindow } from './backoff.js';
import { LinkError } from './errors.js';
import { PartFile } from './part-file.js';

/**
 * Fetching a pack named by an install command (DESIGN.md, "Drops": "MQTT: commands on the probe's
 * topic trigger a download over HTTP with Range resume into staging"). Probes sit on customer
 * networks that drop connections, so a download is built to be interrupted: the bytes go to
 * `<dest>.part`, every retry asks for the rest with `Range: bytes=N-`, and a later call (after the
 * agent restarted) picks the `.part` up again. Only bytes whose size and sha256 match the command
 * are ever renamed to `dest`, the one path the install engine reads.
 */

export interface RetryPolicy extends BackoffWindow {
  /**
   * How many attempts in a row may fail without the download getting any further. An attempt that
   * brought new bytes resets the count, so a link that keeps dropping but keeps making progress
   * finishes, and a dead one gives up.
   */
  readonly attempts: number;
  /** No attempt starts, and no wait ends, later than this many ms after the call. */
  readonly deadlineMs?: number;
}

export const DEFAULT_RETRY: RetryPolicy = Object.freeze({ attempts: 50, minDelayMs: 1000, maxDelayMs: 30_000 });

/** The idle time after which a silent connection counts as interrupted. */
export const DEFAULT_IDLE_TIMEOUT_MS = 30_000;

export interface DownloadOptions {
  /** From the install command's pack reference (`packRefSchema`): http: or https:. */
  readonly url: string;
  readonly sha256: string;
  readonly size: number;
  /** Where the verified pack lands, e.g. `<state>/staging/downloads/<sha256>.spk`. */
  readonly dest: string;
  /** Sent as `Authorization: Bearer <token>`; never part of a message or an error. */
  readonly token?: string;
  /** For https: URLs, a pinned CA (PEM): the only trust anchor, replacing the system's roots. */
  readonly ca?: string | Buffer;
  /** Cancels the download; the `.part` is kept for a later resume. */
  readonly signal?: AbortSignal;
  /** Called after every chunk written (and when a download starts over); the caller throttles. */
  readonly onProgress?: (bytes: number, total: number) => void;
  readonly retry?: Partial<RetryPolicy>;
  readonly idleTimeoutMs?: number;
  /** Called when an attempt is interrupted, before the wait: why, and how many bytes are kept. */
  readonly onInterrupted?: (reason: string, keptBytes: number, waitMs: number) => void;
  /** A bandwidth cap and windows of local time (download-pace.ts); none: as fast as the link goes, at any time. */
  readonly pace?: { readonly maxBytesPerSecond: number | null; readonly windows: readonly DownloadWindow[] };
  /** Called when the download waits for its window to open: how long, and the bytes kept. */
  readonly onPaused?: (waitMs: number, keptBytes: number) => void;
  /** The wall clock the windows are judged by, and the wait for one to open (tests move time instead of waiting). */
  readonly clock?: WindowClock;
}

export interface WindowClock {
  now(): Date;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

const REAL_CLOCK: WindowClock = { now: () => new Date(), sleep };

export interface DownloadResult {
  /** `dest`. */
  readonly path: string;
  /** `dest` already held these exact bytes; nothing was fetched. */
  readonly alreadyPresent: boolean;
  /** Bytes this call found in the `.part` from an earlier one. */
  readonly resumedFrom: number;
  /** HTTP requests this call made. */
  readonly requests: number;
}

/** Fetches `url` into `dest` through `<dest>.part`, resuming across interruptions and restarts. */
export async function download(options: DownloadOptions): Promise<DownloadResult> {
  try {
    return await fetchInto(options);
  } catch (e) {
    // The network's failures are sorted where they happen; what is left is the probe's own disk.
    if (e instanceof Error && 'syscall' in e && !(e instanceof LinkError)) {
      throw new LinkError('DOWNLOAD_FAILED', `cannot write ${options.dest} or its .part: ${errorName(e)}`, { cause: e });
    }
    throw e;
  }
}

async function fetchInto(options: DownloadOptions): Promise<DownloadResult> {
  const url = parseUrl(options.url);
  const where = `${url.origin}${url.pathname}`;
  const policy: RetryPolicy = { ...DEFAULT_RETRY, ...options.retry };
  const { dest, size, signal } = options;
  const sha256 = options.sha256.toLowerCase();

  if (await alreadyThere(dest, size, sha256)) return { path: dest, alreadyPresent: true, resumedFrom: size, requests: 0 };
  if (signal?.aborted) throw cancelled(where, 0, size, signal);

  await mkdir(dirname(dest), { recursive: true });
  const part = await PartFile.open(`${dest}.part`, size, signal).catch((e: unknown) => {
    throw signal?.aborted ? cancelled(where, 0, size, signal) : e;
  });
  try {
    // A full-length .part is what a crash between the last write and the rename leaves. If it does
    // not hash right the stale bytes are ours, not the server's: fetch them again.
    if (part.offset === size && part.digest() !== sha256) await part.restart();
    const resumedFrom = part.offset;
    if (part.offset > 0) options.onProgress?.(part.offset, size);

    const deadline = policy.deadlineMs === undefined ? Infinity : Date.now() + policy.deadlineMs;
    let requests = 0;
    let failures = 0;
    let furthest = part.offset;
    const windows = options.pace?.windows ?? [];
    const clock = options.clock ?? REAL_CLOCK;
    const bucket = options.pace?.maxBytesPerSecond ? new TokenBucket(options.pace.maxBytesPerSecond) : null;
    while (part.offset < size) {
      // Outside its window the download waits (the .part kept) and resumes by Range inside it.
      const closed = msUntilOpen(clock.now(), windows);
      if (closed === null) throw new LinkError('DOWNLOAD_WINDOW_INVALID', `${where}: the download windows (${windows.map((w) => `${w.start}-${w.end} ${w.timeZone}`).join(', ')}) are never open at the same time`);
      if (closed > 0) {
        options.onPaused?.(closed, part.offset);
        try {
          await clock.sleep(closed, signal);
        } catch {
          throw cancelled(where, part.offset, size, signal);
        }
        continue;
      }
      requests++;
      try {
        const at = clock.now();
        await fetchOnce(url, where, part, options, { bucket, clock, closesAt: at.getTime() + msUntilClose(at, windows) });
        if (part.offset < size) throw new Interruption(`the response ended at byte ${part.offset} of ${size}`);
      } catch (e) {
        if (signal?.aborted) throw cancelled(where, part.offset, size, signal);
        if (e instanceof WindowClosed) continue;
        if (!(e instanceof Interruption)) throw e;
        if (part.offset > furthest) {
          furthest = part.offset;
          failures = 0;
        } else failures++;
        const giveUp = (why: string): LinkError =>
          new LinkError('DOWNLOAD_FAILED', `${where}: gave up after ${requests} request(s) (${why}; last: ${e.message}); kept ${part.offset} of ${size} bytes for a later resume`);
        if (failures >= policy.attempts) throw giveUp(`${failures} in a row without progress`);
        const wait = backoffDelay(failures, policy);
        if (Date.now() + wait > deadline) throw giveUp(`deadline of ${policy.deadlineMs} ms`);
        options.onInterrupted?.(e.message, part.offset, wait);
        try {
          await sleep(wait, signal);
        } catch {
          throw cancelled(where, part.offset, size, signal);
        }
      }
    }

    const actual = part.digest();
    if (actual !== sha256) {
      await part.discard();
      throw new LinkError('DOWNLOAD_HASH_MISMATCH', `${where}: the ${size} bytes downloaded have sha256 ${actual}, the command named ${sha256}; deleted`);
    }
    await part.commit(dest);
    return { path: dest, alreadyPresent: false, resumedFrom, requests };
  } finally {
    await part.close();
  }
}

/** A transient failure: the attempt loop backs off and resumes. Everything else ends the download. */
class Interruption extends Error {}

/** The download window closed mid-transfer: not a failure; the loop waits for the next opening. */
class WindowClosed extends Error {}

interface Pacing {
  readonly bucket: TokenBucket | null;
  readonly clock: WindowClock;
  /** When the window closes (the clock's time in ms; Infinity: no window). */
  readonly closesAt: number;
}

/**
 * One HTTP request for the bytes from `part.offset` on. Returns when the response ended; throws an
 * Interruption for what a retry may cure, a LinkError for what it cannot.
 */
async function fetchOnce(url: URL, where: string, part: PartFile, o: DownloadOptions, pacing: Pacing): Promise<void> {
  const size = o.size;
  const headers: Record<string, string> = { 'accept-encoding': 'identity' };
  if (part.offset > 0) headers['range'] = `bytes=${part.offset}-`;
  if (o.token !== undefined) headers['authorization'] = `Bearer ${o.token}`;

  const idleMs = o.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  let timedOut = false;
  let req: ClientRequest;
  try {
    const common = { method: 'GET', headers, agent: false as const, timeout: idleMs, ...(o.signal ? { signal: o.signal } : {}) };
    // `ca` replaces Node's bundled roots rather than adding to them: the pinned CA is then the only
    // anchor a server certificate can chain to. Verification itself is never turned off.
    // https (and TLS) loads only for an https: pack URL.
    req = url.protocol === 'https:' ? (createRequire(import.meta.url)('node:https') as typeof import('node:https')).request(url, { ...common, ...(o.ca !== undefined ? { ca: o.ca } : {}) }) : http.request(url, common);
  } catch (e) {
    throw new LinkError('DOWNLOAD_FAILED', `${where}: cannot make the request (${errorName(e)}); check the pinned CA`, { cause: e });
  }
  req.on('timeout', () => {
    timedOut = true;
    req.destroy();
  });

  try {
    const res = await new Promise<IncomingMessage>((resolve, reject) => {
      req.once('response', resolve);
      req.once('error', reject);
      req.end();
    }).catch((e: unknown) => {
      if (timedOut) throw new Interruption(`no answer for ${idleMs} ms`);
      const code = errorName(e);
      if (TLS_VERIFY_FAILURES.has(code)) throw new LinkError('DOWNLOAD_FAILED', `${where}: the server's certificate is not trusted (${code})`, { cause: e });
      throw new Interruption(code);
    });
    // Errors after the response arrived surface through the body iterator below.
    req.on('error', () => undefined);

    const before = part.offset;
    try {
      await acceptStatus(res, where, part, size);
    } finally {
      if (part.offset < before) o.onProgress?.(part.offset, size);
    }
    const chunks = res[Symbol.asyncIterator]();
    for (;;) {
      let step: IteratorResult<Buffer>;
      try {
        step = (await chunks.next()) as IteratorResult<Buffer>;
      } catch (e) {
        throw new Interruption(timedOut ? `no data for ${idleMs} ms at byte ${part.offset}` : `${errorName(e)} at byte ${part.offset}`);
      }
      if (step.done) return;
      const chunk = step.value;
      if (part.offset + chunk.length > size) {
        // Cut off at once: a server that overruns the named size is not read any further.
        req.destroy();
        await part.discard();
        throw new LinkError('DOWNLOAD_SIZE_MISMATCH', `${where}: the server sent more than the ${size} bytes the command named; cut off and deleted`);
      }
      try {
        await part.append(chunk);
      } catch (e) {
        throw new LinkError('DOWNLOAD_FAILED', `cannot write ${part.path}: ${errorName(e)}`, { cause: e });
      }
      o.onProgress?.(part.offset, size);
      if (pacing.clock.now().getTime() >= pacing.closesAt) throw new WindowClosed();
      const wait = pacing.bucket?.take(chunk.length) ?? 0;
      if (wait > 0) {
        // Held back by the cap: the stall is ours, so the idle timeout does not count it, and TCP
        // flow control slows the sender while nothing is read.
        res.socket?.setTimeout(0);
        try {
          await sleep(wait, o.signal);
        } catch {
          return;
        }
        res.socket?.setTimeout(idleMs);
      }
    }
  } finally {
    req.destroy();
  }
}

/**
 * Decides what a response's status and headers mean for the `.part`: continue, start over from 0,
 * retry later, or give up. The body is not read yet.
 */
async function acceptStatus(res: IncomingMessage, where: string, part: PartFile, size: number): Promise<void> {
  const status = res.statusCode ?? 0;
  const sizeMismatch = async (what: string): Promise<never> => {
    await part.discard();
    throw new LinkError('DOWNLOAD_SIZE_MISMATCH', `${where}: the server's ${what}, the command named ${size} bytes; deleted`);
  };

  if (status === 200) {
    const length = res.headers['content-length'];
    if (length !== undefined && Number(length) !== size) await sizeMismatch(`Content-Length is ${length}`);
    // The whole file, whatever was asked for (a server or proxy that ignores Range): start over.
    if (part.offset > 0) await part.restart();
    return;
  }
  if (status === 206) {
    const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers['content-range'] ?? '');
    if (m && m[3] !== '*' && Number(m[3]) !== size) await sizeMismatch(`Content-Range says the file has ${m[3]} bytes`);
    if (!m || Number(m[1]) !== part.offset || Number(m[2]) < Number(m[1])) {
      // The range is not the one asked for. Appending it would corrupt the .part, so start over
      // from 0; the final hash would catch a corruption, but only after the whole transfer.
      const asked = part.offset;
      await part.restart();
      throw new Interruption(`Content-Range "${res.headers['content-range'] ?? ''}" when asking from byte ${asked}`);
    }
    if (Number(m[2]) >= size) await sizeMismatch(`Content-Range ends at byte ${m[2]}`);
    return;
  }
  if (status === 416) {
    const m = /^bytes \*\/(\d+)$/.exec(res.headers['content-range'] ?? '');
    if (m && Number(m[1]) !== size) await sizeMismatch(`file has ${m[1]} bytes`);
    await part.restart();
    throw new Interruption('HTTP 416 to a resume');
  }
  if (status === 408 || status === 429 || status >= 500) throw new Interruption(`HTTP ${status}`);
  // 401, 403, 404, a redirect, …: asking again would get the same answer, so fail fast.
  throw new LinkError('DOWNLOAD_FAILED', `${where}: HTTP ${status}${res.statusMessage ? ` ${res.statusMessage}` : ''}; not retried`);
}

/** OpenSSL's verdicts on a server certificate: fixed answers, so retrying them is pointless. */
const TLS_VERIFY_FAILURES: ReadonlySet<string> = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_REVOKED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function parseUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch (e) {
    throw new LinkError('DOWNLOAD_FAILED', 'the pack URL does not parse', { cause: e });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new LinkError('DOWNLOAD_FAILED', `${url.protocol} URLs are not fetched; use http: or https:`);
  return url;
}

/** `dest` holds the pack already (the command was redelivered, or an earlier call finished). */
async function alreadyThere(dest: string, size: number, sha256: string): Promise<boolean> {
  const info = await stat(dest).catch(() => undefined);
  if (!info) return false;
  if (info.isFile() && info.size === size) {
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(dest)) hash.update(chunk as Buffer);
    if (hash.digest('hex') === sha256) return true;
  }
  // Only verified bytes may sit at dest; these are not (disk damage, a foreign file).
  if (info.isFile()) await unlink(dest);
  return false;
}

function cancelled(where: string, bytes: number, size: number, signal: AbortSignal | undefined): LinkError {
  return new LinkError('DOWNLOAD_CANCELLED', `${where}: cancelled at byte ${bytes} of ${size}; the partial file is kept`, { cause: signal?.reason });
}

function errorName(e: unknown): string {
  if (e && typeof e === 'object' && 'code' in e && typeof e.code === 'string') return e.code;
  return e instanceof Error ? e.message : String(e);
}
