import { open } from 'node:fs/promises';
import { PACK_MARKER, ENTRY_MARKER } from './format.js';
import { BLOCK, decodeHeader, encodeHeader, isZeroBlock, paddingFor } from './tar-header.js';

/**
 * Does a file in the inbox hold a whole pack, or one cut short? An upload that was cut off
 * leaves a file that looks finished (no writer, size stable) but ends early. Installing it would
 * only produce a failed deployment on every scan, so the inbox asks this first.
 *
 * It is cheap on purpose: a pack is a tar whose headers declare every entry's size, so reading
 * one 512-byte header per entry (a handful per pack) and jumping over the bodies tells whether
 * the file reaches the end-of-archive block. Nothing here decides trust; a file that is whole
 * but wrong is left for the engine to refuse with its own code.
 */
export type PackExtent =
  /** The end-of-archive block is present; `packBytes` counts up to and including it. */
  | { readonly kind: 'complete'; readonly packBytes: number }
  /** The file ends inside an entry or before the end block; at least `needBytes` are missing. */
  | { readonly kind: 'truncated'; readonly haveBytes: number; readonly needBytes: number }
  /** Not the shape of a pack: the engine will name the fault (PACK_FORMAT, …). */
  | { readonly kind: 'not-a-pack'; readonly reason: string };

/** Sonde packs hold a marker, a manifest, a signature and a few payloads; far below this. */
const MAX_ENTRIES = 4096;

/** The first header of every pack is fixed: the marker entry, with the marker's size. */
const FIRST_HEADER = encodeHeader(ENTRY_MARKER, Buffer.byteLength(PACK_MARKER));

export async function measurePack(path: string): Promise<PackExtent> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const block = Buffer.alloc(BLOCK);
    let offset = 0;
    for (let entries = 0; entries <= MAX_ENTRIES; entries++) {
      if (offset + BLOCK > size) {
        // A header cut short. At the very start we can still tell a pack from something else:
        // the bytes present must be the start of the fixed first header.
        if (offset === 0) {
          const { bytesRead } = await fh.read(block, 0, size, 0);
          if (!FIRST_HEADER.subarray(0, bytesRead).equals(block.subarray(0, bytesRead))) {
            return { kind: 'not-a-pack', reason: 'the file does not start like a Sonde pack' };
          }
        }
        return { kind: 'truncated', haveBytes: size, needBytes: offset + BLOCK };
      }
      const { bytesRead } = await fh.read(block, 0, BLOCK, offset);
      // The file shrank under us: report what is there now; the next scan looks again.
      if (bytesRead < BLOCK) return { kind: 'truncated', haveBytes: offset + bytesRead, needBytes: offset + BLOCK };
      if (isZeroBlock(block)) return { kind: 'complete', packBytes: offset + BLOCK };
      let entrySize: number;
      try {
        entrySize = decodeHeader(block).size;
      } catch (e) {
        return { kind: 'not-a-pack', reason: e instanceof Error ? e.message : 'a tar header does not decode' };
      }
      offset += BLOCK + entrySize + paddingFor(entrySize);
      if (offset > size) return { kind: 'truncated', haveBytes: size, needBytes: offset + BLOCK };
    }
    return { kind: 'not-a-pack', reason: `more than ${MAX_ENTRIES} entries` };
  } finally {
    await fh.close();
  }
}
