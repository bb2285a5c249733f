import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MiB, remove } from './measure.js';

/**
 * The benchmark payload of issues 2 and 3: about 2,000 small text files (2-8 KiB, compressible)
 * in 40 folders, and the rest of `totalMiB` in incompressible files of at most 32 MiB.
 */
const WORDS = 'probe target latency jitter packet loss interface collector threshold alarm measurement window'.split(' ');

export async function makeDataset(dir: string, totalMiB: number): Promise<{ files: number; bytes: number }> {
  await remove(dir);
  let bytes = 0;
  let files = 0;
  // ~2,000 small text files (2-8 KiB each, compressible), spread over 40 folders.
  for (let i = 0; i < 2000; i++) {
    const d = join(dir, 'share', `module-${i % 40}`);
    if (i < 40) await mkdir(d, { recursive: true });
    const len = 2048 + ((i * 7919) % 6144);
    let text = '';
    while (text.length < len) text += `${WORDS[(text.length * 31 + i) % WORDS.length]} ${text.length}\n`;
    await writeFile(join(d, `file-${i}.txt`), text);
    bytes += text.length;
    files++;
  }
  // The rest in large incompressible files of at most 32 MiB.
  await mkdir(join(dir, 'lib'), { recursive: true });
  let left = totalMiB * MiB - bytes;
  let n = 0;
  while (left > 0) {
    const size = Math.min(left, 32 * MiB);
    await writeFile(join(dir, 'lib', `blob-${n++}.bin`), randomBytes(size));
    left -= size;
    bytes += size;
    files++;
  }
  return { files, bytes };
}

