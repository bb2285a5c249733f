import { parseJson, type SqliteDb } from './sqlite-db.js';
import type { AuditEntry, AuditQuery, AuditRepository, SettingsRepository } from './types.js';

interface Row {
  id: number;
  at: string;
  actor: string;
  actor_name: string;
  action: string;
  target: string | null;
  status: number;
  detail: string | null;
}

/** The audit log: append-only, newest first when read. Entries hold names and ids, never secrets. */
export class SqliteAudit implements AuditRepository {
  constructor(private readonly sql: SqliteDb) {}

  async append(e: Omit<AuditEntry, 'id'>): Promise<void> {
    this.sql.run(
      'INSERT INTO audit (at, actor, actor_name, action, target, status, detail) VALUES (?, ?, ?, ?, ?, ?, ?)',
      e.at,
      e.actor,
      e.actorName,
      e.action,
      e.target,
      e.status,
      e.detail === null ? null : JSON.stringify(e.detail),
    );
  }

  async query(q: AuditQuery): Promise<AuditEntry[]> {
    const clauses: string[] = [];
    const params: unknown[] = [];
    if (q.before !== undefined) {
      clauses.push('id < ?');
      params.push(q.before);
    }
    if (q.actor !== undefined) {
      clauses.push('actor = ?');
      params.push(q.actor);
    }
    if (q.action !== undefined) {
      clauses.push('action = ?');
      params.push(q.action);
    }
    if (q.since !== undefined) {
      clauses.push('at >= ?');
      params.push(q.since);
    }
    const where = clauses.length ? `WHERE ${clauses.join(' AND ')}` : '';
    return this.sql.all<Row>(`SELECT * FROM audit ${where} ORDER BY id DESC LIMIT ?`, ...params, q.limit).map((r) => ({
      id: r.id,
      at: r.at,
      actor: r.actor,
      actorName: r.actor_name,
      action: r.action,
      target: r.target,
      status: r.status,
      detail: parseJson<Record<string, unknown>>(r.detail),
    }));
  }
}

/** Server settings that operators change at run time (the webhook URL, …). */
export class SqliteSettings implements SettingsRepository {
  constructor(private readonly sql: SqliteDb) {}

  async get(key: string): Promise<string | null> {
    return this.sql.get<{ value: string }>('SELECT value FROM settings WHERE key = ?', key)?.value ?? null;
  }

  async set(key: string, value: string | null): Promise<void> {
    if (value === null) this.sql.run('DELETE FROM settings WHERE key = ?', key);
    else this.sql.run('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value', key, value);
  }
}
