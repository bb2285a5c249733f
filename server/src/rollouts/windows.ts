import { z } from 'zod';

/**
 * Maintenance windows (issue 5): times of day, in UTC or at a fixed offset from it, during which a
 * rollout may send commands. A window whose end is before its start runs over midnight
 * (22:00–04:00); start = end is the whole day. `days`, when given, names the days on which a
 * window *starts*, in its own offset. No window at all means any time. Pure functions of a clock
 * the engine passes in, so tests move time instead of waiting for it.
 */
export const WEEKDAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'] as const;
export type Weekday = (typeof WEEKDAYS)[number];

const timeOfDay = z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, 'HH:MM, 00:00 to 23:59');
const offset = z.string().regex(/^(Z|[+-](0\d|1[0-4]):[0-5]\d)$/, 'Z or ±HH:MM');

export const windowSchema = z
  .object({
    start: timeOfDay,
    end: timeOfDay,
    utcOffset: offset.default('Z'),
    days: z.array(z.enum(WEEKDAYS)).min(1).max(7).optional(),
  })
  .strict();
export type MaintenanceWindow = z.output<typeof windowSchema>;

const DAY_MS = 86_400_000;

function minutes(hhmm: string): number {
  return Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));
}

export function offsetMinutes(o: string): number {
  if (o === 'Z') return 0;
  const sign = o.startsWith('-') ? -1 : 1;
  return sign * (Number(o.slice(1, 3)) * 60 + Number(o.slice(4, 6)));
}

function dayAllowed(w: MaintenanceWindow, localMs: number): boolean {
  if (!w.days) return true;
  return w.days.includes(WEEKDAYS[new Date(localMs).getUTCDay()]!);
}

/** Is `now` inside this window? */
export function insideWindow(w: MaintenanceWindow, now: Date): boolean {
  const local = now.getTime() + offsetMinutes(w.utcOffset) * 60_000;
  const m = Math.floor((((local % DAY_MS) + DAY_MS) % DAY_MS) / 60_000);
  const start = minutes(w.start);
  const end = minutes(w.end);
  if (start === end) return dayAllowed(w, local);
  if (start < end) return m >= start && m < end && dayAllowed(w, local);
  // over midnight: the evening part belongs to today's window, the morning part to yesterday's
  if (m >= start) return dayAllowed(w, local);
  if (m < end) return dayAllowed(w, local - DAY_MS);
  return false;
}

/** May commands be sent at `now`? */
export function windowOpen(windows: readonly MaintenanceWindow[], now: Date): boolean {
  return windows.length === 0 || windows.some((w) => insideWindow(w, now));
}

/** When the next window opens (to the minute, within 8 days), or null if it is open now or never. */
export function nextOpening(windows: readonly MaintenanceWindow[], now: Date): Date | null {
  if (windowOpen(windows, now)) return null;
  const first = Math.ceil(now.getTime() / 60_000) * 60_000;
  for (let t = first; t < first + 8 * DAY_MS; t += 60_000) {
    if (windows.some((w) => insideWindow(w, new Date(t)))) return new Date(t);
  }
  return null;
}
