import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { fsyncDir } from '../../../base/src/fs/atomic.js';

/**
 * `<dest>.part` and the sha256 of its bytes so far. The hash always covers exactly `offset` bytes,
 * so the pack is verified in the same pass that writes it, in constant memory.
 */
export class PartFile {
  private fh: FileHandle | undefined;
  private hash: Hash = createHash('sha256');
  offset = 0;

  private constructor(
    readonly path: string,
    fh: FileHandle,
  ) {
    this.fh = fh;
  }

  /** Opens (or creates) the `.part` and hashes what an earlier call left in it. */
  static async open(path: string, size: number, signal: AbortSignal | undefined): Promise<PartFile> {
    const part = new PartFile(path, await open(path, constants.O_RDWR | constants.O_CREAT, 0o644));
    try {
      const length = (await part.handle().stat()).size;
      // Longer than the pack: it cannot be a prefix of it.
      if (length > size) await part.handle().truncate(0);
      else await part.hashExisting(length, signal);
    } catch (e) {
      await part.close();
      throw e;
    }
    return part;
  }

  private handle(): FileHandle {
    if (!this.fh) throw new Error(`${this.path} is closed`);
    return this.fh;
  }

  private async hashExisting(length: number, signal: AbortSignal | undefined): Promise<void> {
    const buf = Buffer.allocUnsafe(1024 * 1024);
    while (this.offset < length) {
      signal?.throwIfAborted();
      const { bytesRead } = await this.handle().read(buf, 0, Math.min(buf.length, length - this.offset), this.offset);
      if (bytesRead === 0) break;
      this.hash.update(buf.subarray(0, bytesRead));
      this.offset += bytesRead;
    }
    // Whatever could not be read back is dropped, so the hash and the file agree.
    if (this.offset < length) await this.handle().truncate(this.offset);
  }

  async append(chunk: Buffer): Promise<void> {
    let written = 0;
    try {
      while (written < chunk.length) {
        const r = await this.handle().write(chunk, written, chunk.length - written, this.offset + written);
        written += r.bytesWritten;
      }
    } catch (e) {
      // Keep the file equal to what the hash has seen.
      await this.handle().truncate(this.offset).catch(() => undefined);
      throw e;
    }
    this.hash.update(chunk);
    this.offset += chunk.length;
  }

  async restart(): Promise<void> {
    await this.handle().truncate(0);
    this.hash = createHash('sha256');
    this.offset = 0;
  }

  digest(): string {
    return this.hash.copy().digest('hex');
  }

  /** fsync, then rename into place and fsync the folder: `dest` appears whole or not at all. */
  async commit(dest: string): Promise<void> {
    await this.handle().sync();
    await this.close();
    await rename(this.path, dest);
    await fsyncDir(dirname(dest));
  }

  async discard(): Promise<void> {
    await this.close();
    await unlink(this.path).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }

  async close(): Promise<void> {
    const fh = this.fh;
    this.fh = undefined;
    await fh?.close();
  }
}
