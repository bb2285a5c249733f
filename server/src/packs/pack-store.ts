import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { commitFile } from '../../../base/src/fs/atomic.js';
import { ServerError } from '../errors.js';

/**
 * The content-addressed pack store: `packs/<sha256>.spk`, where the name is the sha256 of the
 * bytes. Uploads are streamed to `uploads/` (never buffered in memory), hashed as they arrive,
 * and only renamed into `packs/` once verified. A pack id is 64 lower-case hex characters, checked
 * before any path is built from it, so no id can name a file outside the store.
 */
export const PACK_ID = /^[0-9a-f]{64}$/;

export function isPackId(id: string): boolean {
  return PACK_ID.test(id);
}

export interface ReceivedUpload {
  readonly tmp: string;
  readonly sha256: string;
  readonly size: number;
}

export class PackStore {
  constructor(
    readonly dir: string,
    readonly uploads: string,
  ) {}

  pathOf(sha256: string): string {
    if (!isPackId(sha256)) throw new ServerError('PACK_ID_INVALID', 'a pack id is a sha256: 64 lower-case hex characters');
    return join(this.dir, `${sha256}.spk`);
  }

  /**
   * Streams `source` to a temp file, hashing it as it goes; refuses past `maxBytes` (the temp file
   * is removed). On a refusal the source is left paused, not destroyed: for an HTTP upload the
   * request's socket then still carries the 413 answer.
   */
  async receive(source: Readable, maxBytes: number): Promise<ReceivedUpload> {
    const tmp = join(this.uploads, `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}.part`);
    const hash = createHash('sha256');
    const out = createWriteStream(tmp, { mode: 0o600, flags: 'wx' });
    let size = 0;
    try {
      await new Promise<void>((resolve, reject) => {
        let settled = false;
        const fail = (e: unknown): void => {
          if (settled) return;
          settled = true;
          source.pause();
          source.removeListener('data', onData);
          reject(e);
        };
        const onData = (chunk: Buffer): void => {
          size += chunk.length;
          if (size > maxBytes) {
            fail(new ServerError('BODY_TOO_LARGE', `the pack is larger than the ${maxBytes} bytes this server accepts`));
            return;
          }
          hash.update(chunk);
          if (!out.write(chunk)) {
            source.pause();
            out.once('drain', () => {
              if (!settled) source.resume();
            });
          }
        };
        source.on('data', onData);
        source.once('end', () => {
          if (settled) return;
          settled = true;
          out.end(() => resolve());
        });
        source.once('error', fail);
        source.once('close', () => fail(new Error('the upload was cut off before its end')));
        out.once('error', fail);
        source.resume();
      });
    } catch (e) {
      out.destroy();
      await rm(tmp, { force: true });
      if (e instanceof ServerError) throw e;
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'EROFS' || code === 'EACCES') {
        throw new ServerError('STORE_WRITE_FAILED', `cannot write the upload to ${this.uploads}: ${code}`, { cause: e });
      }
      throw e;
    }
    return { tmp, sha256: hash.digest('hex'), size };
  }

  /** Moves a verified upload into the store; a pack already there keeps its file. */
  async commit(upload: ReceivedUpload): Promise<void> {
    const dest = this.pathOf(upload.sha256);
    if (await this.size(upload.sha256)) {
      await rm(upload.tmp, { force: true });
      return;
    }
    await commitFile(upload.tmp, dest);
  }

  async discard(upload: ReceivedUpload): Promise<void> {
    await rm(upload.tmp, { force: true });
  }

  /** The stored size, or null when the file is missing. */
  async size(sha256: string): Promise<number | null> {
    try {
      return (await stat(this.pathOf(sha256))).size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
  }

  async mtimeMs(sha256: string): Promise<number | null> {
    try {
      return (await stat(this.pathOf(sha256))).mtimeMs;
    } catch {
      return null;
    }
  }

  async remove(sha256: string): Promise<void> {
    await rm(this.pathOf(sha256), { force: true });
  }

  /** Every pack file in the store, by id (other names are ignored). */
  async list(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => n.endsWith('.spk') && isPackId(n.slice(0, -4))).map((n) => n.slice(0, -4)).sort();
  }

  /** Recomputes a stored pack's sha256 (restore and import check what they bring in). */
  async digest(path: string): Promise<string> {
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
    return hash.digest('hex');
  }
}
