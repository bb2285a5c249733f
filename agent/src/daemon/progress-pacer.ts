/**
 * How often a download reports its progress (issue 24, docs/traffic.md): at each tenth of the pack
 * and, while a cap or a window holds it back, at least every 30 s; never more than one event in
 * 2 s, except the last (100 %) and a message (a wait for the window) which always go out.
 */
export const PROGRESS_MIN_GAP_MS = 2000;
export const PROGRESS_MAX_GAP_MS = 30_000;

export class ProgressPacer {
  private lastTenth = -1;
  private lastAt = Number.NEGATIVE_INFINITY;

  constructor(private readonly now: () => number = Date.now) {}

  /** Whether this progress is worth an event; if so, it counts as sent. */
  due(bytes: number, total: number, message?: string): boolean {
    const tenth = Math.floor((bytes / Math.max(total, 1)) * 10);
    const t = this.now();
    const done = tenth >= 10;
    if (message === undefined && !done) {
      if (t - this.lastAt < PROGRESS_MIN_GAP_MS) return false;
      if (tenth <= this.lastTenth && t - this.lastAt < PROGRESS_MAX_GAP_MS) return false;
    }
    this.lastTenth = Math.max(this.lastTenth, tenth);
    this.lastAt = t;
    return true;
  }
}
