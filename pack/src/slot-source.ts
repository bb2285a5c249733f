import { close, open, read } from 'node:fs';

/**
 * Reads a pack file into a fixed ring of slots in one SharedArrayBuffer, ahead of the reader, in
 * libuv's thread pool. Every byte of the pack is read once, into memory that is reused: no fresh
 * buffer per read for the collector to find later, and the hashing worker reads the same slot the
 * main thread decrypts from, instead of a copy of it (payload-hash.ts).
 *
 * The buffers it yields are borrowed. A buffer stays valid until the consumer has pulled two more
 * (so a consumer may keep the tail of the previous buffer while it takes the next, as the AEAD
 * chunker does), and longer while it is pinned (a worker still hashing it). Anything kept longer
 * must be copied: ByteReader copies what it hands out whole, and extraction copies plain payload
 * bytes before they go to asynchronous writes.
 */
export const SLOT_BYTES = 1024 * 1024;
export const SLOTS = 8;

/** What a consumer needs to use borrowed buffers without copying them. */
export interface SlotLender {
  readonly shared: SharedArrayBuffer;
  /** Keeps the slot under `view` from being refilled until the returned function is called. */
  pin(view: Uint8Array): () => void;
}

type Slot = { pins: number; consumed: boolean; busy: boolean };

export class SlotFileSource implements AsyncIterable<Buffer>, SlotLender {
  readonly shared = new SharedArrayBuffer(SLOT_BYTES * SLOTS);
  private readonly slots: Slot[] = Array.from({ length: SLOTS }, () => ({ pins: 0, consumed: true, busy: false }));
  private fd: Promise<number> | null = null;
  /** File offset of the next read to issue, and its sequence number. */
  private position = 0;
  private issued = 0;
  /** Sequence number of the next buffer to hand out. */
  private handed = 0;
  /** Reads issued and not yet handed out, by sequence number: each resolves to the bytes read. */
  private readonly reads = new Map<number, Promise<number>>();
  private ended = false;
  private closed = false;
  private wakeSlotFree: (() => void) | null = null;

  constructor(private readonly path: string) {}

  pin(view: Uint8Array): () => void {
    const slot = this.slotOf(view);
    slot.pins += 1;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      slot.pins -= 1;
      this.maybeFree(slot);
    };
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer> {
    return {
      next: () => this.next(),
      return: async () => {
        await this.close();
        return { done: true, value: undefined };
      },
    };
  }

  private slotOf(view: Uint8Array): Slot {
    if (view.buffer !== this.shared) throw new Error('not a buffer of this source');
    return this.slots[Math.floor(view.byteOffset / SLOT_BYTES)]!;
  }

  private maybeFree(slot: Slot): void {
    if (slot.pins === 0 && slot.consumed && slot.busy) {
      slot.busy = false;
      const wake = this.wakeSlotFree;
      this.wakeSlotFree = null;
      wake?.();
      this.prefetch();
    }
  }

  private openFd(): Promise<number> {
    this.fd ??= new Promise((resolve, reject) => open(this.path, 'r', (e, fd) => (e ? reject(e) : resolve(fd))));
    return this.fd;
  }

  /** Issues reads into every free slot, in order, until the end of the file is known. */
  private prefetch(): void {
    while (!this.ended && !this.closed) {
      const seq = this.issued;
      const slot = this.slots[seq % SLOTS]!;
      if (slot.busy) return;
      slot.busy = true;
      slot.consumed = false;
      const at = this.position;
      this.position += SLOT_BYTES;
      this.issued += 1;
      const view = new Uint8Array(this.shared, (seq % SLOTS) * SLOT_BYTES, SLOT_BYTES);
      const done = this.openFd().then(
        (fd) => new Promise<number>((resolve, reject) => read(fd, view, 0, SLOT_BYTES, at, (e, n) => (e ? reject(e) : resolve(n)))),
      );
      // A short read ends the file: nothing after it is issued (a file growing meanwhile is not read).
      done.then(
        (n) => {
          if (n < SLOT_BYTES) this.ended = true;
        },
        () => {
          this.ended = true;
        },
      );
      this.reads.set(seq, done);
      // One read in flight at a time until the first one tells whether the file is that short.
      if (seq === 0) return;
    }
  }

  private async next(): Promise<IteratorResult<Buffer>> {
    const seq = this.handed;
    // The buffer handed out two pulls ago is no longer the consumer's.
    if (seq >= 2) {
      const old = this.slots[(seq - 2) % SLOTS]!;
      old.consumed = true;
      this.maybeFree(old);
    }
    if (this.closed) return { done: true, value: undefined };
    // One turn of the event loop per buffer (about a megabyte): a consumer that decrypts and
    // writes synchronously would otherwise only ever run microtasks, and the worker's "done with
    // that slot" messages and the finished reads would wait until the ring ran dry.
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.prefetch();
    while (!this.reads.has(seq)) {
      if (this.ended || this.closed) return this.atEnd();
      await new Promise<void>((resolve) => (this.wakeSlotFree = resolve));
      this.prefetch();
    }
    const pending = this.reads.get(seq)!;
    this.reads.delete(seq);
    const n = await pending;
    this.handed += 1;
    const slot = this.slots[seq % SLOTS]!;
    if (n === 0) {
      slot.consumed = true;
      this.maybeFree(slot);
      return this.atEnd();
    }
    if (seq === 0) this.prefetch();
    return { done: false, value: Buffer.from(this.shared, (seq % SLOTS) * SLOT_BYTES, n) };
  }

  /** The end of the file closes it, like a read stream, whether or not the reader closes too. */
  private async atEnd(): Promise<IteratorResult<Buffer>> {
    await this.close();
    return { done: true, value: undefined };
  }

  /** Stops reading; waits for reads in flight before the file is closed. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wakeSlotFree?.();
    await Promise.allSettled(this.reads.values());
    this.reads.clear();
    if (this.fd) {
      const fd = await this.fd.catch(() => null);
      if (fd !== null) await new Promise<void>((resolve) => close(fd, () => resolve()));
    }
  }
}
