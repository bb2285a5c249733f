import { PackError } from './errors.js';
import type { SlotLender } from './slot-source.js';

/**
 * Pulls exact byte counts out of a stream of buffers (a file read stream, a socket), holding at
 * most one source buffer at a time: the pack is read in one pass and in constant memory.
 */
export class ByteReader {
  private readonly source: AsyncIterator<Buffer>;
  private head: Buffer = Buffer.alloc(0);
  private done = false;
  /** Bytes handed out so far: the offset of the next byte in the pack. */
  offset = 0;

  /**
   * @param lender set when the source lends its buffers (SlotFileSource): what stream() yields is
   *   then valid only until two more source buffers have been pulled, and readExact() copies.
   */
  constructor(
    source: AsyncIterable<Buffer | Uint8Array | string>,
    readonly lender: SlotLender | null = null,
  ) {
    const it = source[Symbol.asyncIterator]();
    this.source = {
      next: async () => {
        const r = await it.next();
        if (r.done) return r;
        const v = r.value;
        return { done: false, value: typeof v === 'string' ? Buffer.from(v) : Buffer.isBuffer(v) ? v : Buffer.from(v) };
      },
      return: async () => (it.return ? (await it.return(), { done: true, value: undefined }) : { done: true, value: undefined }),
    };
  }

  private async fill(): Promise<boolean> {
    while (this.head.length === 0) {
      if (this.done) return false;
      let r: IteratorResult<Buffer>;
      try {
        r = await this.source.next();
      } catch (e) {
        if (e instanceof PackError) throw e;
        const code = (e as NodeJS.ErrnoException).code ?? 'error';
        throw new PackError('PACK_UNREADABLE', `the pack cannot be read (${code})`, { cause: e });
      }
      if (r.done) {
        this.done = true;
        return false;
      }
      this.head = r.value;
    }
    return true;
  }

  /** Exactly n bytes, or PACK_TRUNCATED with `what` in the message. */
  async readExact(n: number, what: string): Promise<Buffer> {
    const parts: Buffer[] = [];
    let need = n;
    while (need > 0) {
      if (!(await this.fill())) throw new PackError('PACK_TRUNCATED', `the pack ends inside ${what}`);
      const take = Math.min(need, this.head.length);
      parts.push(this.head.subarray(0, take));
      this.head = this.head.subarray(take);
      need -= take;
    }
    this.offset += n;
    return parts.length === 1 && this.lender === null ? parts[0]! : Buffer.concat(parts, n);
  }

  /** Up to n bytes, or fewer when the stream ends first. */
  async readUpTo(n: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n && (await this.fill())) {
      const take = Math.min(n - got, this.head.length);
      parts.push(this.head.subarray(0, take));
      this.head = this.head.subarray(take);
      got += take;
    }
    this.offset += got;
    return Buffer.concat(parts, got);
  }

  /**
   * Streams exactly n bytes as they arrive, zero-copy: with a lender, each buffer is borrowed (see
   * the constructor).
   */
  async *stream(n: number, what: string): AsyncGenerator<Buffer> {
    let left = n;
    while (left > 0) {
      if (!(await this.fill())) throw new PackError('PACK_TRUNCATED', `the pack ends inside ${what}`);
      const take = Math.min(left, this.head.length);
      const out = this.head.subarray(0, take);
      this.head = this.head.subarray(take);
      left -= take;
      this.offset += take;
      yield out;
    }
  }

  async skip(n: number, what: string): Promise<void> {
    for await (const _ of this.stream(n, what)) {
      // discard
    }
  }

  /** Releases the source (closes the file) without reading the rest. */
  async close(): Promise<void> {
    this.done = true;
    await this.source.return?.();
  }
}
