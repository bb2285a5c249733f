import { PackError } from './errors.js';

/**
 * The outer container's tar headers (POSIX ustar). Sonde writes these itself and reads them
 * strictly: regular files only, a valid checksum, the ustar magic, no long-name extensions (all
 * entry names are short and known in advance). Sizes past 8 GiB use the base-256 encoding.
 */
export const BLOCK = 512;

export interface OuterHeader {
  readonly name: string;
  readonly size: number;
}

function checksum(block: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return sum;
}

function writeOctal(block: Buffer, value: number, offset: number, length: number): void {
  block.write(value.toString(8).padStart(length - 1, '0') + '\0', offset, length, 'ascii');
}

function writeSize(block: Buffer, size: number): void {
  if (size < 8 ** 11) {
    writeOctal(block, size, 124, 12);
    return;
  }
  // base-256: high bit set in the first byte, big-endian value in the rest.
  block.fill(0, 124, 136);
  block[124] = 0x80;
  let v = BigInt(size);
  for (let i = 135; i > 124; i--) {
    block[i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

export function encodeHeader(name: string, size: number, mtime = 0): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar entry name too long: ${name}`);
  const block = Buffer.alloc(BLOCK);
  block.write(name, 0, 100, 'utf8');
  writeOctal(block, 0o644, 100, 8);
  writeOctal(block, 0, 108, 8);
  writeOctal(block, 0, 116, 8);
  writeSize(block, size);
  writeOctal(block, mtime, 136, 12);
  block[156] = 0x30; // '0': regular file
  block.write('ustar\0', 257, 6, 'ascii');
  block.write('00', 263, 2, 'ascii');
  block.write('root', 265, 32, 'ascii');
  block.write('root', 297, 32, 'ascii');
  const sum = checksum(block);
  block.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
  return block;
}

export function paddingFor(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

export function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

function readOctal(block: Buffer, offset: number, length: number, field: string): number {
  const text = block.toString('ascii', offset, offset + length).replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (!/^[0-7]+$/.test(text)) throw new PackError('PACK_FORMAT', `tar header field ${field} is not octal`);
  return parseInt(text, 8);
}

function readSize(block: Buffer): number {
  if ((block[124]! & 0x80) !== 0) {
    if (block[124] !== 0x80) throw new PackError('PACK_FORMAT', 'tar size field uses a negative base-256 value');
    let v = 0n;
    for (let i = 125; i < 136; i++) v = (v << 8n) | BigInt(block[i]!);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new PackError('PACK_FORMAT', 'tar entry size is too large');
    return Number(v);
  }
  return readOctal(block, 124, 12, 'size');
}

/** Parses one header block; the caller has already treated an all-zero block as the end. */
export function decodeHeader(block: Buffer): OuterHeader {
  const stored = readOctal(block, 148, 8, 'checksum');
  if (stored !== checksum(block)) throw new PackError('PACK_FORMAT', 'tar header checksum mismatch');
  if (block.toString('ascii', 257, 263) !== 'ustar\0' || block.toString('ascii', 263, 265) !== '00') {
    throw new PackError('PACK_FORMAT', 'tar header is not POSIX ustar');
  }
  const type = block[156];
  if (type !== 0x30 && type !== 0) throw new PackError('PACK_FORMAT', `unexpected tar entry type ${String.fromCharCode(type ?? 0)} in the pack`);
  const nameEnd = block.indexOf(0, 0);
  const name = block.toString('utf8', 0, nameEnd === -1 || nameEnd > 100 ? 100 : nameEnd);
  const prefixEnd = block.indexOf(0, 345);
  const prefix = block.toString('utf8', 345, prefixEnd === -1 || prefixEnd > 500 ? 500 : prefixEnd);
  if (prefix !== '') throw new PackError('PACK_FORMAT', 'pack entries never use the ustar prefix field');
  const size = readSize(block);
  // Sonde writes every outer header with encodeHeader, so a (name, size) has one encoding. Fields
  // read leniently above (blanks in the checksum, unread mode or mtime) would otherwise let bytes
  // of a header change while the pack still verifies.
  if (Buffer.byteLength(name) > 100 || !block.equals(encodeHeader(name, size))) {
    throw new PackError('PACK_FORMAT', `the tar header of ${JSON.stringify(name)} is not in the form Sonde writes`);
  }
  return { name, size };
}
