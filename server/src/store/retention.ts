import type { SqliteDb } from './sqlite-db.js';

/**
 * Bounded server state (docs/server.md, "Retention"): a server runs for years on a bounded disk.
 * What grows with time is the probes' events, the audit log, finished commands and finished
 * deployments; each is kept by age and by count, the newest first. What is never deleted: a probe,
 * a pack, a rollout and its targets, a command or deployment not finished, a command of a rollout
 * still under way, and the newest deployments of each probe (its history), up to the count.
 */
export interface RetentionPolicy {
  /** Events older than this are deleted; each probe keeps at most `eventsPerProbe` of the rest. */
  readonly eventsMaxAgeMs: number;
  readonly eventsPerProbe: number;
  readonly auditMaxAgeMs: number;
  readonly auditMaxRows: number;
  /** Finished commands and deployments older than this; each probe keeps at most `deploymentsPerProbe`. */
  readonly historyMaxAgeMs: number;
  readonly deploymentsPerProbe: number;
}

const DAY = 86_400_000;

export const DEFAULT_RETENTION: RetentionPolicy = Object.freeze({
  eventsMaxAgeMs: 90 * DAY,
  eventsPerProbe: 500,
  auditMaxAgeMs: 400 * DAY,
  auditMaxRows: 1_000_000,
  historyMaxAgeMs: 400 * DAY,
  deploymentsPerProbe: 100,
});

export interface PruneResult {
  readonly events: number;
  readonly audit: number;
  readonly commands: number;
  readonly deployments: number;
}

/** One retention pass, in one transaction per table (the ingest waits at most for one). */
export function pruneStore(sql: SqliteDb, p: RetentionPolicy, now: Date): PruneResult {
  const before = (ms: number): string => new Date(now.getTime() - ms).toISOString();
  const events = sql.tx(() => {
    let n = sql.run('DELETE FROM events WHERE received_at < ?', before(p.eventsMaxAgeMs)).changes;
    n += sql.run(
      `DELETE FROM events WHERE rowid IN (
         SELECT rowid FROM (SELECT rowid, ROW_NUMBER() OVER (PARTITION BY probe_id ORDER BY seq DESC, received_at DESC) AS rn FROM events) WHERE rn > ?)`,
      p.eventsPerProbe,
    ).changes;
    return n;
  });
  const audit = sql.tx(() => {
    let n = sql.run('DELETE FROM audit WHERE at < ?', before(p.auditMaxAgeMs)).changes;
    n += sql.run('DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?)', p.auditMaxRows).changes;
    return n;
  });
  const commands = sql.tx(
    () =>
      sql.run(
        `DELETE FROM commands WHERE finished_at IS NOT NULL AND finished_at < ?
           AND (rollout_id IS NULL OR rollout_id IN (SELECT id FROM rollouts WHERE state IN ('completed', 'aborted')))`,
        before(p.historyMaxAgeMs),
      ).changes,
  );
  const deployments = sql.tx(() => {
    let n = sql.run('DELETE FROM deployments WHERE finished_at IS NOT NULL AND finished_at < ?', before(p.historyMaxAgeMs)).changes;
    n += sql.run(
      `DELETE FROM deployments WHERE finished_at IS NOT NULL AND rowid IN (
         SELECT rowid FROM (SELECT rowid, ROW_NUMBER() OVER (PARTITION BY probe_id ORDER BY started_at DESC) AS rn FROM deployments) WHERE rn > ?)`,
      p.deploymentsPerProbe,
    ).changes;
    return n;
  });
  return { events, audit, commands, deployments };
}
