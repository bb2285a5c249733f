import type { Stats } from 'node:fs';
import type { PackExtent } from '../../../pack/src/index.js';

/**
 * What the inbox remembers about each file between scans: when it was first seen, and since
 * when its size, mtime and inode have not changed (its signature). Facts that are costly to
 * establish (the pack's extent, its sha256) are kept for the current signature only, so a file
 * is measured and hashed once, and again as soon as it changes (a resumed upload).
 */
export interface Upload {
  readonly firstSeen: number;
  signature: string;
  signatureSince: number;
  extent?: PackExtent;
  sha256?: string;
  /** drop-received or drop-incomplete was reported for this signature. */
  announced?: 'received' | 'incomplete';
  /** The engine found these bytes cut short (PACK_TRUNCATED): incomplete, not installed again. */
  engineTruncated?: boolean;
  /** Reading or moving it failed: not tried again until it changes. */
  stuck?: boolean;
}

export function signatureOf(st: Stats): string {
  return `${st.size}:${st.mtimeMs}:${st.ino}`;
}

export class UploadTracker {
  private readonly uploads = new Map<string, Upload>();

  /** Records a sighting; a changed signature forgets the facts of the old one. */
  observe(name: string, st: Stats, now: number): Upload {
    const signature = signatureOf(st);
    const known = this.uploads.get(name);
    if (known && known.signature === signature) return known;
    const fresh: Upload = { firstSeen: known?.firstSeen ?? now, signature, signatureSince: now };
    this.uploads.set(name, fresh);
    return fresh;
  }

  /** Forgets files that are no longer in the inbox. */
  keepOnly(present: ReadonlySet<string>): void {
    for (const name of [...this.uploads.keys()]) if (!present.has(name)) this.uploads.delete(name);
  }
}
