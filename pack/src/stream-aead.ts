import { createCipheriv, createDecipheriv, hkdfSync } from 'node:crypto';
import { PackError } from './errors.js';
import { AEAD_CHUNK_PLAIN, AEAD_CHUNK_STORED, AEAD_TAG_BYTES } from './format.js';

/**
 * The STREAM construction (as in `age`), with AES-256-GCM over 64 KiB chunks. Each payload has its
 * own key, derived from the pack's content key and a per-payload salt with HKDF, so the nonce can
 * be a plain counter: 11 bytes of big-endian chunk index, then one flag byte that is 1 on the last
 * chunk only. Swapping, dropping or appending chunks changes a nonce and fails authentication at
 * the first chunk that is out of place; cutting the stream short leaves a last chunk without the
 * final flag, which fails too.
 */
export function derivePayloadKey(contentKey: Uint8Array, salt: Uint8Array, entryName: string): Buffer {
  return Buffer.from(hkdfSync('sha256', contentKey, salt, Buffer.from(`sonde-payload-v1\0${entryName}`), 32));
}

function nonce(index: number, final: boolean): Buffer {
  const n = Buffer.alloc(12);
  n.writeUInt32BE(Math.floor(index / 2 ** 32), 3);
  n.writeUInt32BE(index >>> 0, 7);
  n[11] = final ? 1 : 0;
  return n;
}

/** Collects input into whole chunks without copying when the input is already aligned. */
class Chunker {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  constructor(private readonly chunkBytes: number) {}

  /** Whole chunks available from `data`, keeping back the last one (it may be the final chunk). */
  *take(data: Buffer, keepLast: boolean): Generator<Buffer> {
    let buf = data;
    if (this.pendingBytes > 0) {
      const need = this.chunkBytes - this.pendingBytes;
      if (buf.length < need || (keepLast && buf.length === need)) {
        this.pending.push(buf);
        this.pendingBytes += buf.length;
        return;
      }
      this.pending.push(buf.subarray(0, need));
      yield Buffer.concat(this.pending, this.chunkBytes);
      this.pending = [];
      this.pendingBytes = 0;
      buf = buf.subarray(need);
    }
    while (buf.length > this.chunkBytes || (!keepLast && buf.length === this.chunkBytes)) {
      yield buf.subarray(0, this.chunkBytes);
      buf = buf.subarray(this.chunkBytes);
    }
    if (buf.length > 0) {
      this.pending.push(buf);
      this.pendingBytes = buf.length;
    }
  }

  rest(): Buffer {
    const out = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    return out;
  }
}

/** Seals plaintext pushed in any slicing into the stored chunk stream. */
export class StreamSealer {
  private index = 0;
  private readonly chunker = new Chunker(AEAD_CHUNK_PLAIN);
  constructor(private readonly key: Buffer) {}

  push(data: Buffer): Buffer[] {
    const out: Buffer[] = [];
    // Keep the last whole chunk back: only end() knows whether it is the final one.
    for (const chunk of this.chunker.take(data, true)) out.push(this.seal(chunk, false));
    return out;
  }

  end(): Buffer {
    return this.seal(this.chunker.rest(), true);
  }

  private seal(plain: Buffer, final: boolean): Buffer {
    const c = createCipheriv('aes-256-gcm', this.key, nonce(this.index++, final));
    const body = c.update(plain);
    c.final();
    return Buffer.concat([body, c.getAuthTag()]);
  }
}

/**
 * Opens the stored chunk stream of a payload whose stored size is known from the signed manifest.
 * Throws DECRYPT_FAILED at the first chunk that does not authenticate.
 */
export class StreamOpener {
  private index = 0;
  private consumed = 0;
  private readonly chunker = new Chunker(AEAD_CHUNK_STORED);
  constructor(
    private readonly key: Buffer,
    private readonly storedSize: number,
  ) {}

  push(data: Buffer): Buffer[] {
    const out: Buffer[] = [];
    for (const chunk of this.chunker.take(data, true)) out.push(this.open(chunk, false));
    return out;
  }

  end(): Buffer {
    const last = this.chunker.rest();
    const plain = this.open(last, true);
    if (this.consumed !== this.storedSize) {
      throw new PackError('DECRYPT_FAILED', `sealed payload ended after ${this.consumed} of ${this.storedSize} bytes`);
    }
    return plain;
  }

  private open(chunk: Buffer, final: boolean): Buffer {
    if (chunk.length < AEAD_TAG_BYTES) {
      throw new PackError('DECRYPT_FAILED', `chunk ${this.index} is shorter than its tag`);
    }
    const at = this.index++;
    this.consumed += chunk.length;
    try {
      const d = createDecipheriv('aes-256-gcm', this.key, nonce(at, final));
      d.setAuthTag(chunk.subarray(chunk.length - AEAD_TAG_BYTES));
      const body = d.update(chunk.subarray(0, chunk.length - AEAD_TAG_BYTES));
      d.final();
      return body;
    } catch (e) {
      throw new PackError('DECRYPT_FAILED', `chunk ${at} failed authentication (tampered, reordered, truncated or wrong key)`, {
        cause: e,
      });
    }
  }
}
