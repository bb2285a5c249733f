import { BLOCK, decodeHeader, encodeHeader, isZeroBlock, paddingFor } from '../../pack/src/tar-header.js';

/**
 * Where each part of a genuine pack lies, so tests can cut, flip and move exactly the bytes they
 * mean to. Offsets are byte positions in the `.spk`.
 *
 *   header   [header, data)     the 512-byte ustar header
 *   data     [data, dataEnd)    the entry's bytes (signed, or hashed by the signed manifest)
 *   padding  [dataEnd, end)     zeros up to the next block; nothing reads them
 *   end      [endMarker, endMarker + 512)  the end-of-archive block
 *   trailing [endMarker + 512, length)     further zero blocks, tar padding
 */
export interface OuterEntry {
  readonly name: string;
  readonly header: number;
  readonly data: number;
  readonly dataEnd: number;
  readonly end: number;
}

export interface PackLayout {
  readonly entries: readonly OuterEntry[];
  readonly endMarker: number;
  readonly length: number;
}

export type Region = 'header' | 'data' | 'padding' | 'end' | 'trailing';

export function layoutOf(bytes: Buffer): PackLayout {
  const entries: OuterEntry[] = [];
  let at = 0;
  for (;;) {
    const block = bytes.subarray(at, at + BLOCK);
    if (block.length < BLOCK) throw new Error('not a complete pack');
    if (isZeroBlock(block)) return { entries, endMarker: at, length: bytes.length };
    const h = decodeHeader(Buffer.from(block));
    const data = at + BLOCK;
    const dataEnd = data + h.size;
    entries.push({ name: h.name, header: at, data, dataEnd, end: dataEnd + paddingFor(h.size) });
    at = dataEnd + paddingFor(h.size);
  }
}

export function entryNamed(layout: PackLayout, name: string): OuterEntry {
  const e = layout.entries.find((x) => x.name === name);
  if (!e) throw new Error(`the pack has no entry ${name}`);
  return e;
}

export function regionAt(layout: PackLayout, offset: number): Region {
  if (offset >= layout.endMarker + BLOCK) return 'trailing';
  if (offset >= layout.endMarker) return 'end';
  for (const e of layout.entries) {
    if (offset < e.data) return 'header';
    if (offset < e.dataEnd) return 'data';
    if (offset < e.end) return 'padding';
  }
  throw new Error(`offset ${offset} is past the pack`);
}

/** Bytes nothing authenticates: padding after an entry's data, and zero blocks after the end block. */
export function isUncovered(layout: PackLayout, offset: number): boolean {
  const r = regionAt(layout, offset);
  return r === 'padding' || r === 'trailing';
}

/** A copy of `bytes` with the byte at `offset` XORed with `mask`. */
export function flipped(bytes: Buffer, offset: number, mask = 0x01): Buffer {
  const out = Buffer.from(bytes);
  out[offset] = out[offset]! ^ mask;
  return out;
}

/** The whole of an entry as stored: header, data and padding. */
export function entryBytes(bytes: Buffer, e: OuterEntry): Buffer {
  return bytes.subarray(e.header, e.end);
}

/** A copy of the pack with its entries laid out in another order (indexes into layout.entries). */
export function reordered(bytes: Buffer, layout: PackLayout, order: readonly number[]): Buffer {
  const parts = order.map((i) => entryBytes(bytes, layout.entries[i]!));
  return Buffer.concat([...parts, bytes.subarray(layout.endMarker)]);
}

/** A copy of the pack with an entry renamed; the header checksum is recomputed, so only the name is wrong. */
export function renamed(bytes: Buffer, e: OuterEntry, name: string): Buffer {
  return Buffer.concat([bytes.subarray(0, e.header), encodeHeader(name, e.dataEnd - e.data), bytes.subarray(e.data)]);
}
