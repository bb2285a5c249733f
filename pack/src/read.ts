import { PackError } from './errors.js';
import { ByteReader } from './byte-reader.js';
import { SlotFileSource } from './slot-source.js';
import { BLOCK, decodeHeader, isZeroBlock, paddingFor, type OuterHeader } from './tar-header.js';
import {
  PACK_MARKER,
  ENTRY_MANIFEST,
  ENTRY_MARKER,
  ENTRY_SIGNATURE,
  MAX_MANIFEST_BYTES,
  MAX_MARKER_BYTES,
  MAX_SIGNATURE_BYTES,
} from './format.js';
import { parseSignature, type SignatureEnvelope } from './signature.js';
import { manifestSchema, type Manifest } from './manifest.js';

/**
 * Step one of reading a pack (DESIGN.md, "The service pack"): the marker, manifest.json and
 * manifest.sig, in that order, and nothing of the payloads. The result is an UnverifiedPack: it
 * can be inspected, and it can be handed to verifyPack(), but nothing can be installed from it.
 */
export type PackSource = string | AsyncIterable<Buffer | Uint8Array>;

/** Reading position inside a pack, shared by the unverified and verified views of it. */
export class PackCursor {
  constructor(readonly reader: ByteReader) {}

  async nextHeader(what: string): Promise<OuterHeader | null> {
    const block = await this.reader.readExact(BLOCK, `the header of ${what}`);
    if (isZeroBlock(block)) return null;
    return decodeHeader(block);
  }

  /**
   * The first entry, the marker. A file that does not begin with the marker entry's name is not a
   * Sonde pack at all, however long it is (`PACK_FORMAT`, "not a Sonde pack"); one that begins
   * with it and stops is a pack cut short (`PACK_TRUNCATED`).
   */
  async expectMarker(maxBytes: number): Promise<Buffer> {
    const block = await this.reader.readUpTo(BLOCK);
    if (block.length === 0) throw new PackError('PACK_TRUNCATED', 'the file is empty: a pack cut before its first byte');
    const name = Buffer.from(`${ENTRY_MARKER}\0`);
    const seen = block.subarray(0, Math.min(block.length, name.length));
    if (!seen.equals(name.subarray(0, seen.length))) throw new PackError('PACK_FORMAT', 'not a Sonde pack: the file does not begin with a sonde-bundle entry');
    if (block.length < BLOCK) throw new PackError('PACK_TRUNCATED', `the pack ends inside the header of ${ENTRY_MARKER}`);
    return this.entryBody(decodeHeader(block), ENTRY_MARKER, maxBytes);
  }

  async expectEntry(name: string, maxBytes: number): Promise<Buffer> {
    const h = await this.nextHeader(name);
    if (h === null) throw new PackError('PACK_FORMAT', `the pack ends where ${name} was expected`);
    return this.entryBody(h, name, maxBytes);
  }

  private async entryBody(h: OuterHeader, name: string, maxBytes: number): Promise<Buffer> {
    if (h.name !== name) throw new PackError('PACK_FORMAT', `found entry ${JSON.stringify(h.name)} where ${name} was expected`);
    if (h.size > maxBytes) throw new PackError('PACK_FORMAT', `${name} is ${h.size} bytes; at most ${maxBytes} allowed`);
    const body = await this.reader.readExact(h.size, name);
    await this.reader.skip(paddingFor(h.size), `the padding of ${name}`);
    return body;
  }

  /** After the last payload: the end-of-archive block must follow; later bytes are tar padding. */
  async expectEnd(): Promise<void> {
    const h = await this.nextHeader('the end of the pack');
    if (h !== null) throw new PackError('PACK_FORMAT', `unexpected entry ${JSON.stringify(h.name)} after the last payload`);
    await this.reader.close();
  }
}

export class UnverifiedPack {
  /** @internal */
  constructor(
    readonly manifestBytes: Buffer,
    readonly signature: SignatureEnvelope,
    /** @internal */ readonly cursor: PackCursor,
  ) {}

  /**
   * The manifest as the pack claims it, NOT verified. For `sonde inspect` and for messages only;
   * nothing may act on it. Throws MANIFEST_INVALID when it does not parse.
   */
  claimedManifest(): Manifest {
    return parseManifest(this.manifestBytes);
  }

  async close(): Promise<void> {
    await this.cursor.reader.close();
  }
}

export function parseManifest(bytes: Buffer): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(bytes.toString('utf8'));
  } catch (e) {
    throw new PackError('MANIFEST_INVALID', 'manifest.json is not JSON', { cause: e });
  }
  const r = manifestSchema.safeParse(json);
  if (!r.success) {
    const first = r.error.issues[0];
    throw new PackError(
      'MANIFEST_INVALID',
      `manifest.json: ${first ? `${first.path.join('.') || '(root)'}: ${first.message}` : 'invalid'}`,
      { cause: r.error },
    );
  }
  return r.data;
}

/** A file is read into a ring of reused slots; any other source is taken as it comes. */
export function openReader(source: PackSource): ByteReader {
  if (typeof source !== 'string') return new ByteReader(source);
  const file = new SlotFileSource(source);
  return new ByteReader(file, file);
}

export async function readPack(source: PackSource): Promise<UnverifiedPack> {
  const reader = openReader(source);
  const cursor = new PackCursor(reader);
  try {
    const marker = await cursor.expectMarker(MAX_MARKER_BYTES);
    if (marker.toString('utf8') !== PACK_MARKER) {
      if (marker.toString('utf8').startsWith('sonde-bundle ')) {
        throw new PackError('PACK_UNSUPPORTED_VERSION', `this agent reads ${PACK_MARKER.trim()}, the pack is ${marker.toString('utf8').trim()}`);
      }
      throw new PackError('PACK_FORMAT', 'not a Sonde pack (bad sonde-bundle marker)');
    }
    const manifestBytes = await cursor.expectEntry(ENTRY_MANIFEST, MAX_MANIFEST_BYTES);
    const signature = parseSignature(await cursor.expectEntry(ENTRY_SIGNATURE, MAX_SIGNATURE_BYTES));
    return new UnverifiedPack(manifestBytes, signature, cursor);
  } catch (e) {
    await reader.close().catch(() => undefined);
    throw e;
  }
}
