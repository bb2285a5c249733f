import type { DownloadLimits, DownloadWindow } from '../../../base/src/protocol/download-limits.js';

/**
 * How fast and when a pack download may run (issue 24, docs/traffic.md): a token bucket that
 * holds the bytes read to the cap, and the windows of local time (IANA zones) the download must
 * be inside. The probe's config and the rollout's command each may set both; the stricter wins.
 */

/** The stricter of two sets of limits: the lower cap, and every window (all must be open). */
export function stricter(a: DownloadLimits | undefined, b: DownloadLimits | undefined): { maxBytesPerSecond: number | null; windows: DownloadWindow[] } {
  const caps = [a?.maxBytesPerSecond, b?.maxBytesPerSecond].filter((x): x is number => x !== undefined);
  return { maxBytesPerSecond: caps.length ? Math.min(...caps) : null, windows: [a?.window, b?.window].filter((w): w is DownloadWindow => w !== undefined) };
}

const formatters = new Map<string, Intl.DateTimeFormat>();

/** Minutes since local midnight in `zone` at `at`. */
export function localMinutes(at: Date, zone: string): number {
  let f = formatters.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-GB', { timeZone: zone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    formatters.set(zone, f);
  }
  const parts = f.formatToParts(at);
  const h = Number(parts.find((p) => p.type === 'hour')!.value);
  const m = Number(parts.find((p) => p.type === 'minute')!.value);
  return h * 60 + m;
}

const minutesOf = (hhmm: string): number => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

export function windowOpen(at: Date, w: DownloadWindow): boolean {
  const now = localMinutes(at, w.timeZone);
  const start = minutesOf(w.start);
  const end = minutesOf(w.end);
  if (start === end) return true;
  return start < end ? now >= start && now < end : now >= start || now < end;
}

/**
 * Milliseconds from `at` until every window is open (0 when they are). Looked for minute by minute
 * over the next 8 days (daylight-saving days included); null when the windows never meet.
 */
export function msUntilOpen(at: Date, windows: readonly DownloadWindow[]): number | null {
  if (windows.every((w) => windowOpen(at, w))) return 0;
  const firstMinute = Math.ceil(at.getTime() / 60_000) * 60_000;
  for (let t = firstMinute; t <= at.getTime() + 8 * 86_400_000; t += 60_000) {
    if (windows.every((w) => windowOpen(new Date(t), w))) return t - at.getTime();
  }
  return null;
}

/** Milliseconds from `at` until one of the windows closes (Infinity when none will within 8 days). */
export function msUntilClose(at: Date, windows: readonly DownloadWindow[]): number {
  if (windows.length === 0) return Infinity;
  const firstMinute = Math.ceil((at.getTime() + 1) / 60_000) * 60_000;
  for (let t = firstMinute; t <= at.getTime() + 8 * 86_400_000; t += 60_000) {
    if (!windows.every((w) => windowOpen(new Date(t), w))) return t - at.getTime();
  }
  return Infinity;
}

/**
 * A token bucket in bytes: `take(n)` waits until n bytes fit the rate. The bucket holds at most a
 * quarter second of the rate (at least 16 KiB), so over any minute the bytes read stay within a
 * fraction of a percent of the cap; the kernel's receive buffer lets a little more onto the wire
 * at the start (tens of KiB, docs/traffic.md).
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly burst: number;

  constructor(
    private readonly rate: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.burst = Math.max(16 * 1024, rate / 4);
    this.tokens = this.burst;
    this.last = this.now();
  }

  /** How long to wait before `n` more bytes may be read (the bytes are counted now). */
  take(n: number): number {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
    this.tokens -= n;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.rate) * 1000;
  }
}
