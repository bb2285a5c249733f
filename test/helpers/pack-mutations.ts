import { X509Certificate } from 'node:crypto';
import { AEAD_CHUNK_STORED } from '../../pack/src/format.js';
import { parseSignature } from '../../pack/src/signature.js';
import { BLOCK } from '../../pack/src/tar-header.js';
import { isUncovered, regionAt, type PackLayout } from './pack-layout.js';
import type { Rng } from './prng.js';

/**
 * The fuzzer's mutations of a genuine pack, and the rule that says when accepting a mutant is
 * legitimate: only when every byte it changed is one that nothing authenticates (padding after
 * an entry's data, or the zero blocks after the end-of-archive block; see legitimateSpot).
 */
export type Mutation =
  | { readonly kind: 'flip'; readonly at: number; readonly mask: number }
  | { readonly kind: 'set'; readonly at: readonly number[]; readonly values: readonly number[] }
  | { readonly kind: 'truncate'; readonly at: number }
  | { readonly kind: 'insert'; readonly at: number; readonly bytes: Buffer }
  | { readonly kind: 'duplicate-block'; readonly from: number; readonly at: number }
  | { readonly kind: 'swap-blocks'; readonly a: number; readonly b: number };

/** Values that mean something to a tar reader or a JSON parser. */
const TELLING_BYTES = [0x00, 0x20, 0x30, 0x37, 0x2e, 0x2f, 0x22, 0x7b, 0x0a, 0x80, 0xff];

/**
 * Offsets worth aiming at: header fields, the edges of data and padding, AEAD chunk edges, the
 * end block, and the headers of the payload tars inside plain payloads.
 */
export function tellingOffsets(layout: PackLayout, innerTars: boolean): number[] {
  const out: number[] = [];
  for (const e of layout.entries) {
    for (const f of [0, 99, 100, 124, 130, 135, 136, 148, 153, 154, 155, 156, 157, 257, 263, 345, 511]) out.push(e.header + f);
    out.push(e.data, e.data + 1, e.dataEnd - 1, e.dataEnd, e.end - 1);
    if (e.name.startsWith('payloads/')) {
      for (let at = e.data + AEAD_CHUNK_STORED; at < e.dataEnd; at += AEAD_CHUNK_STORED) out.push(at - 1, at);
      if (innerTars) {
        for (let at = e.data; at < e.dataEnd; at += BLOCK) out.push(at, at + 100, at + 124, at + 135, at + 156, at + 157);
      }
    }
  }
  out.push(layout.endMarker, layout.endMarker + 1, layout.endMarker + BLOCK - 1, layout.endMarker + BLOCK, layout.length - 1);
  return out.filter((o) => o >= 0 && o < layout.length);
}

function offset(rng: Rng, layout: PackLayout, telling: readonly number[]): number {
  if (rng.next() < 0.5) return rng.int(layout.length);
  return Math.min(layout.length - 1, Math.max(0, rng.pick(telling) + rng.between(-2, 2)));
}

export function randomMutation(rng: Rng, layout: PackLayout, telling: readonly number[]): Mutation {
  const blocks = Math.floor(layout.length / BLOCK);
  switch (rng.int(6)) {
    case 0:
      return { kind: 'flip', at: offset(rng, layout, telling), mask: 1 << rng.int(8) };
    case 1: {
      const n = rng.pick([1, 1, 1, 2, 3, 8]);
      const at = Array.from({ length: n }, () => offset(rng, layout, telling));
      const values = at.map(() => (rng.next() < 0.5 ? rng.pick(TELLING_BYTES) : rng.int(256)));
      return { kind: 'set', at, values };
    }
    case 2:
      return { kind: 'truncate', at: offset(rng, layout, telling) };
    case 3: {
      const style = rng.int(3);
      const length = style === 0 ? BLOCK * rng.between(1, 2) : rng.between(1, style === 1 ? 64 : 600);
      const bytes = style === 2 ? Buffer.from(Array.from({ length }, () => rng.int(256))) : Buffer.alloc(length);
      return { kind: 'insert', at: rng.next() < 0.1 ? layout.length : offset(rng, layout, telling), bytes };
    }
    case 4:
      return { kind: 'duplicate-block', from: rng.int(blocks) * BLOCK, at: rng.int(blocks + 1) * BLOCK };
    default: {
      const a = rng.int(blocks);
      let b = rng.int(blocks - 1);
      if (b >= a) b += 1;
      return { kind: 'swap-blocks', a: a * BLOCK, b: b * BLOCK };
    }
  }
}

export function applyMutation(bytes: Buffer, m: Mutation): Buffer {
  switch (m.kind) {
    case 'flip': {
      const out = Buffer.from(bytes);
      out[m.at] = out[m.at]! ^ m.mask;
      return out;
    }
    case 'set': {
      const out = Buffer.from(bytes);
      m.at.forEach((at, i) => (out[at] = m.values[i]!));
      return out;
    }
    case 'truncate':
      return Buffer.from(bytes.subarray(0, m.at));
    case 'insert':
      return Buffer.concat([bytes.subarray(0, m.at), m.bytes, bytes.subarray(m.at)]);
    case 'duplicate-block':
      return Buffer.concat([bytes.subarray(0, m.at), bytes.subarray(m.from, m.from + BLOCK), bytes.subarray(m.at)]);
    case 'swap-blocks': {
      const out = Buffer.from(bytes);
      bytes.copy(out, m.a, m.b, m.b + BLOCK);
      bytes.copy(out, m.b, m.a, m.a + BLOCK);
      return out;
    }
  }
}

export function describeMutation(m: Mutation): string {
  switch (m.kind) {
    case 'flip':
      return `flip byte ${m.at} with mask 0x${m.mask.toString(16)}`;
    case 'set':
      return `set bytes ${m.at.map((a, i) => `${a}=0x${m.values[i]!.toString(16)}`).join(', ')}`;
    case 'truncate':
      return `truncate at ${m.at}`;
    case 'insert':
      return `insert ${m.bytes.length} byte(s) at ${m.at}`;
    case 'duplicate-block':
      return `duplicate block ${m.from} at ${m.at}`;
    case 'swap-blocks':
      return `swap blocks ${m.a} and ${m.b}`;
  }
}

/**
 * What a signature envelope says, decoded: algorithm, signature bytes, certificates as DER. The
 * envelope cannot be covered by the signature it carries, so its JSON spelling (whitespace) is not
 * authenticated; everything it says is.
 */
function envelopeMeaning(bytes: Buffer): string | null {
  try {
    const env = parseSignature(bytes);
    const der = env.chain.map((pem) => new X509Certificate(pem).raw.toString('hex'));
    return JSON.stringify([env.algorithm, Buffer.from(env.signature, 'base64').toString('hex'), der]);
  } catch {
    return null;
  }
}

/**
 * Where an accepted mutant differs from the genuine pack, if that is a legitimate place; null if
 * not. The verdict is on the resulting bytes, not on where the mutation aimed: the mutant must hold
 * the genuine byte at every position the reader authenticates (headers, data, the end block), and
 * may differ only in padding and in the zero blocks after the end block, or in its length past
 * them. (Zeros inserted into a run of zeros, say the payload tar's own end blocks, give exactly
 * the genuine pack with zeros appended: that is where such a mutation really acted.) The one
 * exception is manifest.sig, whose JSON may be spelled otherwise if it decodes to exactly the
 * same algorithm, signature and certificates.
 */
export function legitimateSpot(layout: PackLayout, original: Buffer, mutant: Buffer): string | null {
  if (mutant.length < layout.endMarker + BLOCK) return null;
  const sig = layout.entries.find((e) => e.name === 'manifest.sig');
  const regions = new Set<string>();
  for (let o = 0; o < Math.min(original.length, mutant.length); o++) {
    if (mutant[o] === original[o]) continue;
    if (isUncovered(layout, o)) regions.add(regionAt(layout, o));
    else if (sig && o >= sig.data && o < sig.dataEnd) regions.add('the JSON spelling of manifest.sig');
    else return null;
  }
  if (sig && regions.has('the JSON spelling of manifest.sig')) {
    const before = envelopeMeaning(original.subarray(sig.data, sig.dataEnd));
    if (before === null || before !== envelopeMeaning(mutant.subarray(sig.data, sig.dataEnd))) return null;
  }
  // Bytes added or removed past the original end are trailing zero blocks, or take their place.
  if (mutant.length !== original.length) regions.add('trailing');
  return [...regions].sort().join(' and ');
}
