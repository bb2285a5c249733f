import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { IntervalHistogram } from 'node:perf_hooks';

/**
 * What the three processes of bench/fleet share (fleet.ts the orchestrator, fleet-server.ts the
 * server, fleet-sim.ts the simulated probes): a wall clock with sub-millisecond resolution that
 * all of them read the same way, timestamps carried in a probe state's `at`, percentiles, /proc
 * readings, and a small request/response protocol over the Node IPC channel.
 */

/**
 * Milliseconds since the epoch, to the microsecond. performance.timeOrigin is read from the
 * system clock when a process starts, so two processes on one machine agree to within the
 * clock's own drift over the run (microseconds), which is what a cross-process latency needs.
 */
export function wallMs(): number {
  return performance.timeOrigin + performance.now();
}

/** An ISO 8601 UTC time with six fractional digits (the state schema takes any precision). */
export function isoMicro(ms: number): string {
  const whole = Math.floor(ms);
  const micro = Math.min(999, Math.floor((ms - whole) * 1000));
  return `${new Date(whole).toISOString().slice(0, -1)}${String(micro).padStart(3, '0')}Z`;
}

/** The inverse of isoMicro; NaN for another shape. */
export function parseIsoMicro(s: string): number {
  const m = /^(.{19}\.\d{3})(\d{3})Z$/.exec(s);
  if (!m) return Number.NaN;
  return Date.parse(`${m[1]}Z`) + Number(m[2]) / 1000;
}

/** Nearest-rank percentile of an ascending array; NaN when empty. */
export function pct(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export interface Summary {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export function summarise(values: readonly number[] | Float64Array): Summary {
  const s = Float64Array.from(values).sort();
  return { n: s.length, p50: pct(s, 50), p99: pct(s, 99), max: s.length ? s[s.length - 1]! : Number.NaN };
}

export const ms = (x: number): string => (Number.isFinite(x) ? (x >= 100 ? `${x.toFixed(0)} ms` : `${x.toFixed(x >= 10 ? 1 : 2)} ms`) : 'n/a');
export const sec = (x: number): string => (Number.isFinite(x) ? `${(x / 1000).toFixed(2)} s` : 'n/a');

/** utime + stime of a process, in clock ticks (USER_HZ, 100 on Linux). */
export function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(rest[11]) + Number(rest[12]);
}

export const CLOCK_TICKS_PER_SECOND = 100;

/**
 * From /proc/<pid>/schedstat (the main thread): time on a CPU and time spent runnable but waiting
 * for one, in ms. The second is what an oversubscribed machine takes from a process.
 */
export function schedStat(pid: number): { runMs: number; waitMs: number } {
  const [run, wait] = readFileSync(`/proc/${pid}/schedstat`, 'utf8').trim().split(' ').map(Number);
  return { runMs: (run ?? Number.NaN) / 1e6, waitMs: (wait ?? Number.NaN) / 1e6 };
}

/** VmRSS and VmHWM (peak) in KiB. */
export function rssKiB(pid: number): { rss: number; hwm: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const get = (k: string): number => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(s)?.[1] ?? Number.NaN);
  return { rss: get('VmRSS'), hwm: get('VmHWM') };
}

/** The kernel's TCP counters that tell a connect waited in the kernel: SYNs dropped on a full accept queue, SYNs sent again. */
export function tcpCounters(): { listenOverflows: number; synRetrans: number } {
  const lines = readFileSync('/proc/net/netstat', 'utf8').split('\n').filter((l) => l.startsWith('TcpExt:'));
  const names = lines[0]?.split(' ') ?? [];
  const values = lines[1]?.split(' ') ?? [];
  const get = (k: string): number => Number(values[names.indexOf(k)] ?? Number.NaN);
  return { listenOverflows: get('ListenOverflows'), synRetrans: get('TCPSynRetrans') };
}

/** What tcpCounters() moved by since `before`, as text (machine-wide: other work counts too). */
export function tcpDelta(before: { listenOverflows: number; synRetrans: number }): string {
  const now = tcpCounters();
  return `kernel: ${now.listenOverflows - before.listenOverflows} SYNs dropped on a full accept queue, ${now.synRetrans - before.synRetrans} SYN retransmits`;
}

export function loadAverage(): string {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
}

// ---------------------------------------------------------------------------------------------
// Requests over the IPC channel: { id, op, args } answered by { id, ok, value | error }.

interface Request {
  readonly id: number;
  readonly op: string;
  readonly args: unknown;
}
type Reply = { readonly id: number; readonly ok: true; readonly value: unknown } | { readonly id: number; readonly ok: false; readonly error: string };
type Note = { readonly note: string; readonly value: unknown };

/** The orchestrator's end of a child process. */
export class Peer {
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private readonly notes = new Map<string, (value: unknown) => void>();

  constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    child.on('message', (m: Reply | Note) => {
      if ('note' in m) {
        this.notes.get(m.note)?.(m.value);
        return;
      }
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      clearTimeout(w.timer);
      if (m.ok) w.resolve(m.value);
      else w.reject(new Error(`${name}: ${m.error}`));
    });
    child.on('exit', (code, signal) => {
      for (const w of this.waiting.values()) {
        clearTimeout(w.timer);
        w.reject(new Error(`${name} exited (${code ?? signal}) during a request`));
      }
      this.waiting.clear();
    });
  }

  request<T>(op: string, args: unknown = null, timeoutMs = 30_000): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`${this.name}: ${op} took over ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      this.child.send({ id, op, args } satisfies Request);
    });
  }

  /** Waits for one unsolicited message `note` from the child (`ready`), bounded in time. */
  once<T>(note: string, timeoutMs: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no ${note} within ${timeoutMs} ms`)), timeoutMs);
      const exit = (code: number | null): void => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (${code}) before ${note}`));
      };
      this.child.once('exit', exit);
      this.notes.set(note, (v) => {
        clearTimeout(timer);
        this.child.off('exit', exit);
        this.notes.delete(note);
        resolve(v as T);
      });
    });
  }
}

/** The child's end: answers requests with these handlers. */
export function serve(handlers: Record<string, (args: never) => unknown>): void {
  process.on('message', (m: Request) => {
    const h = handlers[m.op];
    void (async () => {
      try {
        if (!h) throw new Error(`unknown op ${m.op}`);
        const value = await h(m.args as never);
        process.send?.({ id: m.id, ok: true, value } satisfies Reply);
      } catch (e) {
        process.send?.({ id: m.id, ok: false, error: (e as Error).stack ?? String(e) } satisfies Reply);
      }
    })();
  });
  // The orchestrator went away: nothing is left to measure for.
  process.on('disconnect', () => process.exit(0));
}

export function notify(note: string, value: unknown): void {
  process.send?.({ note, value } satisfies Note);
}

/** A child's configuration, handed over as JSON in an environment variable. */
export function childConfig<T>(): T {
  const raw = process.env['SONDE_FLEET_CONFIG'];
  if (!raw) throw new Error('SONDE_FLEET_CONFIG is not set: this process is started by bench/fleet');
  return JSON.parse(raw) as T;
}

/** The sampling interval of the event-loop delay monitors. */
export const ELD_RESOLUTION_MS = 10;

/**
 * Event-loop delay in ms. Node's histogram holds the time between its timer's runs, interval
 * included (an idle process shows about 10 ms at a 10 ms resolution), so the interval is taken off.
 */
export function eldSummary(h: IntervalHistogram): { p50: number; p99: number; max: number } {
  const d = (ns: number): number => Math.max(0, ns / 1e6 - ELD_RESOLUTION_MS);
  return { p50: d(h.percentile(50)), p99: d(h.percentile(99)), max: d(h.max) };
}
