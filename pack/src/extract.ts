import { createHash, type KeyObject } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { PackError } from './errors.js';
import { RATIO_CAP, RATIO_SLACK } from './format.js';
import type { PayloadEntry } from './manifest.js';
import { ENTRY_GARBAGE_BYTES, GarbageReleaser } from '../../base/src/os/memory.js';
import { payloadHasher } from './payload-hash.js';
import { PayloadTarReader } from './payload-tar.js';
import { unwrapWith } from './recipients.js';
import { SafeExtractor } from './safe-extract.js';
import { derivePayloadKey, StreamOpener } from './stream-aead.js';
import { paddingFor } from './tar-header.js';
import type { PackCursor } from './read.js';
import type { VerifiedPack } from './verify.js';

/**
 * Step two (DESIGN.md, "The service pack", step 4): stream each payload, in one pass and in
 * constant memory, through hash, decryption, decompression and the safe extractor into
 * `<staging>/<payload name>/`. The signed sha256 of the stored bytes is what authorises: a payload
 * whose hash does not match is removed, whatever its chunks said, and nothing extracted is handed
 * back before every payload, and the end of the pack, checked out.
 *
 * mode 'hash-only' checks every stored byte against the signed hashes without decrypting or
 * writing anything: what `sonde verify` does without a recipient key, and what the server does
 * at upload.
 */
export interface ExtractOptions {
  readonly mode: 'extract' | 'hash-only';
  /** Required for 'extract': a fresh or empty directory; payloads land in subdirectories. */
  readonly staging?: string;
  /** The recipient private key, for encrypted packs. */
  readonly key?: KeyObject;
  readonly onProgress?: (bytesRead: number) => void;
  /** The caller will sync what was extracted: start flushing large files early (the engine). */
  readonly flushLargeFiles?: boolean;
  /** In 'extract' mode, extract only payloads of these types; the others are hash-checked only. */
  readonly only?: readonly PayloadEntry['type'][];
  /**
   * Where a `system` payload's plain image goes (the agent: the inactive slot's block device).
   * Without one it is written to `<staging>/<name>/image`. Either way the bytes are held against
   * the signed sizes and hashes as they pass, and the payload fails if they do not match.
   */
  readonly imageSink?: (entry: PayloadEntry, plain: AsyncIterable<Buffer>) => Promise<void>;
}

export interface ExtractedPayload {
  readonly entry: PayloadEntry;
  /** Where it was extracted, or null in hash-only mode. */
  readonly dir: string | null;
  readonly entries: number;
  /**
   * What the payload left under `dir`: every path it created, directories its tar only implied
   * included, the tar's own "./" excluded. What a read-back of the folder must find (it can
   * differ from `entries`: a tar may omit parent directory entries, which is legal).
   */
  readonly onDisk: number;
}

export interface ExtractResult {
  readonly payloads: readonly ExtractedPayload[];
  readonly decrypted: boolean;
  readonly bytesRead: number;
}

async function prepareStaging(dir: string): Promise<boolean> {
  try {
    const names = await readdir(dir);
    if (names.length > 0) throw new PackError('STAGING_NOT_EMPTY', `staging directory ${dir} is not empty`);
    return false;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return true;
  }
}

export async function extractPack(pack: VerifiedPack, options: ExtractOptions): Promise<ExtractResult> {
  const cursor = pack.takeCursor();
  const { manifest } = pack;
  const encrypted = manifest.encryption !== undefined;
  const created: string[] = [];
  let createdStaging = false;
  try {
    let contentKey: Buffer | null = null;
    if (options.mode === 'extract') {
      if (!options.staging) throw new Error('extract mode needs a staging directory');
      if (encrypted) {
        if (!options.key) throw new PackError('RECIPIENT_KEY_REQUIRED', 'the pack is encrypted; a recipient key is needed to extract it');
        contentKey = unwrapWith(options.key, manifest.encryption!.recipients);
      }
      createdStaging = await prepareStaging(options.staging);
    }
    const results: ExtractedPayload[] = [];
    for (const entry of manifest.payloads) {
      const h = await cursor.nextHeader(entry.file);
      if (h === null) throw new PackError('PACK_FORMAT', `the pack ends where payload ${entry.file} was expected`);
      if (h.name !== entry.file) {
        throw new PackError('PACK_FORMAT', `found entry ${JSON.stringify(h.name)} where payload ${entry.file} was expected (entries reordered or replaced)`);
      }
      if (h.size !== entry.size) {
        throw new PackError('PAYLOAD_SIZE_MISMATCH', `payload ${entry.file} is ${h.size} bytes; the manifest says ${entry.size}`);
      }
      let dir: string | null = null;
      if (options.mode === 'extract' && (options.only === undefined || options.only.includes(entry.type))) {
        dir = join(options.staging!, entry.name);
        await mkdir(dir, { mode: 0o755 });
        created.push(dir);
      }
      const key = contentKey && entry.encryption ? derivePayloadKey(contentKey, Buffer.from(entry.encryption.salt, 'base64'), entry.file) : null;
      const { entries, onDisk } = await streamPayload(cursor, entry, dir, key, options.onProgress, options.flushLargeFiles === true, options.imageSink);
      await cursor.reader.skip(paddingFor(entry.size), `the padding of ${entry.file}`);
      results.push({ entry, dir, entries, onDisk });
    }
    await cursor.expectEnd();
    return { payloads: results, decrypted: contentKey !== null, bytesRead: cursor.reader.offset };
  } catch (e) {
    await cursor.reader.close().catch(() => undefined);
    for (const dir of created) await rm(dir, { recursive: true, force: true });
    if (createdStaging && options.staging) await rm(options.staging, { recursive: true, force: true });
    throw e;
  }
}

/** File-system failures while writing staging (a full disk, a read-only mount) get their own code. */
function asPackError(e: unknown, file: string): unknown {
  if (e instanceof PackError) return e;
  const code = (e as NodeJS.ErrnoException).code;
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) {
    return new PackError('STAGING_WRITE_FAILED', `writing payload ${file} to staging failed: ${code}`, { cause: e });
  }
  return e;
}

/** One payload: the tar entries extracted and the paths they left on disk (0 in hash-only mode). */
async function streamPayload(
  cursor: PackCursor,
  entry: PayloadEntry,
  dir: string | null,
  key: Buffer | null,
  onProgress?: (bytesRead: number) => void,
  flushLargeFiles = false,
  imageSink?: ExtractOptions['imageSink'],
): Promise<{ entries: number; onDisk: number }> {
  const reader = cursor.reader;
  const hash = payloadHasher(entry.size, reader.lender);
  const releaser = new GarbageReleaser();
  let hashed = 0;
  const verifyHash = async (): Promise<void> => {
    if ((await hash.digest()) !== entry.sha256) {
      throw new PackError('PAYLOAD_HASH_MISMATCH', `payload ${entry.file} does not match its signed sha256`);
    }
  };
  if (dir === null) {
    try {
      for await (const chunk of reader.stream(entry.size, entry.file)) {
        await hash.update(chunk);
        hashed += chunk.length;
        if (reader.lender === null) releaser.add(chunk.length);
        onProgress?.(reader.offset);
      }
    } catch (e) {
      hash.dispose();
      throw e;
    }
    await verifyHash();
    return { entries: 0, onDisk: 0 };
  }

  const extractor = new SafeExtractor(dir, { fileCount: entry.fileCount, flushLargeFiles });
  const tar = new PayloadTarReader(extractor);
  const opener = key ? new StreamOpener(key, entry.size) : null;
  let compressedIn = 0;
  let plainOut = 0;

  async function* stored(): AsyncGenerator<Buffer> {
    for await (const chunk of reader.stream(entry.size, entry.file)) {
      const hashing = hash.update(chunk);
      hashed += chunk.length;
      // Borrowed buffers are reused, not collected; only fresh ones count towards a collection.
      if (reader.lender === null) releaser.add(chunk.length);
      onProgress?.(reader.offset);
      // The worker hashes this chunk while it is decrypted here.
      if (hashing) await hashing;
      if (opener) {
        for (const plain of opener.push(chunk)) {
          compressedIn += plain.length;
          if (reader.lender !== null) releaser.add(plain.length);
          yield plain;
        }
      } else {
        compressedIn += chunk.length;
        // Plain bytes go on to writes in flight and to the inflater, which outlive a borrowed
        // buffer (slot-source.ts): copy them. A decrypted chunk is already a buffer of its own.
        if (reader.lender !== null) {
          releaser.add(chunk.length);
          yield Buffer.from(chunk);
        } else {
          yield chunk;
        }
      }
    }
    if (opener) {
      const last = opener.end();
      compressedIn += last.length;
      if (last.length > 0) yield last;
    }
  }

  /** A system payload: the plain image, counted and hashed on its way to the sink. */
  const imageHash = entry.type === 'system' ? createHash('sha256') : null;
  /** Every plain byte, tar or image: held against the declared size and the bomb guard as it comes. */
  function countPlain(chunk: Buffer): void {
    plainOut += chunk.length;
    if (plainOut > entry.unpackedSize) {
      throw new PackError('UNPACKED_SIZE_MISMATCH', `payload ${entry.file} unpacks to more than the ${entry.unpackedSize} bytes its manifest declares`);
    }
    if (entry.compression === 'gzip' && plainOut > RATIO_CAP * compressedIn + RATIO_SLACK) {
      throw new PackError('COMPRESSION_RATIO_EXCEEDED', `payload ${entry.file} inflates past ${RATIO_CAP}:1 (decompression bomb)`);
    }
    // Inflated bytes are new buffers too: they count towards the next collection.
    if (entry.compression === 'gzip') releaser.add(chunk.length);
  }
  async function* countedImage(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    for await (const chunk of source) {
      countPlain(chunk);
      imageHash!.update(chunk);
      yield chunk;
    }
  }
  async function intoImage(source: AsyncIterable<Buffer>): Promise<void> {
    const plain = countedImage(source);
    if (imageSink) await imageSink(entry, plain);
    else await pipeline(plain, createWriteStream(join(dir!, 'image'), { mode: 0o600 }));
    if (plainOut !== entry.unpackedSize) {
      throw new PackError('UNPACKED_SIZE_MISMATCH', `payload ${entry.file} unpacks to ${plainOut} bytes; its manifest declares ${entry.unpackedSize}`);
    }
    if (imageHash!.digest('hex') !== entry.imageSha256) {
      throw new PackError('PAYLOAD_HASH_MISMATCH', `the image in payload ${entry.file} does not match its signed imageSha256`);
    }
  }

  async function intoTar(source: AsyncIterable<Buffer>): Promise<void> {
    for await (const chunk of source) {
      countPlain(chunk);
      const entriesBefore = extractor.entries;
      await tar.write(chunk);
      // Small files make garbage of their own (paths, handles, strings) with few bytes to count.
      releaser.add((extractor.entries - entriesBefore) * ENTRY_GARBAGE_BYTES);
    }
    tar.end();
    if (plainOut !== entry.unpackedSize) {
      throw new PackError('UNPACKED_SIZE_MISMATCH', `payload ${entry.file} unpacks to ${plainOut} bytes; its manifest declares ${entry.unpackedSize}`);
    }
    if (extractor.entries !== entry.fileCount) {
      throw new PackError('FILE_COUNT_MISMATCH', `payload ${entry.file} holds ${extractor.entries} entries; its manifest declares ${entry.fileCount}`);
    }
    await extractor.finish();
  }

  try {
    const sink = entry.type === 'system' ? intoImage : intoTar;
    if (entry.compression === 'gzip') {
      await pipeline(stored(), createGunzip({ chunkSize: 256 * 1024 }), sink).catch((e: unknown) => {
        const code = (e as NodeJS.ErrnoException).code;
        if (typeof code === 'string' && code.startsWith('Z_')) {
          throw new PackError('DECOMPRESS_FAILED', `payload ${entry.file} is not valid gzip`, { cause: e });
        }
        throw e;
      });
    } else {
      await sink(stored());
    }
  } catch (caught) {
    const e = asPackError(caught, entry.file);
    await extractor.abort();
    // A stored byte that does not match its signed hash is the root cause of whatever broke
    // downstream (bad gzip, bad tar): read the rest of the payload through the hash to say so.
    // A chunk that fails authentication already judged the stored bytes themselves, and names
    // the chunk (DESIGN.md: chunked AEAD rejects tampering early), so it stands.
    if (!(e instanceof PackError && (e.code === 'PACK_TRUNCATED' || e.code === 'DECRYPT_FAILED'))) {
      try {
        for await (const chunk of reader.stream(entry.size - hashed, entry.file)) await hash.update(chunk);
        await verifyHash();
      } catch (hashError) {
        if (hashError instanceof PackError && hashError.code === 'PAYLOAD_HASH_MISMATCH') throw hashError;
      }
    }
    hash.dispose();
    throw e;
  }
  await verifyHash();
  if (entry.type === 'system') {
    await extractor.abort();
    return { entries: 0, onDisk: 0 };
  }
  return { entries: extractor.entries, onDisk: extractor.created };
}
