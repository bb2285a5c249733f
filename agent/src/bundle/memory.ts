import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Keeps a streaming pass inside a fixed memory budget. Every chunk read or decrypted is a new
 * Buffer whose memory lives outside the JS heap; V8 only collects such buffers after tens of
 * megabytes of them have piled up, which alone would push the agent past its budget on a large
 * pack. A young-generation collection every few megabytes frees them at once and costs well under
 * a millisecond, because nothing else is young. If the runtime refuses, streaming still works;
 * it just uses more memory.
 */
type Gc = (options?: { type?: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;
let gc: Gc | null | undefined;

function collector(): Gc | null {
  if (gc === undefined) {
    try {
      setFlagsFromString('--expose-gc');
      gc = runInNewContext('gc') as Gc;
    } catch {
      gc = null;
    }
  }
  return gc;
}

export const RELEASE_EVERY_BYTES = 4 * 1024 * 1024;

/** Counts bytes streamed and runs a minor collection each time RELEASE_EVERY_BYTES have passed. */
export class GarbageReleaser {
  private since = 0;
  private count = 0;
  add(bytes: number): void {
    this.since += bytes;
    if (this.since >= RELEASE_EVERY_BYTES) {
      this.since = 0;
      // Every eighth time a full collection: buffers promoted while writes were in flight live
      // in the old generation, which a young-generation collection does not reach.
      collector()?.({ type: ++this.count % 8 === 0 ? 'major' : 'minor' });
    }
  }
}

/**
 * A full collection, for a long-running process after a burst of work (an install) and when idle:
 * V8 otherwise keeps the heap it grew for the burst, and the agent's budget counts resident memory.
 */
export function releaseMemory(): void {
  collector()?.({ type: 'major' });
}
