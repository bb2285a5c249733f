import { chmod, readdir, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { createDataDirs, dataPaths } from '../data-dir.js';
import { ServerError } from '../errors.js';
import { PackStore } from '../packs/pack-store.js';
import { SqliteDb } from '../store/sqlite-db.js';
import { extractArchive } from './archive.js';
import { BACKUP_MANIFEST, type BackupManifest } from './backup.js';

/**
 * `sonde server restore FILE --data DIR`: a new data directory from a backup, checked before it
 * is used: every pack hashes to its name, the database passes SQLite's integrity check. DIR must
 * be new or empty, so a restore never mixes with what was there. Start `sonde server --data DIR`
 * afterwards.
 */
const manifestSchema = z
  .object({
    format: z.literal('sonde-backup-1'),
    createdAt: z.string(),
    packs: z.array(z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/), size: z.number().int().nonnegative() }).strict()),
    keyring: z.array(z.string()),
  })
  .strict();

const ALLOWED = [/^sonde-backup\.json$/, /^sonde\.db$/, /^packs\/[0-9a-f]{64}\.spk$/, /^keyring\/[A-Za-z0-9._-]{1,128}$/, /^ca\/ca\.(crt|key)$/, /^mqtt-server\.secret$/];

export async function restoreDataDir(file: string, dataDir: string): Promise<BackupManifest> {
  const root = resolve(dataDir);
  const existed = await readdir(root).then(
    () => true,
    () => false,
  );
  const existing = await readdir(root).catch(() => [] as string[]);
  if (existing.length > 0) throw new ServerError('DATA_DIR_NOT_EMPTY', `${root} is not empty: restore into a new directory`);
  const paths = dataPaths(root);
  try {
    await createDataDirs(paths);
    await extractArchive(resolve(file), root, (p) => ALLOWED.some((re) => re.test(p)));
    let manifest: BackupManifest;
    try {
      manifest = manifestSchema.parse(JSON.parse(await readFile(join(root, BACKUP_MANIFEST), 'utf8')));
    } catch (e) {
      throw new ServerError('ARCHIVE_INVALID', `${file} is not a Sonde backup (${BACKUP_MANIFEST} missing or malformed)`, { cause: e });
    }
    const store = new PackStore(paths.packs, paths.uploads);
    for (const p of manifest.packs) {
      const path = store.pathOf(p.sha256);
      let digest: string;
      try {
        digest = await store.digest(path);
      } catch (e) {
        throw new ServerError('ARCHIVE_INVALID', `the backup lacks pack ${p.sha256}`, { cause: e });
      }
      if (digest !== p.sha256) throw new ServerError('ARCHIVE_INVALID', `pack ${p.sha256} in the backup is damaged (its bytes hash to ${digest})`);
    }
    const db = new SqliteDb(paths.db);
    try {
      const check = db.db.pragma('integrity_check', { simple: true });
      if (check !== 'ok') throw new ServerError('ARCHIVE_INVALID', `the database in the backup is damaged: ${String(check)}`);
      db.db.pragma('journal_mode = WAL');
    } catch (e) {
      if (e instanceof ServerError) throw e;
      throw new ServerError('ARCHIVE_INVALID', 'the database in the backup does not open', { cause: e });
    } finally {
      db.close();
    }
    await chmod(paths.caKey, 0o600).catch(() => undefined);
    await chmod(paths.mqttSecret, 0o600).catch(() => undefined);
    await rm(join(root, BACKUP_MANIFEST), { force: true });
    return manifest;
  } catch (e) {
    // Nothing half-restored is left to be started by mistake.
    if (existed) for (const name of await readdir(root).catch(() => [] as string[])) await rm(join(root, name), { recursive: true, force: true });
    else await rm(root, { recursive: true, force: true });
    throw e;
  }
}
