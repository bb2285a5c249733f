import { parseJson, placeholders, type SqliteDb } from '../store/sqlite-db.js';
import type { Environment } from './environments.js';
import type { RolloutEvent, RolloutState, TargetState } from './machine.js';
import type {
  ApprovalRecord,
  RolloutPatch,
  RolloutQuery,
  RolloutRecord,
  RolloutRepository,
  TargetChange,
  TargetCount,
  TargetRecord,
  TransitionRecord,
} from './rollout-repository.js';

/** Targets per multi-row INSERT: 64 x 14 parameters, well under SQLite's limit. */
const INSERT_ROWS = 64;

/**
 * Rollouts in SQLite, over the store's shared connection (tables: migration `0002-rollouts`).
 * Portable SQL, as in the rest of the store (TEXT timestamps and JSON, INTEGER booleans), except the
 * lookup of targets by many command ids, which reads them from a JSON array with json_each.
 */
interface RolloutRow {
  id: string;
  name: string | null;
  pack_sha256: string;
  pack_version: string;
  pack_product: string;
  environment: Environment | null;
  target: string;
  strategy: string;
  windows: string;
  download: string | null;
  agent_first: string | null;
  state: RolloutState;
  wave: number;
  wave_count: number;
  has_canary: number;
  wait_until: string | null;
  paused_reason: string | null;
  created_by: string;
  created_by_name: string;
  created_at: string;
  started_at: string | null;
  updated_at: string;
  finished_at: string | null;
}

interface TargetRow {
  rollout_id: string;
  probe_id: string;
  wave: number;
  position: number;
  state: TargetState;
  attempt: number;
  command_id: string | null;
  error_code: string | null;
  deployment_id: string | null;
  skip_reason: string | null;
  acknowledged: number;
  sent_at: string | null;
  updated_at: string;
  finished_at: string | null;
}

interface HistoryRow {
  at: string;
  from_state: RolloutState;
  event: RolloutEvent;
  to_state: RolloutState;
  wave: number;
  actor: string;
  detail: string | null;
}

interface ApprovalRow {
  rollout_id: string;
  kind: 'wave' | 'promotion';
  wave: number | null;
  environment: Environment | null;
  pack_sha256: string;
  approved_by: string;
  approved_by_name: string;
  approved_at: string;
}

function toRollout(r: RolloutRow): RolloutRecord {
  return {
    id: r.id,
    name: r.name,
    packSha256: r.pack_sha256,
    packVersion: r.pack_version,
    packProduct: r.pack_product,
    environment: r.environment,
    target: JSON.parse(r.target) as RolloutRecord['target'],
    strategy: JSON.parse(r.strategy) as RolloutRecord['strategy'],
    windows: JSON.parse(r.windows) as RolloutRecord['windows'],
    download: r.download === null ? null : (JSON.parse(r.download) as RolloutRecord['download']),
    agentFirst: r.agent_first === null ? null : (JSON.parse(r.agent_first) as RolloutRecord['agentFirst']),
    state: r.state,
    wave: r.wave,
    waveCount: r.wave_count,
    hasCanary: r.has_canary === 1,
    waitUntil: r.wait_until,
    pausedReason: r.paused_reason,
    createdBy: r.created_by,
    createdByName: r.created_by_name,
    createdAt: r.created_at,
    startedAt: r.started_at,
    updatedAt: r.updated_at,
    finishedAt: r.finished_at,
  };
}

function toTarget(r: TargetRow): TargetRecord {
  return {
    rolloutId: r.rollout_id,
    probeId: r.probe_id,
    wave: r.wave,
    position: r.position,
    state: r.state,
    attempt: r.attempt,
    commandId: r.command_id,
    errorCode: r.error_code,
    deploymentId: r.deployment_id,
    skipReason: r.skip_reason,
    acknowledged: r.acknowledged === 1,
    sentAt: r.sent_at,
    updatedAt: r.updated_at,
    finishedAt: r.finished_at,
  };
}

function toApproval(r: ApprovalRow): ApprovalRecord {
  return {
    rolloutId: r.rollout_id,
    kind: r.kind,
    wave: r.wave,
    environment: r.environment,
    packSha256: r.pack_sha256,
    approvedBy: r.approved_by,
    approvedByName: r.approved_by_name,
    approvedAt: r.approved_at,
  };
}

export class SqliteRollouts implements RolloutRepository {
  constructor(private readonly sql: SqliteDb) {}

  async create(r: RolloutRecord, targets: readonly TargetRecord[]): Promise<void> {
    this.sql.tx(() => {
      this.sql.run(
        `INSERT INTO rollouts (id, name, pack_sha256, pack_version, pack_product, environment, target, strategy, windows, download, agent_first, state, wave, wave_count, has_canary,
           wait_until, paused_reason, created_by, created_by_name, created_at, started_at, updated_at, finished_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        r.id,
        r.name,
        r.packSha256,
        r.packVersion,
        r.packProduct,
        r.environment,
        JSON.stringify(r.target),
        JSON.stringify(r.strategy),
        JSON.stringify(r.windows),
        r.download === null ? null : JSON.stringify(r.download),
        r.agentFirst === null ? null : JSON.stringify(r.agentFirst),
        r.state,
        r.wave,
        r.waveCount,
        r.hasCanary ? 1 : 0,
        r.waitUntil,
        r.pausedReason,
        r.createdBy,
        r.createdByName,
        r.createdAt,
        r.startedAt,
        r.updatedAt,
        r.finishedAt,
      );
      // Many rows per INSERT (a rollout to 10,000 probes: 10,000 statement runs cost about twice
      // as much); the rest one by one, so that only two statements are ever prepared.
      const values = (t: TargetRecord): unknown[] => [
        t.rolloutId,
        t.probeId,
        t.wave,
        t.position,
        t.state,
        t.attempt,
        t.commandId,
        t.errorCode,
        t.deploymentId,
        t.skipReason,
        t.acknowledged ? 1 : 0,
        t.sentAt,
        t.updatedAt,
        t.finishedAt,
      ];
      const insert = (rows: number): string =>
        `INSERT INTO rollout_targets (rollout_id, probe_id, wave, position, state, attempt, command_id, error_code, deployment_id, skip_reason, acknowledged, sent_at, updated_at, finished_at)
         VALUES ${new Array(rows).fill(`(${placeholders(14)})`).join(', ')}`;
      let i = 0;
      for (; i + INSERT_ROWS <= targets.length; i += INSERT_ROWS) this.sql.run(insert(INSERT_ROWS), ...targets.slice(i, i + INSERT_ROWS).flatMap(values));
      for (; i < targets.length; i++) this.sql.run(insert(1), ...values(targets[i]!));
    });
  }

  async get(id: string): Promise<RolloutRecord | null> {
    const r = this.sql.get<RolloutRow>('SELECT * FROM rollouts WHERE id = ?', id);
    return r ? toRollout(r) : null;
  }

  async countByState(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const r of this.sql.all<{ state: string; n: number }>('SELECT state, COUNT(*) AS n FROM rollouts GROUP BY state')) out[r.state] = r.n;
    return out;
  }

  async list(q: RolloutQuery): Promise<RolloutRecord[]> {
    const clauses: string[] = [];
    const params: unknown[] = [];
    if (q.states && q.states.length > 0) {
      clauses.push(`state IN (${placeholders(q.states.length)})`);
      params.push(...q.states);
    }
    if (q.packSha256 !== undefined) {
      clauses.push('pack_sha256 = ?');
      params.push(q.packSha256);
    }
    if (q.environment !== undefined) {
      clauses.push('environment = ?');
      params.push(q.environment);
    }
    const where = clauses.length ? `WHERE ${clauses.join(' AND ')}` : '';
    return this.sql.all<RolloutRow>(`SELECT * FROM rollouts ${where} ORDER BY created_at DESC, id DESC LIMIT ?`, ...params, q.limit).map(toRollout);
  }

  async transition(id: string, from: RolloutState, t: TransitionRecord, patch: RolloutPatch): Promise<boolean> {
    return this.sql.tx(() => {
      const sets = ['state = ?', 'updated_at = ?'];
      const params: unknown[] = [t.to, t.at];
      const column: Record<keyof RolloutPatch, string> = {
        wave: 'wave',
        waitUntil: 'wait_until',
        pausedReason: 'paused_reason',
        startedAt: 'started_at',
        finishedAt: 'finished_at',
      };
      for (const [k, v] of Object.entries(patch) as [keyof RolloutPatch, unknown][]) {
        if (v === undefined) continue;
        sets.push(`${column[k]} = ?`);
        params.push(v);
      }
      const changed = this.sql.run(`UPDATE rollouts SET ${sets.join(', ')} WHERE id = ? AND state = ?`, ...params, id, from).changes === 1;
      if (!changed) return false;
      this.sql.run(
        'INSERT INTO rollout_history (rollout_id, at, from_state, event, to_state, wave, actor, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
        id,
        t.at,
        t.from,
        t.event,
        t.to,
        t.wave,
        t.actor,
        t.detail === null ? null : JSON.stringify(t.detail),
      );
      return true;
    });
  }

  async history(id: string, limit: number): Promise<TransitionRecord[]> {
    return this.sql
      .all<HistoryRow>('SELECT at, from_state, event, to_state, wave, actor, detail FROM rollout_history WHERE rollout_id = ? ORDER BY id DESC LIMIT ?', id, limit)
      .reverse()
      .map((r) => ({ at: r.at, from: r.from_state, event: r.event, to: r.to_state, wave: r.wave, actor: r.actor, detail: parseJson<Record<string, unknown>>(r.detail) }));
  }

  async targets(
    id: string,
    q: { states?: readonly TargetState[] | undefined; wave?: number | undefined; maxWave?: number | undefined; limit: number; offset: number },
  ): Promise<TargetRecord[]> {
    const clauses = ['rollout_id = ?'];
    const params: unknown[] = [id];
    if (q.states && q.states.length > 0) {
      clauses.push(`state IN (${placeholders(q.states.length)})`);
      params.push(...q.states);
    }
    if (q.wave !== undefined) {
      clauses.push('wave = ?');
      params.push(q.wave);
    }
    if (q.maxWave !== undefined) {
      clauses.push('wave >= 0 AND wave <= ?');
      params.push(q.maxWave);
    }
    return this.sql
      .all<TargetRow>(`SELECT * FROM rollout_targets WHERE ${clauses.join(' AND ')} ORDER BY wave, position LIMIT ? OFFSET ?`, ...params, q.limit, q.offset)
      .map(toTarget);
  }

  async targetsByCommands(commandIds: readonly string[]): Promise<Map<string, TargetRecord>> {
    const out = new Map<string, TargetRecord>();
    // One statement for any number of ids (a JSON array), instead of one per IN-list length.
    for (const r of this.sql.all<TargetRow>('SELECT * FROM rollout_targets WHERE command_id IN (SELECT value FROM json_each(?))', JSON.stringify(commandIds))) {
      const t = toTarget(r);
      out.set(t.commandId!, t);
    }
    return out;
  }

  async counts(id: string): Promise<TargetCount[]> {
    return this.sql
      .all<{ wave: number; state: TargetState; acknowledged: number; n: number }>(
        'SELECT wave, state, acknowledged, COUNT(*) AS n FROM rollout_targets WHERE rollout_id = ? GROUP BY wave, state, acknowledged ORDER BY wave, state',
        id,
      )
      .map((r) => ({ wave: r.wave, state: r.state, acknowledged: r.acknowledged === 1, count: r.n }));
  }

  async updateTargets(rolloutId: string, changes: readonly TargetChange[], at: string): Promise<TargetChange[]> {
    return this.sql.tx(() => {
      const applied: TargetChange[] = [];
      for (const c of changes) {
        const sets = ['state = ?', 'updated_at = ?'];
        const params: unknown[] = [c.state, at];
        const optional: [keyof TargetChange, string][] = [
          ['commandId', 'command_id'],
          ['attempt', 'attempt'],
          ['errorCode', 'error_code'],
          ['deploymentId', 'deployment_id'],
          ['skipReason', 'skip_reason'],
          ['sentAt', 'sent_at'],
          ['finishedAt', 'finished_at'],
        ];
        for (const [key, column] of optional) {
          const v = c[key];
          if (v === undefined) continue;
          sets.push(`${column} = ?`);
          params.push(v);
        }
        if (c.acknowledged !== undefined) {
          sets.push('acknowledged = ?');
          params.push(c.acknowledged ? 1 : 0);
        }
        const n = this.sql.run(`UPDATE rollout_targets SET ${sets.join(', ')} WHERE rollout_id = ? AND probe_id = ? AND state = ?`, ...params, rolloutId, c.probeId, c.from).changes;
        if (n === 1) applied.push(c);
      }
      return applied;
    });
  }

  async addApproval(a: ApprovalRecord): Promise<void> {
    this.sql.run(
      'INSERT INTO rollout_approvals (rollout_id, kind, wave, environment, pack_sha256, approved_by, approved_by_name, approved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      a.rolloutId,
      a.kind,
      a.wave,
      a.environment,
      a.packSha256,
      a.approvedBy,
      a.approvedByName,
      a.approvedAt,
    );
  }

  async approvals(id: string): Promise<ApprovalRecord[]> {
    return this.sql.all<ApprovalRow>('SELECT * FROM rollout_approvals WHERE rollout_id = ? ORDER BY approved_at, kind', id).map(toApproval);
  }

  async promotionApproval(packSha256: string, environment: Environment): Promise<ApprovalRecord | null> {
    const r = this.sql.get<ApprovalRow>(
      `SELECT * FROM rollout_approvals WHERE kind = 'promotion' AND pack_sha256 = ? AND environment = ? ORDER BY approved_at LIMIT 1`,
      packSha256,
      environment,
    );
    return r ? toApproval(r) : null;
  }

  async completedIn(packSha256: string, environment: Environment): Promise<RolloutRecord | null> {
    const r = this.sql.get<RolloutRow>(
      `SELECT * FROM rollouts WHERE pack_sha256 = ? AND environment = ? AND state = 'completed' ORDER BY finished_at LIMIT 1`,
      packSha256,
      environment,
    );
    return r ? toRollout(r) : null;
  }
}
