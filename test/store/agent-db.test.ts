import Database from 'better-sqlite3';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AGENT_DB_MIGRATIONS, AGENT_DB_VERSION, openAgentDb } from '../../agent/src/store/agent-db.js';
import { Journal } from '../../agent/src/update/journal.js';
import { scratch } from '../helpers/packs.js';

/** agent.db is created and migrated in one place, with a schema version and numbered migrations. */

/** The tables an agent made before agent.db had a schema version (user_version 0). */
const UNVERSIONED = `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE deployments (
  id TEXT PRIMARY KEY, pack_sha256 TEXT NOT NULL, pack_path TEXT NOT NULL,
  kind TEXT, product TEXT, from_version TEXT, to_version TEXT, security_version INTEGER, pack_created_at TEXT,
  state TEXT NOT NULL, resume_count INTEGER NOT NULL DEFAULT 0, active_slot TEXT, target_slot TEXT,
  stage_json TEXT NOT NULL DEFAULT '{}', started_at TEXT NOT NULL, updated_at TEXT NOT NULL, ended_at TEXT,
  error_code TEXT, error_message TEXT, before_json TEXT, after_json TEXT, timings_json TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE transitions (deployment_id TEXT NOT NULL, seq INTEGER NOT NULL, at TEXT NOT NULL, from_state TEXT, event TEXT, to_state TEXT NOT NULL, PRIMARY KEY (deployment_id, seq));
CREATE TABLE releases (deployment_id TEXT PRIMARY KEY, product TEXT NOT NULL, version TEXT NOT NULL, security_version INTEGER NOT NULL, pack_created_at TEXT NOT NULL, slot TEXT, db_version INTEGER, config_version INTEGER, committed_at TEXT NOT NULL);
CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, progress INTEGER NOT NULL, event TEXT NOT NULL);
CREATE TABLE commands (command_id TEXT PRIMARY KEY, body TEXT NOT NULL, status TEXT NOT NULL, received_at TEXT NOT NULL, deployment_id TEXT, finished_at TEXT);
INSERT INTO deployments (id, pack_sha256, pack_path, state, started_at, updated_at, ended_at, error_code)
  VALUES ('old-1', 'ab', '/p.spk', 'rolled-back', '2026-01-01T00:00:00Z', '2026-01-01T00:01:00Z', '2026-01-01T00:01:00Z', 'HEALTH_CHECK_FAILED'),
         ('old-2', 'cd', '/q.spk', 'committed', '2026-01-02T00:00:00Z', '2026-01-02T00:01:00Z', '2026-01-02T00:01:00Z', NULL);
INSERT INTO outbox (id, progress, event) VALUES ('e1', 0, '{}');
`;

const tables = (db: Database.Database): string[] =>
  (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
const columns = (db: Database.Database, table: string): string[] => (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name);

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});
async function dbPath(): Promise<string> {
  const tmp = await scratch('sonde-agent-db-');
  cleanups.push(tmp.cleanup);
  return join(tmp.dir, 'state', 'agent.db');
}

describe('openAgentDb', () => {
  it('numbers its migrations 1, 2, 3 … with no gap, and the schema version is the last one', () => {
    expect(AGENT_DB_MIGRATIONS.map((m) => m.version)).toEqual(AGENT_DB_MIGRATIONS.map((_, i) => i + 1));
    expect(AGENT_DB_VERSION).toBe(AGENT_DB_MIGRATIONS.length);
  });

  it('creates every table of a new agent.db, in WAL mode, at the current schema version', async () => {
    const db = openAgentDb(await dbPath());
    try {
      expect(db.pragma('user_version', { simple: true })).toBe(AGENT_DB_VERSION);
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(tables(db)).toEqual(['commands', 'deployments', 'hook_runs', 'meta', 'outbox', 'outcomes', 'releases', 'transitions']);
      expect(columns(db, 'commands')).toContain('interrupted');
    } finally {
      db.close();
    }
  });

  it('adopts an agent.db made before schema versions, keeping its rows and recording the outcomes of ended deployments', async () => {
    const path = await dbPath();
    const { mkdirSync } = await import('node:fs');
    mkdirSync(join(path, '..'), { recursive: true });
    const old = new Database(path);
    old.exec(UNVERSIONED);
    old.close();

    const journal = new Journal(path);
    try {
      const db = journal.connection;
      expect(db.pragma('user_version', { simple: true })).toBe(AGENT_DB_VERSION);
      expect(columns(db, 'commands')).toContain('interrupted');
      expect((db.prepare('SELECT COUNT(*) AS n FROM outbox').get() as { n: number }).n).toBe(1);
      expect(journal.get('old-1')).toMatchObject({ state: 'rolled-back', outcome: 'rolled-back', errorCode: 'HEALTH_CHECK_FAILED' });
      expect(journal.get('old-2')).toMatchObject({ state: 'committed', outcome: 'committed' });
    } finally {
      journal.close();
    }
  });

  it('runs each migration once: a second open changes nothing', async () => {
    const path = await dbPath();
    const first = openAgentDb(path);
    first.prepare("INSERT INTO outcomes (deployment_id, outcome, error_code, recorded_at) VALUES ('x', 'failed', NULL, 'now')").run();
    first.close();
    const second = openAgentDb(path);
    try {
      expect(second.pragma('user_version', { simple: true })).toBe(AGENT_DB_VERSION);
      expect((second.prepare('SELECT COUNT(*) AS n FROM outcomes').get() as { n: number }).n).toBe(1);
    } finally {
      second.close();
    }
  });

  it('only adds in each migration, so an older agent (an agent update rolled back) still reads and writes what a newer one left', () => {
    interface Col { name: string; type: string; notnull: number; dflt_value: string | null; pk: number }
    const shape = (db: Database.Database): Map<string, Col[] | string> => {
      const out = new Map<string, Col[] | string>();
      for (const t of tables(db)) out.set(`table ${t}`, db.prepare(`PRAGMA table_info(${t})`).all() as Col[]);
      for (const i of db.prepare("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL").all() as { name: string; sql: string }[]) out.set(`index ${i.name}`, i.sql);
      return out;
    };
    const db = new Database(':memory:');
    try {
      for (const m of AGENT_DB_MIGRATIONS) {
        const before = shape(db);
        m.apply(db);
        const after = shape(db);
        for (const [what, was] of before) {
          const now = after.get(what);
          expect(now, `migration ${m.version} (${m.name}) removed ${what}`).toBeDefined();
          if (typeof was === 'string') {
            expect(now, `migration ${m.version} changed ${what}`).toBe(was);
            continue;
          }
          // Every column stays, as it was and where it was; new ones come after and can be left out of an INSERT.
          expect((now as Col[]).slice(0, was.length), `migration ${m.version} changed a column of ${what}`).toEqual(was);
          for (const c of (now as Col[]).slice(was.length)) {
            expect(c.notnull === 0 || c.dflt_value !== null, `migration ${m.version} adds ${what}.${c.name} NOT NULL without a default`).toBe(true);
          }
        }
      }
    } finally {
      db.close();
    }
  });

  it('opens an agent.db a newer agent left behind without lowering its version (an agent update rolled back)', async () => {
    const path = await dbPath();
    const db = openAgentDb(path);
    db.pragma(`user_version = ${AGENT_DB_VERSION + 1}`);
    db.close();
    const again = openAgentDb(path);
    try {
      expect(again.pragma('user_version', { simple: true })).toBe(AGENT_DB_VERSION + 1);
    } finally {
      again.close();
    }
  });
});
