import { createPrivateKey, type KeyObject } from 'node:crypto';
import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import { keyIdOf, type Manifest } from '../../../pack/src/index.js';
import type { Layout } from './layout.js';

/**
 * The probe's recipient keys (the fleet key, its group key, its own key) live in
 * <root>/etc/keys/*.key, mode 0600, unencrypted (the agent must open them unattended). A key given
 * on the command line is stored there, so later installs need no --key. For an encrypted pack the
 * engine picks the stored key the pack is encrypted for.
 */
export function keysDir(layout: Layout): string {
  return join(layout.etc, 'keys');
}

export async function storeRecipientKey(layout: Layout, key: KeyObject): Promise<void> {
  const dir = keysDir(layout);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const name = `${keyIdOf(key).slice(0, 16)}.key`;
  const pem = key.export({ type: 'pkcs8', format: 'pem' }) as string;
  const existing = await readFile(join(dir, name), 'utf8').catch(() => null);
  if (existing !== pem) await writeFileAtomic(join(dir, name), pem, { mode: 0o600 });
}

export async function storedRecipientKeys(layout: Layout): Promise<KeyObject[]> {
  const dir = keysDir(layout);
  const names = await readdir(dir).catch(() => [] as string[]);
  const keys: KeyObject[] = [];
  for (const n of names.filter((x) => x.endsWith('.key')).sort()) {
    try {
      keys.push(createPrivateKey(await readFile(join(dir, n), 'utf8')));
    } catch {
      // An unreadable key is skipped; the pack then fails with RECIPIENT_NOT_FOUND.
    }
  }
  return keys;
}

/** The key among `candidates` that the pack is encrypted for, else the first (its error names it). */
export function pickRecipientKey(m: Manifest, candidates: readonly KeyObject[]): KeyObject | undefined {
  const ids = new Set(m.encryption?.recipients.map((r) => r.keyId) ?? []);
  return candidates.find((k) => ids.has(keyIdOf(k))) ?? candidates[0];
}
