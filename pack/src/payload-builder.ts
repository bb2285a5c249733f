import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { create as createTar } from 'tar';
import { RATIO_CAP } from './format.js';
import type { PayloadEntry, PayloadType } from './manifest.js';
import { derivePayloadKey, StreamSealer } from './stream-aead.js';
import { PackerError } from './packer-errors.js';

/**
 * Builds one payload: a tar of the folder (real tar, written by node-tar, entries in sorted
 * order), compressed, then sealed when the pack is encrypted, into a temp file beside the output.
 * The stored bytes' size and sha256 go into the manifest, with the tar's size and entry count,
 * which extraction enforces.
 */
export interface BuildPayloadOptions {
  readonly type: PayloadType;
  readonly name: string;
  readonly file: string;
  /** The folder to tar; for a `system` payload, the file-system image file itself. */
  readonly dir: string;
  readonly compression: 'gzip' | 'none' | 'auto';
  readonly contentKey: Buffer | null;
  readonly tmpPath: string;
  readonly onTarBytes?: (n: number) => void;
}

/** Relative paths of everything under `dir`, parents before children, names sorted bytewise. */
export async function listTree(dir: string): Promise<{ paths: string[]; bytes: number }> {
  const paths: string[] = [];
  let bytes = 0;
  async function walk(rel: string): Promise<void> {
    const names = (await readdir(rel ? join(dir, rel) : dir)).sort();
    for (const name of names) {
      const childRel = rel ? `${rel}/${name}` : name;
      const info = await lstat(join(dir, childRel));
      if (!info.isFile() && !info.isDirectory() && !info.isSymbolicLink()) {
        throw new PackerError('SOURCE_INVALID', `${join(dir, childRel)} is a device, socket or FIFO; packs carry files, folders and links only`);
      }
      paths.push(childRel);
      if (info.isFile()) bytes += info.size;
      if (info.isDirectory()) await walk(childRel);
    }
  }
  await walk('');
  return { paths, bytes };
}

function tarStream(dir: string, paths: string[]): Readable {
  if (paths.length === 0) return Readable.from([Buffer.alloc(1024)]);
  // portable: no uid/gid/uname/atime/ctime; noMtime: the same tree packs to the same tar.
  return createTar({ cwd: dir, portable: true, noDirRecurse: true, noMtime: true }, paths) as unknown as Readable;
}

export async function buildPayload(o: BuildPayloadOptions): Promise<PayloadEntry> {
  // A system payload is the image's bytes as they are (docs/slots.md); every other payload a tar.
  const image = o.type === 'system';
  if (image && !(await lstat(o.dir)).isFile()) throw new PackerError('SOURCE_INVALID', `${o.dir}: a system payload is a file-system image file`);
  const { paths } = image ? { paths: [] as string[] } : await listTree(o.dir);
  const source = (): Readable => (image ? createReadStream(o.dir, { highWaterMark: 256 * 1024 }) : tarStream(o.dir, paths));
  const attempt = async (compression: 'gzip' | 'none'): Promise<{ entry: PayloadEntry; compressed: number }> => {
    let unpacked = 0;
    let compressed = 0;
    let size = 0;
    const hash = createHash('sha256');
    const plainHash = image ? createHash('sha256') : null;
    const salt = o.contentKey ? randomBytes(18) : null;
    const sealer = o.contentKey && salt ? new StreamSealer(derivePayloadKey(o.contentKey, salt, o.file)) : null;
    const counted = async function* (src: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
      for await (const c of src) {
        unpacked += c.length;
        plainHash?.update(c);
        o.onTarBytes?.(c.length);
        yield c;
      }
    };
    const afterCompression = async function* (src: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
      for await (const c of src) {
        compressed += c.length;
        if (sealer) yield* sealer.push(c);
        else yield c;
      }
      if (sealer) yield sealer.end();
    };
    const hashed = async function* (src: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
      for await (const c of src) {
        hash.update(c);
        size += c.length;
        yield c;
      }
    };
    const out = createWriteStream(o.tmpPath);
    if (compression === 'gzip') {
      await pipeline(source(), counted, createGzip({ level: 6, chunkSize: 256 * 1024 }), afterCompression, hashed, out);
    } else {
      await pipeline(source(), counted, afterCompression, hashed, out);
    }
    const entry: PayloadEntry = {
      name: o.name,
      type: o.type,
      file: o.file,
      size,
      sha256: hash.digest('hex'),
      unpackedSize: unpacked,
      fileCount: paths.length,
      compression,
    };
    if (salt) entry.encryption = { salt: salt.toString('base64') };
    if (plainHash) entry.imageSha256 = plainHash.digest('hex');
    return { entry, compressed };
  };
  if (o.compression === 'none') return (await attempt('none')).entry;
  const first = await attempt('gzip');
  // Agents refuse payloads that inflate past RATIO_CAP:1 (a bomb guard); keep well under it.
  const nearBombCap = first.entry.unpackedSize > (RATIO_CAP / 2) * Math.max(first.compressed, 1) + 1024 * 1024;
  // 'auto': gzip only when it saves at least a tenth. Inflating costs every probe CPU on every
  // install (about 0.5 s per 256 MiB here), which a few percent of transfer does not repay.
  const poorGain = o.compression === 'auto' && first.compressed > 0.9 * first.entry.unpackedSize;
  if (nearBombCap || poorGain) return (await attempt('none')).entry;
  return first.entry;
}
