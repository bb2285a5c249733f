import type { SqliteDb } from './sqlite-db.js';
import type { NewToken, Role, TokenKind, TokenRecord, TokenRepository } from './types.js';

interface Row {
  id: string;
  kind: TokenKind;
  name: string;
  role: Role | null;
  probe_id: string | null;
  hash: string;
  created_at: string;
  revoked_at: string | null;
}

const COLUMNS = 'id, kind, name, role, probe_id, hash, created_at, revoked_at';

function toRecord(r: Row): TokenRecord {
  return { id: r.id, kind: r.kind, name: r.name, role: r.role, probeId: r.probe_id, createdAt: r.created_at, revokedAt: r.revoked_at };
}

/** Staff and probe tokens, by the SHA-256 of their secret; the secret itself is never stored. */
export class SqliteTokens implements TokenRepository {
  constructor(private readonly sql: SqliteDb) {}

  async create(t: NewToken): Promise<TokenRecord> {
    const at = new Date().toISOString();
    this.sql.run('INSERT INTO tokens (id, kind, name, role, probe_id, hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)', t.id, t.kind, t.name, t.role, t.probeId, t.hash, at);
    return { id: t.id, kind: t.kind, name: t.name, role: t.role, probeId: t.probeId, createdAt: at, revokedAt: null };
  }

  /** Also used inside the enrollment transaction, hence synchronous. */
  createSync(t: NewToken, at: string): void {
    this.sql.run('INSERT INTO tokens (id, kind, name, role, probe_id, hash, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)', t.id, t.kind, t.name, t.role, t.probeId, t.hash, at);
  }

  async findActiveByHash(hash: string): Promise<{ token: TokenRecord; hash: string } | null> {
    const r = this.sql.get<Row>(`SELECT ${COLUMNS} FROM tokens WHERE hash = ? AND revoked_at IS NULL`, hash);
    return r ? { token: toRecord(r), hash: r.hash } : null;
  }

  async list(kind?: TokenKind): Promise<TokenRecord[]> {
    const rows =
      kind === undefined
        ? this.sql.all<Row>(`SELECT ${COLUMNS} FROM tokens ORDER BY created_at, id`)
        : this.sql.all<Row>(`SELECT ${COLUMNS} FROM tokens WHERE kind = ? ORDER BY created_at, id`, kind);
    return rows.map(toRecord);
  }

  async get(id: string): Promise<TokenRecord | null> {
    const r = this.sql.get<Row>(`SELECT ${COLUMNS} FROM tokens WHERE id = ?`, id);
    return r ? toRecord(r) : null;
  }

  async revoke(id: string): Promise<boolean> {
    return this.sql.run('UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', new Date().toISOString(), id).changes === 1;
  }

  revokeProbeSync(probeId: string, at: string): void {
    this.sql.run(`UPDATE tokens SET revoked_at = ? WHERE kind = 'probe' AND probe_id = ? AND revoked_at IS NULL`, at, probeId);
  }
}
