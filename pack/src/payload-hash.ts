import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import type { SlotLender } from './slot-source.js';

/**
 * The sha256 of a payload's stored bytes, computed beside the decryption instead of before it.
 * SHA-256 is the most expensive step of verification and cannot be split across cores, so large
 * payloads are hashed on a worker thread while the main thread decrypts, parses and writes: the
 * stream is still read once. A chunk borrowed from the pack's own slot ring (slot-source.ts) is
 * hashed where it lies: the slot is pinned until the worker is done with it. Any other chunk is
 * copied into the hasher's own ring of slots. The worker hashes in the order chunks are posted.
 * Small payloads are hashed inline, where a thread would cost more than it saves.
 */
export interface PayloadHasher {
  update(chunk: Buffer): Promise<void> | void;
  digest(): Promise<string>;
  /** Stops a worker after a failure; idempotent. */
  dispose(): void;
}

export const WORKER_THRESHOLD = 8 * 1024 * 1024;
const SLOT_BYTES = 512 * 1024;
const SLOTS = 4;

class InlineHasher implements PayloadHasher {
  private readonly hash = createHash('sha256');
  update(chunk: Buffer): void {
    this.hash.update(chunk);
  }
  digest(): Promise<string> {
    return Promise.resolve(this.hash.digest('hex'));
  }
  dispose(): void {}
}

// Runs in the worker: hashes slots in the order they are posted, and frees each one.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { createHash } = require('node:crypto');
const { sab, slotBytes, lent } = workerData;
const hash = createHash('sha256');
parentPort.on('message', (m) => {
  if (m.op === 'update') {
    hash.update(new Uint8Array(sab, m.slot * slotBytes, m.len));
    parentPort.postMessage({ op: 'freed', slot: m.slot });
  } else if (m.op === 'lent') {
    hash.update(new Uint8Array(lent, m.offset, m.len));
    parentPort.postMessage({ op: 'returned' });
  } else if (m.op === 'end') {
    parentPort.postMessage({ op: 'digest', hex: hash.digest('hex') });
  }
});
`;

class WorkerHasher implements PayloadHasher {
  private readonly sab: SharedArrayBuffer;
  private readonly worker: Worker;
  /** Releases of lent slots, in the order they were posted (the worker answers in order). */
  private readonly lentOut: (() => void)[] = [];
  private readonly free: number[] = Array.from({ length: SLOTS }, (_, i) => i);
  private waitingForSlot: (() => void) | null = null;
  private digestReady: ((hex: string) => void) | null = null;
  private failure: Error | null = null;
  private onFailure: ((e: Error) => void) | null = null;

  constructor(private readonly lender: SlotLender | null) {
    // With a lender, the own ring only takes the odd chunk that is not borrowed: one small slot.
    this.sab = new SharedArrayBuffer(lender ? SLOT_BYTES : SLOT_BYTES * SLOTS);
    if (lender) this.free.splice(1);
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { sab: this.sab, slotBytes: SLOT_BYTES, lent: lender?.shared ?? null },
    });
    this.worker.unref();
    this.worker.on('message', (m: { op: 'freed'; slot: number } | { op: 'returned' } | { op: 'digest'; hex: string }) => {
      if (m.op === 'returned') {
        this.lentOut.shift()?.();
      } else if (m.op === 'freed') {
        this.free.push(m.slot);
        const wake = this.waitingForSlot;
        this.waitingForSlot = null;
        wake?.();
      } else {
        this.digestReady?.(m.hex);
      }
    });
    this.worker.on('error', (e: Error) => {
      this.failure = e;
      this.onFailure?.(e);
      this.waitingForSlot?.();
    });
  }

  private async slot(): Promise<number> {
    while (this.free.length === 0) {
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve) => (this.waitingForSlot = resolve));
    }
    if (this.failure) throw this.failure;
    return this.free.shift()!;
  }

  async update(chunk: Buffer): Promise<void> {
    if (this.lender !== null && chunk.buffer === this.lender.shared) {
      if (this.failure) throw this.failure;
      this.lentOut.push(this.lender.pin(chunk));
      this.worker.postMessage({ op: 'lent', offset: chunk.byteOffset, len: chunk.length });
      return;
    }
    for (let at = 0; at < chunk.length; at += SLOT_BYTES) {
      const part = chunk.subarray(at, Math.min(chunk.length, at + SLOT_BYTES));
      const slot = await this.slot();
      part.copy(Buffer.from(this.sab, slot * SLOT_BYTES, part.length));
      this.worker.postMessage({ op: 'update', slot, len: part.length });
    }
  }

  digest(): Promise<string> {
    return new Promise<string>((resolve, reject) => {
      if (this.failure) {
        reject(this.failure);
        return;
      }
      this.onFailure = reject;
      this.digestReady = (hex) => {
        resolve(hex);
        this.dispose();
      };
      this.worker.postMessage({ op: 'end' });
    });
  }

  dispose(): void {
    void this.worker.terminate();
    // A stopped worker answers nothing more: what it still held goes back to the lender.
    for (const release of this.lentOut.splice(0)) release();
  }
}

/** @param lender the pack's slot ring, when the payload streams out of one */
export function payloadHasher(storedBytes: number, lender: SlotLender | null = null): PayloadHasher {
  return storedBytes >= WORKER_THRESHOLD ? new WorkerHasher(lender) : new InlineHasher();
}
