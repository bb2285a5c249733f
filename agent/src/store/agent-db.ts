import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * agent.db, the probe's own database, opened and migrated here and nowhere else (STYLE.md, "One
 * owner per decision"). Its tables belong to three readers (the install journal, the outbox of
 * reports, the server's commands), but their schema is this file's numbered migrations, as the
 * server's store keeps its own (server/src/store/migrations.ts).
 *
 * The schema version is SQLite's `PRAGMA user_version`, set in the same transaction as the
 * migration that reaches it, so a power cut leaves the old schema or the new one. WAL with
 * synchronous=FULL: a state written here survives a power cut before the action that follows it.
 *
 * Rules for a new migration: append it, never change a released one, and only add (tables,
 * columns with defaults, indexes); test/store/agent-db.test.ts ("only adds") fails a migration
 * that drops, renames or changes a table, column or index. An older agent then still runs on the
 * database a newer one left behind (an agent update rolled back), so a database newer than this
 * build is opened as it is and its version never lowered. Migrations 1 to 4 adopt the files agents made before
 * the version existed: they create only what is missing.
 */
export interface AgentDbMigration {
  readonly version: number;
  readonly name: string;
  apply(db: Database.Database): void;
}

function sql(text: string): (db: Database.Database) => void {
  return (db) => db.exec(text);
}

export const AGENT_DB_MIGRATIONS: readonly AgentDbMigration[] = Object.freeze([
  {
    version: 1,
    name: 'journal: deployments, their transitions, committed releases',
    apply: sql(`
      CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS deployments (
        id TEXT PRIMARY KEY,
        pack_sha256 TEXT NOT NULL,
        pack_path TEXT NOT NULL,
        kind TEXT, product TEXT, from_version TEXT, to_version TEXT,
        security_version INTEGER, pack_created_at TEXT,
        state TEXT NOT NULL,
        resume_count INTEGER NOT NULL DEFAULT 0,
        active_slot TEXT, target_slot TEXT,
        stage_json TEXT NOT NULL DEFAULT '{}',
        started_at TEXT NOT NULL, updated_at TEXT NOT NULL, ended_at TEXT,
        error_code TEXT, error_message TEXT,
        before_json TEXT, after_json TEXT, timings_json TEXT NOT NULL DEFAULT '{}'
      );
      CREATE TABLE IF NOT EXISTS transitions (
        deployment_id TEXT NOT NULL, seq INTEGER NOT NULL, at TEXT NOT NULL,
        from_state TEXT, event TEXT, to_state TEXT NOT NULL,
        PRIMARY KEY (deployment_id, seq)
      );
      CREATE TABLE IF NOT EXISTS releases (
        deployment_id TEXT PRIMARY KEY,
        product TEXT NOT NULL, version TEXT NOT NULL, security_version INTEGER NOT NULL,
        pack_created_at TEXT NOT NULL, slot TEXT, db_version INTEGER, config_version INTEGER,
        committed_at TEXT NOT NULL
      );
    `),
  },
  {
    version: 2,
    name: 'outbox: events for the server, kept until the broker acknowledged them',
    apply: sql(`
      CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        progress INTEGER NOT NULL,
        event TEXT NOT NULL
      );
    `),
  },
  {
    version: 3,
    name: 'commands: what the server asked, so a restart resumes it and a repeat is recognised',
    apply: sql(`
      CREATE TABLE IF NOT EXISTS commands (
        command_id TEXT PRIMARY KEY,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        received_at TEXT NOT NULL,
        deployment_id TEXT,
        finished_at TEXT
      );
    `),
  },
  {
    version: 4,
    name: 'commands.interrupted: attempts a crash or power cut interrupted',
    apply: (db) => {
      const columns = db.prepare('PRAGMA table_info(commands)').all() as { name: string }[];
      if (!columns.some((c) => c.name === 'interrupted')) db.exec('ALTER TABLE commands ADD COLUMN interrupted INTEGER NOT NULL DEFAULT 0');
    },
  },
  {
    version: 5,
    name: 'deployment outcomes: the second, small machine beside the state machine',
    apply: sql(`
      CREATE TABLE IF NOT EXISTS outcomes (
        deployment_id TEXT PRIMARY KEY,
        outcome TEXT NOT NULL,
        error_code TEXT,
        recorded_at TEXT NOT NULL
      );
      -- Deployments that ended before outcomes were recorded: their final state was the outcome.
      INSERT OR IGNORE INTO outcomes (deployment_id, outcome, error_code, recorded_at)
        SELECT id, CASE state WHEN 'committed' THEN 'committed' WHEN 'rolled-back' THEN 'rolled-back' ELSE 'failed' END, error_code, ended_at
        FROM deployments WHERE ended_at IS NOT NULL;
    `),
  },
  {
    version: 6,
    name: 'hook runs: each deployment hook at most once, with its exit and (masked) output',
    apply: sql(`
      CREATE TABLE IF NOT EXISTS hook_runs (
        deployment_id TEXT NOT NULL,
        hook TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        exit_code INTEGER,
        signal TEXT,
        ms INTEGER,
        output TEXT,
        PRIMARY KEY (deployment_id, hook)
      );
    `),
  },
]);

/** The schema version this build writes. */
export const AGENT_DB_VERSION = AGENT_DB_MIGRATIONS[AGENT_DB_MIGRATIONS.length - 1]!.version;

/** Applies, each in its own immediate transaction with the version it reaches, every migration the database lacks. */
export function migrateAgentDb(db: Database.Database): number {
  // Up to date (every open but the first after an upgrade): no write lock taken at all.
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current >= AGENT_DB_VERSION) return current;
  for (const m of AGENT_DB_MIGRATIONS) {
    db.transaction(() => {
      // Read inside the write lock: a second process opening agent.db at the same moment (the
      // daemon and its installer) finds the migration done and skips it.
      if ((db.pragma('user_version', { simple: true }) as number) >= m.version) return;
      m.apply(db);
      db.pragma(`user_version = ${m.version}`);
    }).immediate();
  }
  return db.pragma('user_version', { simple: true }) as number;
}

/** Opens agent.db at `path` (its folder made 0700), in WAL mode with full syncs, migrated. */
export function openAgentDb(path: string): Database.Database {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    migrateAgentDb(db);
  } catch (e) {
    db.close();
    throw e;
  }
  return db;
}
