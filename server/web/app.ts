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
 * Runs `fn` now and then at most once per `gapMs` however often it is asked: a burst of live
 * changes costs one re-read, and a change during a re-read is not lost (one more follows).
 */
export function throttled(fn: () => Promise<void>, gapMs = 1000): () => void {
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
    timer = window.setTimeout(() => void run(), Math.max(0, last + gapMs - Date.now()));
  };
  return schedule;
}
