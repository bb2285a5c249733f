import type { Command } from '../../../base/src/protocol/messages.js';
import { placeholders, type SqliteDb } from './sqlite-db.js';
import { ACKNOWLEDGED_TYPES, type CommandRecord, type CommandRepository, type CommandStatus } from './types.js';

export interface CommandRow {
  command_id: string;
  probe_id: string;
  type: Command['type'];
  body: string;
  rollout_id: string | null;
  pack_sha256: string | null;
  status: CommandStatus;
  error_code: string | null;
  deployment_id: string | null;
  created_at: string;
  sent_at: string | null;
  updated_at: string;
  finished_at: string | null;
}

export function toCommand(r: CommandRow): CommandRecord {
  return {
    commandId: r.command_id,
    probeId: r.probe_id,
    type: r.type,
    body: JSON.parse(r.body) as Command,
    rolloutId: r.rollout_id,
    packSha256: r.pack_sha256,
    status: r.status,
    errorCode: r.error_code,
    deploymentId: r.deployment_id,
    createdAt: r.created_at,
    sentAt: r.sent_at,
    updatedAt: r.updated_at,
    finishedAt: r.finished_at,
  };
}

const IN_CHUNK = 500;
const UNACKNOWLEDGED = `('pending', 'sent')`;
/** What handing a command over makes of its status: only install and rollback commands are acknowledged. */
const ACKNOWLEDGED = `('install', 'rollback', 'diagnose')`;
const SENT_STATUS = `CASE WHEN status NOT IN ('pending', 'sent') THEN status WHEN type IN ${ACKNOWLEDGED} THEN 'sent' ELSE 'delivered' END`;
const SENT_FINISHED = `CASE WHEN type NOT IN ${ACKNOWLEDGED} AND status IN ('pending', 'sent') THEN ? ELSE finished_at END`;

/** Commands the server sent or will send, and what became of each (from the probes' events). */
export class SqliteCommands implements CommandRepository {
  constructor(private readonly sql: SqliteDb) {}

  async insertMany(commands: readonly CommandRecord[]): Promise<void> {
    this.sql.tx(() => {
      for (const c of commands) {
        this.sql.run(
          `INSERT INTO commands (command_id, probe_id, type, body, rollout_id, pack_sha256, status, error_code, deployment_id, created_at, sent_at, updated_at, finished_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          c.commandId,
          c.probeId,
          c.type,
          JSON.stringify(c.body),
          c.rolloutId,
          c.packSha256,
          c.status,
          c.errorCode,
          c.deploymentId,
          c.createdAt,
          c.sentAt,
          c.updatedAt,
          c.finishedAt,
        );
      }
    });
  }

  async get(commandId: string): Promise<CommandRecord | null> {
    const r = this.sql.get<CommandRow>('SELECT * FROM commands WHERE command_id = ?', commandId);
    return r ? toCommand(r) : null;
  }

  async forProbe(probeId: string, limit: number): Promise<CommandRecord[]> {
    return this.sql.all<CommandRow>('SELECT * FROM commands WHERE probe_id = ? ORDER BY created_at DESC, command_id DESC LIMIT ?', probeId, limit).map(toCommand);
  }

  async forRollout(rolloutId: string): Promise<CommandRecord[]> {
    return this.sql.all<CommandRow>('SELECT * FROM commands WHERE rollout_id = ? ORDER BY created_at, command_id', rolloutId).map(toCommand);
  }

  async statuses(commandIds: readonly string[]): Promise<Map<string, Pick<CommandRecord, 'status' | 'errorCode' | 'deploymentId'>>> {
    const out = new Map<string, Pick<CommandRecord, 'status' | 'errorCode' | 'deploymentId'>>();
    // Any number of ids in one statement, read from a JSON array (json_each).
    const rows = this.sql.all<{ command_id: string; status: CommandStatus; error_code: string | null; deployment_id: string | null }>(
      'SELECT command_id, status, error_code, deployment_id FROM commands WHERE command_id IN (SELECT value FROM json_each(?))',
      JSON.stringify(commandIds),
    );
    for (const r of rows) out.set(r.command_id, { status: r.status, errorCode: r.error_code, deploymentId: r.deployment_id });
    return out;
  }

  async unacknowledged(probeIds: readonly string[]): Promise<CommandRecord[]> {
    const out: CommandRecord[] = [];
    for (let i = 0; i < probeIds.length; i += IN_CHUNK) {
      const chunk = probeIds.slice(i, i + IN_CHUNK);
      out.push(
        ...this.sql
          .all<CommandRow>(
            `SELECT * FROM commands WHERE probe_id IN (${placeholders(chunk.length)}) AND status IN ${UNACKNOWLEDGED} ORDER BY created_at, command_id`,
            ...chunk,
          )
          .map(toCommand),
      );
    }
    return out;
  }

  async takeForPoll(probeId: string, now: string, repeatAfter: string): Promise<CommandRecord | null> {
    return this.sql.tx(() => {
      // Never handed out first, then the one handed out longest ago: a lost response is repeated,
      // and a second command is not starved behind a first the probe has not acknowledged yet.
      const r = this.sql.get<CommandRow>(
        `SELECT * FROM commands WHERE probe_id = ? AND status IN ${UNACKNOWLEDGED} AND (polled_at IS NULL OR polled_at < ?)
         ORDER BY CASE WHEN polled_at IS NULL THEN 0 ELSE 1 END, polled_at, created_at, command_id LIMIT 1`,
        probeId,
        repeatAfter,
      );
      if (!r) return null;
      this.sql.run(
        `UPDATE commands SET polled_at = ?, sent_at = COALESCE(sent_at, ?), status = ${SENT_STATUS}, finished_at = ${SENT_FINISHED}, updated_at = ? WHERE command_id = ?`,
        now,
        now,
        now,
        now,
        r.command_id,
      );
      const status = ACKNOWLEDGED_TYPES.has(r.type) ? 'sent' : 'delivered';
      return toCommand({ ...r, status, sent_at: r.sent_at ?? now, updated_at: now, finished_at: status === 'delivered' ? now : r.finished_at });
    });
  }

  async markSent(commandIds: readonly string[], at: string): Promise<void> {
    this.sql.tx(() => {
      for (let i = 0; i < commandIds.length; i += IN_CHUNK) {
        const chunk = commandIds.slice(i, i + IN_CHUNK);
        this.sql.run(
          `UPDATE commands SET status = ${SENT_STATUS}, finished_at = ${SENT_FINISHED}, sent_at = COALESCE(sent_at, ?), updated_at = ?
           WHERE command_id IN (${placeholders(chunk.length)})`,
          at,
          at,
          at,
          ...chunk,
        );
      }
    });
  }

  async finish(commandId: string, status: CommandStatus, at: string): Promise<boolean> {
    return (
      this.sql.run(
        `UPDATE commands SET status = ?, updated_at = ?, finished_at = ? WHERE command_id = ? AND status NOT IN ('succeeded', 'failed', 'refused', 'cancelled', 'delivered')`,
        status,
        at,
        at,
        commandId,
      ).changes === 1
    );
  }

  async stuck(before: string): Promise<CommandRecord[]> {
    return this.sql
      .all<CommandRow>(
        `SELECT * FROM commands WHERE status IN ('accepted', 'running') AND updated_at < ? AND stuck_reported_at IS NULL ORDER BY updated_at LIMIT 1000`,
        before,
      )
      .map(toCommand);
  }

  async markStuckReported(commandId: string, at: string): Promise<void> {
    this.sql.run('UPDATE commands SET stuck_reported_at = ? WHERE command_id = ?', at, commandId);
  }

  async probeMayFetch(probeId: string, sha256: string): Promise<boolean> {
    // The command's pack, or the agent update it sends first (docs/self-update.md).
    return (
      this.sql.get(
        `SELECT 1 AS ok FROM commands WHERE probe_id = ? AND (pack_sha256 = ? OR (type = 'install' AND json_extract(body, '$.agentFirst.pack.sha256') = ?)) LIMIT 1`,
        probeId,
        sha256,
        sha256,
      ) !== undefined
    );
  }

  async countsByStatus(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const r of this.sql.all<{ status: string; n: number }>('SELECT status, COUNT(*) AS n FROM commands GROUP BY status')) out[r.status] = r.n;
    return out;
  }
}
