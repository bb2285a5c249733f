import Database from 'better-sqlite3';
import { MIGRATIONS, type Migration } from './migrations.js';

/**
 * The SQLite connection every sqlite-* repository shares: WAL (readers never block the ingest
 * writer, and `sonde server backup` can copy while the server runs), synchronous=FULL, a busy
 * timeout so the CLI's local commands can write beside a running server, and a cache of prepared
 * statements.
 */
export class SqliteDb {
  readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();

  constructor(path: string, options: { readonly?: boolean } = {}) {
    this.db = new Database(path, { readonly: options.readonly === true, fileMustExist: options.readonly === true });
    this.db.pragma('busy_timeout = 5000');
    if (!options.readonly) {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
    }
  }

  stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  get<T>(sql: string, ...params: unknown[]): T | undefined {
    return this.stmt(sql).get(...params) as T | undefined;
  }

  all<T>(sql: string, ...params: unknown[]): T[] {
    return this.stmt(sql).all(...params) as T[];
  }

  run(sql: string, ...params: unknown[]): Database.RunResult {
    return this.stmt(sql).run(...params);
  }

  /** Runs `fn` in one transaction (BEGIN IMMEDIATE: the write lock is taken up front). */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /** Applies the migrations not yet recorded, each in its own transaction. */
  migrate(migrations: readonly Migration[] = MIGRATIONS): string[] {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (id TEXT PRIMARY KEY, applied_at TEXT NOT NULL)');
    const done = new Set(this.all<{ id: string }>('SELECT id FROM schema_migrations').map((r) => r.id));
    const applied: string[] = [];
    for (const m of migrations) {
      if (done.has(m.id)) continue;
      this.tx(() => {
        for (const s of m.statements) this.db.exec(s);
        this.run('INSERT INTO schema_migrations (id, applied_at) VALUES (?, ?)', m.id, new Date().toISOString());
      });
      applied.push(m.id);
    }
    return applied;
  }

  close(): void {
    this.statements.clear();
    if (this.db.open) this.db.close();
  }
}

/** `?, ?, ?` for an IN list. */
export function placeholders(n: number): string {
  return new Array(n).fill('?').join(', ');
}

export function parseJson<T>(text: string | null): T | null {
  return text === null ? null : (JSON.parse(text) as T);
}
