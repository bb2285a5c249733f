import type { ProbeState } from '../../../base/src/protocol/messages.js';

/**
 * When the probe publishes its state (issue 24, docs/traffic.md): when something an operator acts
 * on changes, plus a full state at a long interval, on connect and on `report-now`. The state is
 * built locally every `checkMs` (no traffic: the app's health on loopback, files, statfs) and
 * published only when its significant part differs from the last one published, or when the last
 * publish is `fullMs` old. Liveness is the MQTT session's business (keepalive and last will), not
 * the state's.
 */
export interface CadenceOptions {
  readonly checkMs: number;
  readonly fullMs: number;
  readonly build: () => Promise<ProbeState>;
  /** Publishes; false when the link is down (the next check tries again). */
  readonly publish: (state: ProbeState) => Promise<boolean>;
  readonly now?: () => number;
}

/** Free-space bands: a disk crossing 20 %, 10 % or 5 % free is a change; a byte is not. */
const DISK_BANDS = [0.05, 0.1, 0.2];

export function diskBand(disk: ProbeState['disk']): number {
  if (disk.totalBytes <= 0) return 0;
  const free = disk.freeBytes / disk.totalBytes;
  return DISK_BANDS.filter((b) => free < b).length;
}

/** The part of a state whose change is worth a message: everything but the clock, the uptime and exact disk bytes. */
export function significant(s: ProbeState): string {
  const { at: _at, uptimeSeconds: _u, disk, ...rest } = s;
  return JSON.stringify({ ...rest, diskBand: diskBand(disk) });
}

export class StateCadence {
  private last: string | null = null;
  private lastAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private readonly now: () => number;

  constructor(private readonly o: CadenceOptions) {
    this.now = o.now ?? Date.now;
  }

  start(): void {
    // A failed look (a file mid-rename, statfs refused) is retried at the next one.
    this.timer = setInterval(() => void this.check().catch(() => undefined), this.o.checkMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One look: publish when changed or due. Calls do not overlap. */
  check(force = false): Promise<void> {
    if (this.running) return force ? this.running.then(() => this.check(true)) : this.running;
    this.running = this.run(force).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Publish now, changed or not (connect, report-now, an install outcome). */
  publishNow(): Promise<void> {
    return this.check(true);
  }

  private async run(force: boolean): Promise<void> {
    const state = await this.o.build();
    const key = significant(state);
    const due = this.now() - this.lastAt >= this.o.fullMs;
    if (!force && !due && key === this.last) return;
    if (await this.o.publish(state)) {
      this.last = key;
      this.lastAt = this.now();
    }
  }
}
