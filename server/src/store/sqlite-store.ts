import { SqliteAudit, SqliteSettings } from './sqlite-audit.js';
import { SqliteCommands } from './sqlite-commands.js';
import { SqliteDb } from './sqlite-db.js';
import { applyIngest } from './sqlite-ingest.js';
import { SqlitePacks } from './sqlite-packs.js';
import { SqliteProbes } from './sqlite-probes.js';
import { SqliteTokens } from './sqlite-tokens.js';
import { SqliteSessions } from './sqlite-sessions.js';
import { SqliteRollouts } from '../rollouts/sqlite-rollouts.js';
import type { IngestBatch, IngestResult, Store } from './types.js';
import { pruneStore, type PruneResult, type RetentionPolicy } from './retention.js';

/**
 * The better-sqlite3 Store: one database file (`<data>/sonde.db`, WAL), its migrations applied
 * on open. Another module's repository is added here, next to the others, over the same SqliteDb.
 */
export class SqliteStore implements Store {
  readonly tokens: SqliteTokens;
  readonly probes: SqliteProbes;
  readonly packs: SqlitePacks;
  readonly commands: SqliteCommands;
  readonly audit: SqliteAudit;
  readonly settings: SqliteSettings;
  readonly sessions: SqliteSessions;
  readonly rollouts: SqliteRollouts;

  private constructor(readonly sql: SqliteDb) {
    this.tokens = new SqliteTokens(sql);
    this.probes = new SqliteProbes(sql, this.tokens);
    this.packs = new SqlitePacks(sql);
    this.commands = new SqliteCommands(sql);
    this.audit = new SqliteAudit(sql);
    this.settings = new SqliteSettings(sql);
    this.sessions = new SqliteSessions(sql);
    this.rollouts = new SqliteRollouts(sql);
  }

  static open(path: string): SqliteStore {
    const sql = new SqliteDb(path);
    try {
      sql.migrate();
    } catch (e) {
      sql.close();
      throw e;
    }
    return new SqliteStore(sql);
  }

  async prune(policy: RetentionPolicy, now: Date): Promise<PruneResult> {
    return pruneStore(this.sql, policy, now);
  }

  async ingest(batch: IngestBatch): Promise<IngestResult> {
    return applyIngest(this.sql, batch);
  }

  async backup(destination: string): Promise<void> {
    // The online backup API copies page by page and restarts if a writer changes a page it has
    // copied, so the result is one consistent snapshot even while the ingest writes.
    await this.sql.db.backup(destination);
  }

  async close(): Promise<void> {
    this.sql.close();
  }
}
