import Database from 'better-sqlite3';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { UpdateError } from './errors.js';

/**
 * Database migrations (DESIGN.md, "The agent"): numbered `NNNN-name.up.sql` / `.down.sql` files.
 * Each runs in its own transaction that also sets PRAGMA user_version = NNNN, so a migration is
 * applied whole or not at all. They only ever run on a copy of the live database.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly up: string;
  readonly down: string | null;
}

const FILE = /^(\d{4})-([a-z0-9][a-z0-9._-]*)\.(up|down)\.sql$/;

export async function loadMigrations(dir: string): Promise<Migration[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const byVersion = new Map<number, { name: string; up?: string; down?: string }>();
  for (const n of names.sort()) {
    const m = FILE.exec(n);
    if (!m) throw new UpdateError('MIGRATION_FAILED', `${n} is not named NNNN-name.up.sql or NNNN-name.down.sql`);
    const version = Number(m[1]);
    const entry = byVersion.get(version) ?? { name: m[2]! };
    if (entry.name !== m[2]) throw new UpdateError('MIGRATION_FAILED', `two migrations are numbered ${m[1]}`);
    entry[m[3] as 'up' | 'down'] = await readFile(join(dir, n), 'utf8');
    byVersion.set(version, entry);
  }
  // The names were read sorted, and NNNN is zero-padded: the map holds the versions in order.
  const out: Migration[] = [];
  for (const [version, e] of byVersion.entries()) {
    if (e.up === undefined) throw new UpdateError('MIGRATION_FAILED', `migration ${version} has no .up.sql`);
    out.push({ version, name: e.name, up: e.up, down: e.down ?? null });
  }
  return out;
}

/** The migrations that take a database at `from` to the newest one available, in order. Pure. */
export function planMigrations(all: readonly Migration[], from: number): Migration[] {
  return all.filter((m) => m.version > from);
}

export function dbVersion(path: string): number {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.pragma('user_version', { simple: true }) as number;
  } finally {
    db.close();
  }
}

/** Applies `plan` to the database file at `path` (a copy); returns the resulting user_version. */
export function applyMigrations(path: string, plan: readonly Migration[]): number {
  const db = new Database(path);
  try {
    db.pragma('journal_mode = DELETE');
    for (const m of plan) {
      try {
        db.transaction(() => {
          db.exec(m.up);
          db.pragma(`user_version = ${m.version}`);
        })();
      } catch (e) {
        throw new UpdateError('MIGRATION_FAILED', `migration ${String(m.version).padStart(4, '0')}-${m.name} failed: ${(e as Error).message}`, { cause: e });
      }
    }
    return db.pragma('user_version', { simple: true }) as number;
  } finally {
    db.close();
  }
}

/**
 * A consistent copy of the live database through SQLite's online backup API (the app may still
 * hold it open), written as a single file without WAL.
 */
export async function snapshotDatabase(live: string, copy: string): Promise<void> {
  const db = new Database(live, { readonly: true, fileMustExist: true });
  try {
    await db.backup(copy);
  } finally {
    db.close();
  }
}
