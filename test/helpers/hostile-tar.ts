/**
 * Builds tar streams by hand, byte for byte, so tests can make the hostile archives that no
 * well-behaved tar writer would: absolute paths, `..`, devices, links that escape, duplicates.
 */
export interface RawEntry {
  path: string;
  type?: '0' | '1' | '2' | '3' | '4' | '5' | '6' | 'x' | 'g' | 'L' | 'S';
  data?: Buffer | string;
  linkpath?: string;
  mode?: number;
  /** Declare a different size in the header than the data carries. */
  declaredSize?: number;
}

function octal(n: number, len: number): string {
  return n.toString(8).padStart(len - 1, '0') + '\0';
}

export function tarHeader(e: RawEntry, size: number): Buffer {
  const b = Buffer.alloc(512);
  b.write(e.path, 0, 100, 'utf8');
  b.write(octal(e.mode ?? (e.type === '5' ? 0o755 : 0o644), 8), 100, 8, 'ascii');
  b.write(octal(0, 8), 108, 8, 'ascii');
  b.write(octal(0, 8), 116, 8, 'ascii');
  b.write(octal(size, 12), 124, 12, 'ascii');
  b.write(octal(0, 12), 136, 12, 'ascii');
  b.write(e.type ?? '0', 156, 1, 'ascii');
  if (e.linkpath) b.write(e.linkpath, 157, 100, 'utf8');
  b.write('ustar\0', 257, 6, 'ascii');
  b.write('00', 263, 2, 'ascii');
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : b[i]!;
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return b;
}

export function rawTar(entries: RawEntry[], { end = true }: { end?: boolean } = {}): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const data = e.data === undefined ? Buffer.alloc(0) : Buffer.isBuffer(e.data) ? e.data : Buffer.from(e.data);
    parts.push(tarHeader(e, e.declaredSize ?? data.length));
    parts.push(data);
    const pad = (512 - (data.length % 512)) % 512;
    parts.push(Buffer.alloc(pad));
  }
  if (end) parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

/** Number of real (non-meta) entries, as the manifest's fileCount counts them. */
export function countEntries(entries: RawEntry[]): number {
  return entries.filter((e) => !['x', 'g', 'L'].includes(e.type ?? '0')).length;
}
