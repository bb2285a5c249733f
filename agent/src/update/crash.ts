/**
 * Fault injection (DESIGN.md, "Fault injection"): `SONDE_CRASH_AT=<point>` makes the agent die
 * abruptly, as from a power cut, when it reaches that named point. SIGKILL, not exit(): no
 * finally block, no flush, no cleanup runs. Every point the engine passes is listed here so the
 * crash-matrix test can loop over all of them.
 */
export const CRASH_POINTS = [
  'received:persisted',
  'verified:persisted',
  'stage:target-marked-bad',
  'stage:payloads-extracted',
  'stage:slot-written',
  'stage:slot-synced',
  'stage:app-stopped',
  'stage:db-snapshot',
  'stage:db-migrated',
  'stage:config-written',
  'staged:persisted',
  'switch:persisted',
  'switch:db-moved-aside',
  'switch:db-swapped',
  'switch:config-swapped',
  'switch:pointer-flipped',
  'trial:persisted',
  'trial:app-started',
  'trial:health-checked-once',
  'commit:persisted',
  'commit:slot-marked-good',
  'commit:receipt-written',
  'rollback:persisted',
  'rollback:app-stopped',
  'rollback:pointer-restored',
  'rollback:db-restored',
  'rollback:config-restored',
  'rollback:app-started',
  'write:before-rename',
  'write:after-rename',
] as const;

export type CrashPoint = (typeof CRASH_POINTS)[number];

/**
 * Dies at `point`. A point that writes a named file also matches `point:<file name>`, so
 * `write:before-rename:config.json` stops just before config.json is renamed into place.
 */
export function crashPoint(point: CrashPoint, detail?: string): void {
  const at = process.env.SONDE_CRASH_AT;
  if (at === undefined) return;
  if (at === point || (detail !== undefined && at === `${point}:${detail}`)) {
    process.kill(process.pid, 'SIGKILL');
  }
}
