import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import { requireDataDir } from '../data-dir.js';
import { SqliteDb } from '../store/sqlite-db.js';
import { copyFolder, linkOrCopy, writeArchive } from './archive.js';

/**
 * `sonde server backup FILE --data DIR`: a consistent copy of a server, taken while it runs.
 *  1. The database through SQLite's online backup API: one snapshot, whatever the ingest writes.
 *  2. The packs that snapshot lists, hard-linked (packs never change once stored). A pack garbage
 *     collection deleted in between is dropped from the snapshot too: GC deletes the row before
 *     the file, so the snapshot then matches a moment just after that GC.
 *  3. The keyring, the CA and the MQTT secret, then one tar file (0600: it holds the CA key).
 */
export const BACKUP_MANIFEST = 'sonde-backup.json';

export interface BackupManifest {
  readonly format: 'sonde-backup-1';
  readonly createdAt: string;
  readonly packs: readonly { readonly sha256: string; readonly size: number }[];
  readonly keyring: readonly string[];
}

export async function backupDataDir(dataDir: string, file: string): Promise<BackupManifest> {
  const paths = requireDataDir(dataDir);
  const staging = join(paths.uploads, `backup-${randomBytes(6).toString('hex')}`);
  await mkdir(join(staging, 'packs'), { recursive: true, mode: 0o700 });
  try {
    const live = new SqliteDb(paths.db);
    try {
      await live.db.backup(join(staging, 'sonde.db'));
    } finally {
      live.close();
    }
    const snapshot = new SqliteDb(join(staging, 'sonde.db'));
    const packs: { sha256: string; size: number }[] = [];
    try {
      for (const p of snapshot.all<{ sha256: string; size: number }>('SELECT sha256, size FROM packs ORDER BY sha256')) {
        try {
          await linkOrCopy(join(paths.packs, `${p.sha256}.spk`), join(staging, 'packs', `${p.sha256}.spk`));
          packs.push(p);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
          snapshot.run('DELETE FROM packs WHERE sha256 = ?', p.sha256);
          snapshot.run('DELETE FROM pack_pins WHERE sha256 = ?', p.sha256);
        }
      }
      // One file, no WAL beside it.
      snapshot.db.pragma('journal_mode = DELETE');
    } finally {
      snapshot.close();
    }
    const keyring = await copyFolder(paths.keyring, join(staging, 'keyring'));
    await mkdir(join(staging, 'ca'), { mode: 0o700 });
    await copyFile(paths.caCert, join(staging, 'ca', 'ca.crt'));
    await copyFile(paths.caKey, join(staging, 'ca', 'ca.key'));
    await copyFile(paths.mqttSecret, join(staging, 'mqtt-server.secret')).catch(() => undefined);
    const manifest: BackupManifest = { format: 'sonde-backup-1', createdAt: new Date().toISOString(), packs, keyring };
    await writeFileAtomic(join(staging, BACKUP_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
    const entries = [BACKUP_MANIFEST, 'sonde.db', 'ca', 'keyring', 'packs'];
    if (existsSync(join(staging, 'mqtt-server.secret'))) entries.push('mqtt-server.secret');
    await writeArchive(staging, resolve(file), entries);
    return manifest;
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
