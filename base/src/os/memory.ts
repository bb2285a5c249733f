import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Keeps a streaming pass inside a fixed memory budget. Every decrypted chunk (and every chunk read
 * from a source that does not lend reused buffers, slot-source.ts) is a new Buffer whose memory
 * lives outside the JS heap; V8 only collects such buffers after tens of megabytes of them have
 * piled up, which alone would push the agent past its budget on a large pack. A young-generation
 * collection every few megabytes frees them: about 1.5 ms each in `sonde verify` of a 256 MiB
 * pack (64 calls, 85-117 ms in all), which is what the budget costs. If the runtime refuses,
 * streaming still works; it just uses more memory.
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
/**
 * What one extracted entry counts for, on top of its bytes: a payload of many small files makes
 * garbage per file (paths, strings, handles) while its byte count stays low. Without this, the
 * 2,000 small files at the end of the benchmark's payload grew `sonde verify` by 6 MiB.
 */
export const ENTRY_GARBAGE_BYTES = 16 * 1024;

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
 *
 * gc() without options. Called as gc({ type: 'major' }) on this Node (V8 11.3) it did not always
 * free what was unreachable: a 20 MiB array dropped just before was sometimes still counted after
 * the call and 500 ms later, in the interpreter the daemon runs in (sonde.ts), never with gc().
 * In the daemon, over 500 installs its used heap climbed from 11.7 to 18.3 MiB while the live heap
 * stayed at 11.0 MiB (bench/agent-idle, heap snapshots at cycles 100 and 300).
 */
export function releaseMemory(): void {
  collector()?.();
}
