import type { Manifest } from '../../../pack/src/index.js';
import type { SqliteDb } from './sqlite-db.js';
import type { PackRecord, PackRepository, PackSummary } from './types.js';

interface Row {
  sha256: string;
  size: number;
  summary: string;
  manifest: string;
  release_notes: string | null;
  uploaded_at: string;
  uploaded_by: string;
}

function toRecord(r: Row): PackRecord {
  return {
    sha256: r.sha256,
    size: r.size,
    summary: JSON.parse(r.summary) as PackSummary,
    manifest: JSON.parse(r.manifest) as Manifest,
    releaseNotes: r.release_notes,
    uploadedAt: r.uploaded_at,
    uploadedBy: r.uploaded_by,
  };
}

/** Statuses of a command that still needs its pack (the probe may yet download it). */
const LIVE = `('pending', 'sent', 'accepted', 'running')`;

/** Pack metadata; the bytes live in the content-addressed pack store (packs/pack-store.ts). */
export class SqlitePacks implements PackRepository {
  constructor(private readonly sql: SqliteDb) {}

  async insert(p: PackRecord): Promise<boolean> {
    const r = this.sql.run(
      `INSERT INTO packs (sha256, size, kind, product, version, summary, manifest, release_notes, uploaded_at, uploaded_by)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sha256) DO NOTHING`,
      p.sha256,
      p.size,
      p.summary.kind,
      p.summary.product,
      p.summary.version,
      JSON.stringify(p.summary),
      JSON.stringify(p.manifest),
      p.releaseNotes,
      p.uploadedAt,
      p.uploadedBy,
    );
    return r.changes === 1;
  }

  async get(sha256: string): Promise<PackRecord | null> {
    const r = this.sql.get<Row>('SELECT * FROM packs WHERE sha256 = ?', sha256);
    return r ? toRecord(r) : null;
  }

  async list(): Promise<PackRecord[]> {
    return this.sql.all<Row>('SELECT * FROM packs ORDER BY uploaded_at DESC, sha256').map(toRecord);
  }

  async delete(sha256: string): Promise<boolean> {
    return this.sql.tx(() => {
      this.sql.run('DELETE FROM pack_pins WHERE sha256 = ?', sha256);
      return this.sql.run('DELETE FROM packs WHERE sha256 = ?', sha256).changes === 1;
    });
  }

  async holders(sha256: string): Promise<string[]> {
    const pins = this.sql.all<{ holder: string }>('SELECT holder FROM pack_pins WHERE sha256 = ? ORDER BY holder', sha256).map((r) => r.holder);
    const commands = this.sql
      .all<{ command_id: string }>(`SELECT command_id FROM commands WHERE pack_sha256 = ? AND status IN ${LIVE} ORDER BY command_id LIMIT 10`, sha256)
      .map((r) => `command:${r.command_id}`);
    return [...pins, ...commands];
  }

  async unreferenced(uploadedBefore: string): Promise<string[]> {
    return this.sql
      .all<{ sha256: string }>(
        `SELECT p.sha256 FROM packs p
         WHERE p.uploaded_at < ?
           AND NOT EXISTS (SELECT 1 FROM pack_pins x WHERE x.sha256 = p.sha256)
           AND NOT EXISTS (SELECT 1 FROM commands c WHERE c.pack_sha256 = p.sha256 AND c.status IN ${LIVE})
         ORDER BY p.sha256`,
        uploadedBefore,
      )
      .map((r) => r.sha256);
  }

  async pin(sha256: string, holder: string): Promise<void> {
    this.sql.run('INSERT INTO pack_pins (sha256, holder, pinned_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING', sha256, holder, new Date().toISOString());
  }

  async unpin(sha256: string, holder: string): Promise<void> {
    this.sql.run('DELETE FROM pack_pins WHERE sha256 = ? AND holder = ?', sha256, holder);
  }
}
