import type Database from 'better-sqlite3';
import type { Command } from '../../../base/src/protocol/messages.js';

/**
 * Server commands the agent has accepted, in agent.db: an install command survives a restart
 * (a kill -9 mid-download resumes the download from its .part file), and a command the server
 * sends again (after a reconnect, or by polling) is recognised by its id and not run twice.
 */
export type CommandStatus = 'queued' | 'running' | 'done' | 'cancelled' | 'refused';

export interface StoredCommand {
  readonly command: Command;
  readonly status: CommandStatus;
  readonly receivedAt: string;
  readonly deploymentId: string | null;
  /** Attempts of this command that a crash or power cut interrupted. */
  readonly interrupted: number;
}

type Row = { body: string; status: CommandStatus; received_at: string; deployment_id: string | null; interrupted: number };

function stored(r: Row): StoredCommand {
  return { command: JSON.parse(r.body) as Command, status: r.status, receivedAt: r.received_at, deploymentId: r.deployment_id, interrupted: r.interrupted };
}

export class CommandStore {
  /** On agent.db's connection (agent/src/store/agent-db.ts made the table); its owner closes it. */
  constructor(private readonly db: Database.Database) {}

  get(commandId: string): StoredCommand | null {
    const r = this.db.prepare('SELECT * FROM commands WHERE command_id = ?').get(commandId) as Row | undefined;
    return r ? stored(r) : null;
  }

  /** Records a new command; false when the id was seen before. */
  accept(c: Command, status: CommandStatus): boolean {
    const r = this.db
      .prepare('INSERT OR IGNORE INTO commands (command_id, body, status, received_at) VALUES (?, ?, ?, ?)')
      .run(c.commandId, JSON.stringify(c), status, new Date().toISOString());
    return r.changes === 1;
  }

  set(commandId: string, status: CommandStatus, deploymentId?: string): void {
    const done = status === 'done' || status === 'cancelled' || status === 'refused';
    this.db
      .prepare('UPDATE commands SET status = ?, deployment_id = COALESCE(?, deployment_id), finished_at = CASE WHEN ? THEN ? ELSE finished_at END WHERE command_id = ?')
      .run(status, deploymentId ?? null, done ? 1 : 0, new Date().toISOString(), commandId);
  }

  /** Counts an attempt a crash interrupted; returns the count so far. */
  interrupted(commandId: string): number {
    this.db.prepare('UPDATE commands SET interrupted = interrupted + 1 WHERE command_id = ?').run(commandId);
    return this.get(commandId)?.interrupted ?? 0;
  }

  /** Install commands not finished, oldest first (to resume after a restart). */
  pending(): StoredCommand[] {
    return (this.db.prepare(`SELECT * FROM commands WHERE status IN ('queued', 'running') ORDER BY received_at, rowid`).all() as Row[]).map(stored);
  }

  prune(keep = 1000): void {
    this.db
      .prepare(`DELETE FROM commands WHERE finished_at IS NOT NULL AND command_id NOT IN (SELECT command_id FROM commands ORDER BY received_at DESC LIMIT ?)`)
      .run(keep);
  }
}
