import type Database from 'better-sqlite3';
import { openAgentDb } from '../store/agent-db.js';
import type { Layout, SlotName } from './layout.js';
import { isOutcome, type Outcome, type State } from './machine.js';
import type { PackKind } from '../../../pack/src/index.js';

/**
 * The journal of deployments and their states, their outcomes and the committed releases, in
 * agent.db (opened and migrated by agent/src/store/agent-db.ts, WAL with synchronous=FULL: a
 * state written here survives a power cut before the action that follows it starts).
 */
export interface ProbeFacts {
  version: string | null;
  slot: SlotName | null;
  dbVersion: number | null;
  configVersion: number | null;
}

export interface Deployment {
  id: string;
  packSha256: string;
  packPath: string;
  kind: PackKind | null;
  product: string | null;
  fromVersion: string | null;
  toVersion: string | null;
  securityVersion: number | null;
  packCreatedAt: string | null;
  state: State;
  /**
   * How the deployment ended, recorded once, when the state machine entered an outcome state
   * (the small second machine beside the main one, as Mender's deployment tracking): receipts,
   * the daemon's reports, the CLI and the drop read this and derive nothing. Null while it runs.
   */
  outcome: Outcome | null;
  resumeCount: number;
  activeSlot: SlotName | null;
  targetSlot: SlotName | null;
  /** Facts recorded while staging, which undo and commit rely on. */
  stage: StageFacts;
  startedAt: string;
  updatedAt: string;
  endedAt: string | null;
  errorCode: string | null;
  errorMessage: string | null;
  before: ProbeFacts | null;
  after: ProbeFacts | null;
  timings: Record<string, number>;
}

export interface StageFacts {
  snapshotDir?: string;
  stagingDir?: string;
  dbExisted?: boolean;
  configExisted?: boolean;
  appWasRunning?: boolean;
  appStopped?: boolean;
  /** The target slot was marked bad and (partly) written. */
  targetTouched?: boolean;
  releaseVersion?: string;
  /** Block slots: the boot id of the system that asked for the reboot into the new slot. */
  rebootFrom?: string;
  dbVersion?: number;
  configVersion?: number;
}

export interface Release {
  deploymentId: string;
  product: string;
  version: string;
  securityVersion: number;
  packCreatedAt: string;
  slot: SlotName | null;
  dbVersion: number | null;
  configVersion: number | null;
  committedAt: string;
}

interface Row {
  id: string;
  pack_sha256: string;
  pack_path: string;
  kind: string | null;
  product: string | null;
  from_version: string | null;
  to_version: string | null;
  security_version: number | null;
  pack_created_at: string | null;
  state: string;
  outcome: string | null;
  resume_count: number;
  active_slot: string | null;
  target_slot: string | null;
  stage_json: string;
  started_at: string;
  updated_at: string;
  ended_at: string | null;
  error_code: string | null;
  error_message: string | null;
  before_json: string | null;
  after_json: string | null;
  timings_json: string;
}

const SELECT = 'SELECT d.*, o.outcome AS outcome FROM deployments d LEFT JOIN outcomes o ON o.deployment_id = d.id';

/** A deployment that ended committed and with no error: the one answer "did it install?" has. */
export function succeeded(d: Deployment): boolean {
  return d.outcome === 'committed' && d.errorCode === null;
}

function fromRow(r: Row): Deployment {
  return {
    id: r.id,
    packSha256: r.pack_sha256,
    packPath: r.pack_path,
    kind: r.kind as PackKind | null,
    product: r.product,
    fromVersion: r.from_version,
    toVersion: r.to_version,
    securityVersion: r.security_version,
    packCreatedAt: r.pack_created_at,
    state: r.state as State,
    outcome: r.outcome as Outcome | null,
    resumeCount: r.resume_count,
    activeSlot: r.active_slot as SlotName | null,
    targetSlot: r.target_slot as SlotName | null,
    stage: JSON.parse(r.stage_json) as StageFacts,
    startedAt: r.started_at,
    updatedAt: r.updated_at,
    endedAt: r.ended_at,
    errorCode: r.error_code,
    errorMessage: r.error_message,
    before: r.before_json ? (JSON.parse(r.before_json) as ProbeFacts) : null,
    after: r.after_json ? (JSON.parse(r.after_json) as ProbeFacts) : null,
    timings: JSON.parse(r.timings_json) as Record<string, number>,
  };
}

export type DeploymentPatch = Partial<
  Pick<Deployment, 'kind' | 'product' | 'fromVersion' | 'toVersion' | 'securityVersion' | 'packCreatedAt' | 'activeSlot' | 'targetSlot' | 'endedAt' | 'errorCode' | 'errorMessage' | 'before' | 'after' | 'resumeCount'>
> & { stage?: StageFacts; timings?: Record<string, number> };

const COLUMNS: Record<string, string> = {
  kind: 'kind',
  product: 'product',
  fromVersion: 'from_version',
  toVersion: 'to_version',
  securityVersion: 'security_version',
  packCreatedAt: 'pack_created_at',
  activeSlot: 'active_slot',
  targetSlot: 'target_slot',
  endedAt: 'ended_at',
  errorCode: 'error_code',
  errorMessage: 'error_message',
  resumeCount: 'resume_count',
};

export class Journal {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = openAgentDb(path);
  }

  /** agent.db's connection, which the daemon's outbox and command store use too. */
  get connection(): Database.Database {
    return this.db;
  }

  static open(layout: Layout): Journal {
    return new Journal(layout.journal);
  }

  close(): void {
    this.db.close();
  }

  create(id: string, packSha256: string, packPath: string, before: ProbeFacts): Deployment {
    const now = new Date().toISOString();
    this.db.transaction(() => {
      this.db
        .prepare(`INSERT INTO deployments (id, pack_sha256, pack_path, state, started_at, updated_at, before_json, from_version) VALUES (?, ?, ?, 'received', ?, ?, ?, ?)`)
        .run(id, packSha256, packPath, now, now, JSON.stringify(before), before.version);
      this.db.prepare(`INSERT INTO transitions (deployment_id, seq, at, from_state, event, to_state) VALUES (?, 0, ?, NULL, NULL, 'received')`).run(id, now);
    })();
    return this.get(id)!;
  }

  get(id: string): Deployment | null {
    const r = this.db.prepare(`${SELECT} WHERE d.id = ?`).get(id) as Row | undefined;
    return r ? fromRow(r) : null;
  }

  /** The pack's identity (sha256 of its signed manifest), known once the manifest is read. */
  setPackId(id: string, packSha256: string): void {
    this.db.prepare('UPDATE deployments SET pack_sha256 = ? WHERE id = ?').run(packSha256, id);
  }

  /** Records the facts of a deployment without changing its state. */
  update(id: string, patch: DeploymentPatch): Deployment {
    const sets: string[] = ['updated_at = @updated_at'];
    const params: Record<string, unknown> = { id, updated_at: new Date().toISOString() };
    for (const [key, value] of Object.entries(patch)) {
      if (value === undefined) continue;
      if (key === 'stage') {
        const merged = { ...this.get(id)!.stage, ...(value as StageFacts) };
        sets.push('stage_json = @stage_json');
        params.stage_json = JSON.stringify(merged);
      } else if (key === 'timings') {
        const merged = { ...this.get(id)!.timings, ...(value as Record<string, number>) };
        sets.push('timings_json = @timings_json');
        params.timings_json = JSON.stringify(merged);
      } else if (key === 'before' || key === 'after') {
        sets.push(`${key}_json = @${key}_json`);
        params[`${key}_json`] = JSON.stringify(value);
      } else {
        const col = COLUMNS[key];
        if (!col) throw new Error(`unknown deployment field ${key}`);
        sets.push(`${col} = @${col}`);
        params[col] = value;
      }
    }
    this.db.prepare(`UPDATE deployments SET ${sets.join(', ')} WHERE id = @id`).run(params);
    return this.get(id)!;
  }

  /** Persists a transition; the caller acts only after this returns. */
  transition(id: string, from: State, event: string, to: State, patch: DeploymentPatch = {}): Deployment {
    this.db.transaction(() => {
      const seq = (this.db.prepare('SELECT COALESCE(MAX(seq), -1) + 1 AS n FROM transitions WHERE deployment_id = ?').get(id) as { n: number }).n;
      this.db.prepare('INSERT INTO transitions (deployment_id, seq, at, from_state, event, to_state) VALUES (?, ?, ?, ?, ?, ?)').run(id, seq, new Date().toISOString(), from, event, to);
      this.db.prepare('UPDATE deployments SET state = ? WHERE id = ?').run(to, id);
      if (Object.keys(patch).length > 0) this.update(id, patch);
      else this.update(id, {});
      // Entering an outcome state records the outcome, once: later edges (an outcome's own
      // `done`, a resumed finalisation) find it there and leave it.
      if (isOutcome(to)) {
        const code = (this.db.prepare('SELECT error_code FROM deployments WHERE id = ?').get(id) as { error_code: string | null }).error_code;
        this.db.prepare('INSERT OR IGNORE INTO outcomes (deployment_id, outcome, error_code, recorded_at) VALUES (?, ?, ?, ?)').run(id, to, code, new Date().toISOString());
      }
      // IMMEDIATE: it reads before it writes, and agent.db has a writer in the daemon too.
    }).immediate();
    return this.get(id)!;
  }

  /** The deployment a crash left unfinished, if any. */
  unfinished(): Deployment | null {
    const r = this.db.prepare(`${SELECT} WHERE d.ended_at IS NULL ORDER BY d.started_at DESC LIMIT 1`).get() as Row | undefined;
    return r ? fromRow(r) : null;
  }

  history(limit = 100): Deployment[] {
    return (this.db.prepare(`${SELECT} ORDER BY d.started_at DESC, d.rowid DESC LIMIT ?`).all(limit) as Row[]).map(fromRow);
  }

  transitions(id: string): { seq: number; at: string; from: string | null; event: string | null; to: string }[] {
    return this.db
      .prepare('SELECT seq, at, from_state AS "from", event, to_state AS "to" FROM transitions WHERE deployment_id = ? ORDER BY seq')
      .all(id) as { seq: number; at: string; from: string | null; event: string | null; to: string }[];
  }

  recordRelease(r: Release): void {
    this.db
      .prepare(
        `INSERT OR REPLACE INTO releases (deployment_id, product, version, security_version, pack_created_at, slot, db_version, config_version, committed_at)
         VALUES (@deploymentId, @product, @version, @securityVersion, @packCreatedAt, @slot, @dbVersion, @configVersion, @committedAt)`,
      )
      .run(r);
  }

  /** Committed releases that switched slots, newest first. */
  releases(): Release[] {
    return (
      this.db.prepare('SELECT * FROM releases ORDER BY committed_at DESC, rowid DESC').all() as {
        deployment_id: string;
        product: string;
        version: string;
        security_version: number;
        pack_created_at: string;
        slot: string | null;
        db_version: number | null;
        config_version: number | null;
        committed_at: string;
      }[]
    ).map((r) => ({
      deploymentId: r.deployment_id,
      product: r.product,
      version: r.version,
      securityVersion: r.security_version,
      packCreatedAt: r.pack_created_at,
      slot: r.slot as SlotName | null,
      dbVersion: r.db_version,
      configVersion: r.config_version,
      committedAt: r.committed_at,
    }));
  }

  /** The security floor: the highest securityVersion ever committed. */
  securityFloor(): number {
    return (this.db.prepare('SELECT COALESCE(MAX(security_version), 0) AS v FROM releases').get() as { v: number }).v;
  }

  /** Newest createdAt committed with this securityVersion (anti-replay of older packs). */
  newestCreatedAt(securityVersion: number): string | null {
    return (this.db.prepare('SELECT MAX(pack_created_at) AS t FROM releases WHERE security_version = ?').get(securityVersion) as { t: string | null }).t;
  }

  /**
   * The trusted time floor (DESIGN.md, "Trust"): the newest signed createdAt of a pack this probe
   * committed, of any kind. Kept in agent.db's meta table and never lowered.
   */
  timeFloor(): Date | null {
    const r = this.db.prepare("SELECT value FROM meta WHERE key = 'timeFloor'").get() as { value: string } | undefined;
    return r ? new Date(r.value) : null;
  }

  /** Raises the time floor to `createdAt` when it is newer; an older one leaves it as it is. */
  raiseTimeFloor(createdAt: string): void {
    this.raiseMeta('timeFloor', createdAt);
  }

  /** The signed createdAt of the newest licence or trust pack applied (their anti-replay rule). */
  newestApplied(kind: 'license' | 'trust'): string | null {
    const r = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(`applied:${kind}`) as { value: string } | undefined;
    return r?.value ?? null;
  }

  recordApplied(kind: 'license' | 'trust', createdAt: string): void {
    this.raiseMeta(`applied:${kind}`, createdAt);
  }

  /** Sets a time in meta to `iso` when that is later than the one there; never lowers it. */
  private raiseMeta(key: string, iso: string): void {
    const at = new Date(iso);
    if (Number.isNaN(at.getTime())) return;
    // ISO-8601 UTC strings of one form compare as their times do.
    this.db
      .prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE excluded.value > meta.value')
      .run(key, at.toISOString());
  }

  /** Receipts-worth of history kept in the journal; older ended deployments are pruned. */
  prune(keep: number): void {
    this.db
      .prepare(`DELETE FROM hook_runs WHERE deployment_id IN (SELECT id FROM deployments WHERE ended_at IS NOT NULL ORDER BY started_at DESC LIMIT -1 OFFSET ?)`)
      .run(keep);
    this.db
      .prepare(`DELETE FROM outcomes WHERE deployment_id IN (SELECT id FROM deployments WHERE ended_at IS NOT NULL ORDER BY started_at DESC LIMIT -1 OFFSET ?)`)
      .run(keep);
    this.db
      .prepare(`DELETE FROM transitions WHERE deployment_id IN (SELECT id FROM deployments WHERE ended_at IS NOT NULL ORDER BY started_at DESC LIMIT -1 OFFSET ?)`)
      .run(keep);
    this.db.prepare(`DELETE FROM deployments WHERE id IN (SELECT id FROM deployments WHERE ended_at IS NOT NULL ORDER BY started_at DESC LIMIT -1 OFFSET ?)`).run(keep);
  }
}
