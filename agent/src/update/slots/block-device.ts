import { createHash } from 'node:crypto';
import { open, readFile, realpath, stat } from 'node:fs/promises';
import { UpdateError } from '../errors.js';

/**
 * A block slot's device (docs/slots.md): is it one, is it free to write (not mounted, so never
 * the booted root), is it large enough; writing a system image into it and reading it back.
 * The image arrives as the plaintext stream of the pack's verify/decrypt pass (pack/src/extract.ts);
 * nothing here trusts it: the read-back is held against the image's signed sha256.
 */
export interface DeviceFacts {
  readonly path: string;
  readonly rdev: number;
  readonly bytes: number;
}

function majorMinor(rdev: number): string {
  // Linux's dev_t encoding (glibc's gnu_dev_major/minor).
  const high = Math.floor(rdev / 2 ** 32);
  const low = rdev % 2 ** 32;
  const major = ((low >>> 8) & 0xfff) | ((high & 0xfffff000) >>> 0);
  const minor = (low & 0xff) | ((low >>> 12) & 0xfff00);
  return `${major}:${minor}`;
}

export async function deviceFacts(path: string): Promise<DeviceFacts> {
  let st;
  try {
    st = await stat(path);
  } catch (e) {
    throw new UpdateError('SLOT_DEVICE_INVALID', `slot device ${path} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!st.isBlockDevice()) throw new UpdateError('SLOT_DEVICE_INVALID', `slot device ${path} is not a block device`);
  const sectors = Number((await readFile(`/sys/dev/block/${majorMinor(st.rdev)}/size`, 'utf8')).trim());
  return { path: await realpath(path), rdev: st.rdev, bytes: sectors * 512 };
}

/**
 * Mounted file systems whose device is `dev` (by device number, so /dev/root, a symlink or a loop
 * device's other name cannot hide one): the booted root is always among them for the booted slot.
 */
export async function mountsOf(dev: DeviceFacts, mountinfo = '/proc/self/mountinfo'): Promise<string[]> {
  const mm = majorMinor(dev.rdev);
  const points: string[] = [];
  for (const line of (await readFile(mountinfo, 'utf8')).split('\n')) {
    const f = line.split(' ');
    if (f[2] === mm) points.push(f[4]!.replace(/\\040/g, ' '));
  }
  return points;
}

/** Refuses a write that would touch a mounted slot, or an image larger than the device. */
export async function checkWritable(path: string, imageBytes: number, slot: string): Promise<DeviceFacts> {
  const dev = await deviceFacts(path);
  const mounted = await mountsOf(dev);
  if (mounted.length > 0) throw new UpdateError('SLOT_DEVICE_BUSY', `slot ${slot} (${path}) is mounted at ${mounted.join(', ')}: a mounted or booted slot is never written`);
  if (imageBytes > dev.bytes) throw new UpdateError('SLOT_DEVICE_TOO_SMALL', `slot ${slot} (${path}) holds ${dev.bytes} bytes; the system image is ${imageBytes}`);
  return dev;
}

/** Streams `chunks` into the device from its first byte, then fdatasync: returns the bytes written. */
export async function writeImage(path: string, chunks: AsyncIterable<Buffer>, limit: number): Promise<number> {
  const fh = await open(path, 'r+');
  let written = 0;
  try {
    for await (const chunk of chunks) {
      if (written + chunk.length > limit) throw new UpdateError('SLOT_DEVICE_TOO_SMALL', `the system image runs past the ${limit} bytes its slot holds`);
      let off = 0;
      while (off < chunk.length) {
        const { bytesWritten } = await fh.write(chunk, off, chunk.length - off, written + off);
        off += bytesWritten;
      }
      written += chunk.length;
    }
    await fh.datasync();
  } finally {
    await fh.close();
  }
  return written;
}

/** The sha256 of the device's first `bytes` bytes, read back from the device (after the page cache was flushed by datasync). */
export async function readBack(path: string, bytes: number): Promise<string> {
  const fh = await open(path, 'r');
  const hash = createHash('sha256');
  const buf = Buffer.allocUnsafe(1 << 20);
  try {
    let pos = 0;
    while (pos < bytes) {
      const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, bytes - pos), pos);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
    if (pos < bytes) throw new UpdateError('SLOT_VERIFY_FAILED', `slot device ${path} ended after ${pos} of ${bytes} bytes`);
  } finally {
    await fh.close();
  }
  return hash.digest('hex');
}
