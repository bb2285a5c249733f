import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { RECEIPT_SUFFIX } from './receipt.js';

/**
 * Retention of processed/ and rejected/ (DESIGN.md, "Retention": keep the last N receipts, clean
 * the rest, so the free-disk pre-check never blocks updates after months in the field). Each
 * folder keeps at most `maxCount` packs with their receipts, none older than `maxAgeMs`; the
 * oldest go first.
 *
 * A pack and its receipt are one entry, dated by the newer of the two. The receipt is removed
 * before the pack: a crash in between leaves a pack without receipt, which ages out on its own,
 * never a receipt without its pack, which would read as a move still to be completed.
 */
export interface RetentionPolicy {
  readonly maxCount: number;
  readonly maxAgeMs: number;
}

export const DEFAULT_RETENTION: RetentionPolicy = Object.freeze({ maxCount: 20, maxAgeMs: 30 * 24 * 3600 * 1000 });

interface Entry {
  readonly key: string;
  readonly files: string[];
  time: number;
}

/** Removes what the policy does not keep; returns the pack names removed (receipt-only entries too). */
export async function pruneFolder(dir: string, policy: RetentionPolicy, now = Date.now()): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const entries = new Map<string, Entry>();
  for (const name of names) {
    if (name.startsWith('.')) continue; // temp files of atomic writes in progress
    const key = name.endsWith(RECEIPT_SUFFIX) ? name.slice(0, -RECEIPT_SUFFIX.length) : name;
    let time: number;
    try {
      time = (await lstat(join(dir, name))).mtimeMs;
    } catch {
      continue;
    }
    const e = entries.get(key) ?? { key, files: [], time: 0 };
    e.files.push(name);
    e.time = Math.max(e.time, time);
    entries.set(key, e);
  }
  const newestFirst = [...entries.values()].sort((a, b) => b.time - a.time || b.key.localeCompare(a.key));
  const removed: string[] = [];
  newestFirst.forEach((e, i) => {
    if (i < policy.maxCount && now - e.time <= policy.maxAgeMs) return;
    removed.push(e.key);
  });
  for (const key of removed) {
    const e = entries.get(key)!;
    // Receipt first (see above).
    for (const f of [...e.files].sort((a, b) => Number(b.endsWith(RECEIPT_SUFFIX)) - Number(a.endsWith(RECEIPT_SUFFIX)))) {
      await rm(join(dir, f), { force: true, recursive: true });
    }
  }
  return removed;
}
