import type { LiveChange, Role, Session } from './api-types.js';

/** What every view is handed: who is signed in, and what they may do. */
export interface AppCtx {
  readonly session: Session;
  /** True when the signed-in role is at least `role` (the API refuses anyway; this hides what would be refused). */
  can(role: Role): boolean;
  /** Changes the hash (a view's own filters live in it, so a view can be shared by its URL). */
  navigate(hash: string, replace?: boolean): void;
}

export interface View {
  readonly title: string;
  readonly root: HTMLElement;
  /** A change from the live stream; the view re-reads what it shows if the change names it. */
  onLive?(c: LiveChange): void;
  dispose?(): void;
}

export type ViewFactory = (ctx: AppCtx, params: readonly string[], query: URLSearchParams) => Promise<View>;

const ROLES: readonly Role[] = ['viewer', 'operator', 'admin'];
export function roleAtLeast(have: Role, need: Role): boolean {
  return ROLES.indexOf(have) >= ROLES.indexOf(need);
}

/**
 * How often a list re-reads on live changes: every second while changes name probes, every 5 s
 * while the fleet floods (over 500 probes changed in one message: `"*"`). In a 10,000-probe
 * fleet reporting every 10 s every message is a flood: a page redrawn every second then changes
 * faster than anyone reads it, and each dashboard would ask the server for it every second.
 */
export function listGap(flooding: () => boolean): () => number {
  return () => (flooding() ? 5000 : 1000);
}

/**
 * Runs `fn` now and then at most once per `gapMs` however often it is asked: a burst of live
 * changes costs one re-read, and a change during a re-read is not lost (one more follows).
 */
export function throttled(fn: () => Promise<void>, gapMs: number | (() => number) = 1000): () => void {
  const gap = typeof gapMs === 'number' ? () => gapMs : gapMs;
  let running = false;
  let again = false;
  let last = 0;
  let timer: number | null = null;
  const run = async (): Promise<void> => {
    timer = null;
    running = true;
    last = Date.now();
    try {
      await fn();
    } catch {
      // The view shows its own errors; a failed refresh waits for the next change.
    } finally {
      running = false;
      if (again) {
        again = false;
        schedule();
      }
    }
  };
  const schedule = (): void => {
    if (running) {
      again = true;
      return;
    }
    if (timer !== null) return;
    timer = window.setTimeout(() => void run(), Math.max(0, last + gap() - Date.now()));
  };
  return schedule;
}
