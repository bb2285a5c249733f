import { Worker } from 'node:worker_threads';
import { BundleError } from './errors.js';
import { AEAD_CHUNK_PLAIN, AEAD_CHUNK_STORED, AEAD_TAG_BYTES } from './format.js';
import type { SlotLender } from './slot-source.js';

/**
 * Opens a large sealed payload (stream-aead.ts, the same STREAM construction) on a worker thread,
 * straight out of the pack's slot ring (slot-source.ts), while the hash worker (payload-hash.ts)
 * reads the same slots and the main thread parses the tar and writes the files. On the main thread
 * decryption cost a third of the pass, and every 64 KiB chunk it returned was a new buffer to
 * collect. Here the worker writes the plaintext into a small ring of its own, one megabyte slot
 * at a time, and the main thread writes from there: the main thread allocates nothing per chunk.
 *
 * The worker knows the stored size from the signed manifest, so it knows which chunk is the final
 * one without waiting for the end. A chunk that does not authenticate stops it: everything before
 * that chunk has been handed out, then `next()` throws DECRYPT_FAILED naming the chunk.
 */
const OUT_SLOT_BYTES = 16 * AEAD_CHUNK_PLAIN;
const OUT_SLOTS = 4;

// Runs in the worker. Input arrives as views of the lent ring, in stream order; each is handed
// back ('returned') once every byte of it is decrypted or copied into the carry buffer.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createDecipheriv } = require('node:crypto');
const { setFlagsFromString } = require('node:v8');
const { runInNewContext } = require('node:vm');
const { lent, out, outSlotBytes, outSlots, key, storedSize, chunkStored, chunkPlain, tagBytes } = workerData;
// Each decrypted chunk is a fresh buffer outside the heap; without a collection every few
// megabytes they pile up far past the agent's memory budget (memory.ts says why).
let collect = null;
try { setFlagsFromString('--expose-gc'); collect = runInNewContext('gc'); } catch {}
const outBytes = Buffer.from(out);
const queue = [];
const free = Array.from({ length: outSlots }, (_, i) => i);
const carry = Buffer.alloc(chunkStored);
const nonce = Buffer.alloc(12);
let carryLen = 0, consumed = 0, index = 0, slot = -1, fill = 0, sinceGc = 0, stopped = false;

/** Decrypts one stored chunk into the current output slot; false when it does not authenticate. */
function open(chunk) {
  const final = consumed + chunk.length === storedSize;
  nonce.fill(0);
  nonce.writeUInt32BE(Math.floor(index / 2 ** 32), 3);
  nonce.writeUInt32BE(index >>> 0, 7);
  nonce[11] = final ? 1 : 0;
  let body;
  try {
    const d = createDecipheriv('aes-256-gcm', key, nonce);
    d.setAuthTag(chunk.subarray(chunk.length - tagBytes));
    body = d.update(chunk.subarray(0, chunk.length - tagBytes));
    d.final();
  } catch {
    return false;
  }
  body.copy(outBytes, slot * outSlotBytes + fill);
  fill += body.length;
  consumed += chunk.length;
  index += 1;
  sinceGc += chunk.length;
  if (sinceGc >= 4 * 1024 * 1024 && collect) { sinceGc = 0; collect({ type: 'minor' }); }
  if (fill + chunkPlain > outSlotBytes || consumed === storedSize) {
    parentPort.postMessage({ op: 'plain', slot, len: fill, final: consumed === storedSize });
    slot = -1;
  }
  return true;
}

function pump() {
  while (queue.length > 0 && !stopped) {
    if (slot === -1) {
      if (free.length === 0) return;
      slot = free.shift();
      fill = 0;
    }
    const q = queue[0];
    const want = Math.min(chunkStored, storedSize - consumed);
    if (want < tagBytes) return fail('chunk ' + index + ' is shorter than its tag');
    let chunk = null;
    if (carryLen === 0 && q.len - q.at >= want) {
      chunk = q.view.subarray(q.at, q.at + want);
      q.at += want;
    } else {
      const take = Math.min(want - carryLen, q.len - q.at);
      q.view.copy(carry, carryLen, q.at, q.at + take);
      carryLen += take;
      q.at += take;
      if (carryLen === want) {
        chunk = carry.subarray(0, want);
        carryLen = 0;
      }
    }
    if (chunk !== null && !open(chunk)) {
      return fail('chunk ' + index + ' failed authentication (tampered, reordered, truncated or wrong key)');
    }
    if (q.at === q.len) {
      queue.shift();
      parentPort.postMessage({ op: 'returned' });
    }
  }
}

function fail(message) {
  stopped = true;
  parentPort.postMessage({ op: 'failed', message });
}

parentPort.on('message', (m) => {
  if (m.op === 'lent') {
    queue.push({ view: Buffer.from(lent, m.offset, m.len), len: m.len, at: 0 });
  } else if (m.op === 'free') {
    free.push(m.slot);
  }
  pump();
});
`;

type FromWorker = { op: 'plain'; slot: number; len: number; final: boolean } | { op: 'returned' } | { op: 'failed'; message: string };

export class WorkerOpener {
  private readonly out = new SharedArrayBuffer(OUT_SLOT_BYTES * OUT_SLOTS);
  private readonly worker: Worker;
  /** Releases of lent slots, in the order they were posted (the worker answers in order). */
  private readonly lentOut: (() => void)[] = [];
  private readonly ready: { slot: number; len: number }[] = [];
  /** The slot the consumer holds: handed back to the worker on the next call to next(). */
  private held = -1;
  private finalSeen = false;
  private failure: Error | null = null;
  private wake: (() => void) | null = null;
  private disposed = false;

  constructor(
    key: Buffer,
    storedSize: number,
    private readonly lender: SlotLender,
  ) {
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: {
        lent: lender.shared,
        out: this.out,
        outSlotBytes: OUT_SLOT_BYTES,
        outSlots: OUT_SLOTS,
        key,
        storedSize,
        chunkStored: AEAD_CHUNK_STORED,
        chunkPlain: AEAD_CHUNK_PLAIN,
        tagBytes: AEAD_TAG_BYTES,
      },
    });
    this.worker.unref();
    this.worker.on('message', (m: FromWorker) => {
      if (m.op === 'returned') this.lentOut.shift()?.();
      else if (m.op === 'plain') {
        this.ready.push({ slot: m.slot, len: m.len });
        if (m.final) this.finalSeen = true;
      }
      else this.fail(new BundleError('DECRYPT_FAILED', m.message));
      this.wakeUp();
    });
    this.worker.on('error', (e: Error) => this.fail(e));
  }

  /** Hands the worker a buffer borrowed from the lender; it stays pinned until the worker is done. */
  feed(chunk: Buffer): void {
    if (this.failure) throw this.failure;
    if (chunk.buffer !== this.lender.shared) throw new Error('WorkerOpener reads only buffers lent by its slot ring');
    this.lentOut.push(this.lender.pin(chunk));
    this.worker.postMessage({ op: 'lent', offset: chunk.byteOffset, len: chunk.length });
  }

  /**
   * Stops the stream with `e` (the reader failed, or the consumer gave up): a pending or later
   * next() throws it.
   */
  fail(e: Error): void {
    this.failure ??= e;
    this.wakeUp();
  }

  /**
   * The next run of plaintext, or null after the final chunk. The buffer is a view of the
   * worker's ring and is valid until the following call: copy what must live longer.
   */
  async next(): Promise<Buffer | null> {
    if (this.held !== -1) {
      this.worker.postMessage({ op: 'free', slot: this.held });
      this.held = -1;
    }
    for (;;) {
      // What the worker decrypted before a failure is still handed out first: the failure names
      // the first chunk that did not authenticate.
      const r = this.ready.shift();
      if (r !== undefined) {
        this.held = r.slot;
        return Buffer.from(this.out, r.slot * OUT_SLOT_BYTES, r.len);
      }
      if (this.failure) throw this.failure;
      if (this.finalSeen) return null;
      await new Promise<void>((resolve) => (this.wake = resolve));
    }
  }

  private wakeUp(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Stops the worker; what it still held goes back to the lender. Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    void this.worker.terminate();
    for (const release of this.lentOut.splice(0)) release();
    this.fail(new Error('the decryption worker was stopped'));
  }
}
