import type { SqliteDb } from './sqlite-db.js';
import type { Role, SessionRecord, SessionRepository, TokenKind } from './types.js';

interface Row {
  hash: string;
  csrf: string;
  created_at: string;
  expires_at: string;
  id: string;
  kind: TokenKind;
  name: string;
  role: Role | null;
  probe_id: string | null;
  t_created_at: string;
}

/** Dashboard sessions (issue 22): by the SHA-256 of the cookie's secret, joined to their staff token. */
export class SqliteSessions implements SessionRepository {
  constructor(private readonly sql: SqliteDb) {}

  async create(s: { hash: string; tokenId: string; csrf: string; createdAt: string; expiresAt: string }): Promise<void> {
    this.sql.run(
      'INSERT INTO sessions (hash, token_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)',
      s.hash,
      s.tokenId,
      s.csrf,
      s.createdAt,
      s.expiresAt,
    );
  }

  async find(hash: string, now: string): Promise<SessionRecord | null> {
    const r = this.sql.get<Row>(
      `SELECT s.hash, s.csrf, s.created_at, s.expires_at, t.id, t.kind, t.name, t.role, t.probe_id, t.created_at AS t_created_at
       FROM sessions s JOIN tokens t ON t.id = s.token_id
       WHERE s.hash = ? AND s.expires_at > ? AND t.revoked_at IS NULL AND t.kind = 'staff'`,
      hash,
      now,
    );
    if (!r) return null;
    return {
      hash: r.hash,
      csrf: r.csrf,
      createdAt: r.created_at,
      expiresAt: r.expires_at,
      token: { id: r.id, kind: r.kind, name: r.name, role: r.role, probeId: r.probe_id, createdAt: r.t_created_at, revokedAt: null },
    };
  }

  async delete(hash: string): Promise<boolean> {
    return this.sql.run('DELETE FROM sessions WHERE hash = ?', hash).changes === 1;
  }

  async prune(now: string): Promise<number> {
    return this.sql.run(
      `DELETE FROM sessions WHERE expires_at <= ? OR token_id IN (SELECT id FROM tokens WHERE revoked_at IS NOT NULL)`,
      now,
    ).changes;
  }
}
