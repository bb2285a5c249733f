import Database from 'better-sqlite3';
import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { applyMigrations, dbVersion, loadMigrations, snapshotDatabase, type Migration } from '../../agent/src/update/migrations.js';
import { UpdateError } from '../../agent/src/update/errors.js';
import { scratch } from '../helpers/packs.js';

/**
 * Database migrations on real SQLite files (agent/src/update/migrations.ts): each applied whole or
 * not at all, on a copy taken with SQLite's backup API while the app may hold the live file.
 * units.test.ts covers the plan; this covers the files, the transactions and the copies.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let n = 0;
beforeAll(async () => {
  tmp = await scratch('sonde-migrations-');
});
afterAll(() => tmp.cleanup());

async function folder(files: Record<string, string>): Promise<string> {
  const dir = join(tmp.dir, `m-${++n}`);
  await mkdir(dir, { recursive: true });
  for (const [name, sql] of Object.entries(files)) await writeFile(join(dir, name), sql);
  return dir;
}

function db(path: string, sql = 'CREATE TABLE t (x INTEGER)', version = 1): string {
  const d = new Database(path);
  d.exec(sql);
  d.pragma(`user_version = ${version}`);
  d.close();
  return path;
}

const m = (version: number, name: string, up: string): Migration => ({ version, name, up, down: null });

describe('loading migration files', () => {
  it('loads NNNN-name pairs with names of several words, and reads a name that merely contains a number as no migration', async () => {
    const dir = await folder({ '0002-add-severity_v2.up.sql': 'SELECT 1;', '0002-add-severity_v2.down.sql': 'SELECT 2;', '0003-x.up.sql': 'SELECT 3;' });
    expect(await loadMigrations(dir)).toEqual([
      { version: 2, name: 'add-severity_v2', up: 'SELECT 1;', down: 'SELECT 2;' },
      { version: 3, name: 'x', up: 'SELECT 3;', down: null },
    ]);
    for (const bad of ['v0002-a.up.sql', '0002-a.up.sql.bak', '002-a.up.sql', '0002-A.up.sql', '0002-a.sql', '0002-.up.sql']) {
      const e = await loadMigrations(await folder({ [bad]: 'SELECT 1;' })).then(
        () => null,
        (x: unknown) => x as UpdateError,
      );
      expect(e?.code, bad).toBe('MIGRATION_FAILED');
      expect(e?.message).toBe(`${bad} is not named NNNN-name.up.sql or NNNN-name.down.sql`);
    }
  });

  it('refuses two names for one number, and a number with only a down file, naming the number', async () => {
    await expect(loadMigrations(await folder({ '0002-a.up.sql': '', '0002-b.up.sql': '' }))).rejects.toMatchObject({ code: 'MIGRATION_FAILED', message: 'two migrations are numbered 0002' });
    await expect(loadMigrations(await folder({ '0004-a.down.sql': '' }))).rejects.toMatchObject({ code: 'MIGRATION_FAILED', message: 'migration 4 has no .up.sql' });
  });

  it('treats a missing folder as no migration, but any other read error as an error', async () => {
    expect(await loadMigrations(join(tmp.dir, 'none'))).toEqual([]);
    const file = join(tmp.dir, 'a-file');
    await writeFile(file, 'x');
    await expect(loadMigrations(file)).rejects.toMatchObject({ code: 'ENOTDIR' });
  });
});

describe('applying migrations', () => {
  it('applies each in order, stamps user_version, and leaves the copy in rollback-journal mode', () => {
    const path = join(tmp.dir, 'apply.db');
    const d = new Database(path);
    d.pragma('journal_mode = WAL');
    d.exec('CREATE TABLE t (x INTEGER)');
    d.pragma('user_version = 1');
    d.close();
    expect(applyMigrations(path, [m(2, 'add-y', 'ALTER TABLE t ADD COLUMN y TEXT'), m(3, 'index', 'CREATE INDEX t_y ON t (y)')])).toBe(3);
    expect(dbVersion(path)).toBe(3);
    const after = new Database(path, { readonly: true });
    expect(after.pragma('journal_mode', { simple: true })).toBe('delete');
    expect(after.prepare("SELECT name FROM sqlite_master WHERE name = 't_y'").get()).toEqual({ name: 't_y' });
    after.close();
  });

  it('applies a failing migration not at all: its earlier statements are undone, the ones before it stay, the error names it', () => {
    const path = db(join(tmp.dir, 'fail.db'));
    const e = (() => {
      try {
        applyMigrations(path, [m(2, 'good', 'CREATE TABLE kept (a)'), m(3, 'half-done', 'CREATE TABLE undone (a); INSERT INTO no_such_table VALUES (1);')]);
      } catch (x) {
        return x as UpdateError;
      }
      return null;
    })();
    expect(e).toBeInstanceOf(UpdateError);
    expect(e!.code).toBe('MIGRATION_FAILED');
    expect(e!.message).toBe('migration 0003-half-done failed: no such table: no_such_table');
    expect((e!.cause as Error).message).toBe('no such table: no_such_table');
    expect(dbVersion(path)).toBe(2);
    const after = new Database(path, { readonly: true });
    const tables = after.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all();
    after.close();
    expect(tables).toEqual([{ name: 'kept' }, { name: 't' }]);
  });

  it('with an empty plan, changes nothing and returns the version the file has', () => {
    const path = db(join(tmp.dir, 'empty-plan.db'), 'CREATE TABLE t (x)', 7);
    expect(applyMigrations(path, [])).toBe(7);
  });
});

describe('reading and copying a database', () => {
  it('leaves no database file open behind it (a daemon that runs for months would run out)', async () => {
    const openFiles = async (): Promise<number> => (await readdir('/proc/self/fd')).length;
    const path = db(join(tmp.dir, 'fds.db'), 'CREATE TABLE t (x)', 2);
    const before = await openFiles();
    for (let i = 0; i < 3; i++) {
      dbVersion(path);
      applyMigrations(path, [m(3 + i, `step${i}`, `CREATE TABLE s${i} (x)`)]);
      await snapshotDatabase(path, join(tmp.dir, `fds-copy-${i}.db`));
    }
    expect(await openFiles()).toBe(before);
  });

  it('reads user_version without creating a missing file', () => {
    expect(dbVersion(db(join(tmp.dir, 'v5.db'), 'CREATE TABLE t (x)', 5))).toBe(5);
    const missing = join(tmp.dir, 'missing.db');
    expect(() => dbVersion(missing)).toThrow();
    expect(existsSync(missing)).toBe(false);
  });

  it('copies a live WAL database with what its writer committed, while the writer holds it open', async () => {
    const live = join(tmp.dir, 'live.db');
    const writer = new Database(live);
    writer.pragma('journal_mode = WAL');
    writer.pragma('wal_autocheckpoint = 0');
    writer.exec('CREATE TABLE m (v INTEGER)');
    const insert = writer.prepare('INSERT INTO m VALUES (?)');
    writer.transaction(() => {
      for (let i = 0; i < 100; i++) insert.run(i);
    })();
    writer.pragma('user_version = 4');
    try {
      const copy = join(tmp.dir, 'copy.db');
      await snapshotDatabase(live, copy);
      const c = new Database(copy, { readonly: true });
      expect(c.prepare('SELECT COUNT(*) AS n FROM m').get()).toEqual({ n: 100 });
      expect(c.pragma('user_version', { simple: true })).toBe(4);
      c.close();
    } finally {
      writer.close();
    }
    const missing = join(tmp.dir, 'no-live.db');
    await expect(snapshotDatabase(missing, join(tmp.dir, 'no-copy.db'))).rejects.toThrow();
    expect(existsSync(missing)).toBe(false);
  });
});
