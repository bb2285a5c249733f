import { PackError } from './errors.js';
import { BLOCK, isZeroBlock, paddingFor } from './tar-header.js';
import { assertNever } from '../../base/src/errors/sonde-error.js';

/**
 * A strict, streaming reader for the tar inside a payload. It is written for hostile input: it
 * never guesses a compression (the manifest says which one was used), understands exactly the
 * header forms that real tar writers emit for regular archives (POSIX ustar with pax `x`
 * records, GNU long names), and refuses everything else. It hands entries to a sink and waits
 * for the sink, so a slow disk slows the reader instead of filling memory.
 */
export type InnerEntryType = 'file' | 'directory' | 'symlink' | 'hardlink';

export interface InnerHeader {
  readonly path: string;
  readonly type: InnerEntryType;
  readonly size: number;
  readonly mode: number;
  readonly linkpath: string;
}

export interface InnerSink {
  entry(header: InnerHeader): Promise<void> | void;
  data(chunk: Buffer): Promise<void> | void;
  entryEnd(): Promise<void> | void;
}

const MAX_META_BYTES = 1024 * 1024;

type State =
  | { kind: 'header' }
  | { kind: 'data'; left: number; pad: number }
  | { kind: 'meta'; left: number; pad: number; type: 'pax' | 'longname' | 'longlink'; parts: Buffer[] }
  | { kind: 'pad'; left: number }
  | { kind: 'eof' };

function field(block: Buffer, offset: number, length: number): string {
  const end = block.indexOf(0, offset);
  return block.toString('utf8', offset, end === -1 || end > offset + length ? offset + length : end);
}

function octal(block: Buffer, offset: number, length: number, name: string): number {
  if ((block[offset]! & 0x80) !== 0) {
    if (block[offset] !== 0x80) throw new PackError('PAYLOAD_TAR_INVALID', `negative ${name} in a payload tar header`);
    let v = 0n;
    for (let i = offset + 1; i < offset + length; i++) v = (v << 8n) | BigInt(block[i]!);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new PackError('PAYLOAD_TAR_INVALID', `${name} too large in a payload tar header`);
    return Number(v);
  }
  const text = block.toString('ascii', offset, offset + length).replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw new PackError('PAYLOAD_TAR_INVALID', `${name} is not a number in a payload tar header`);
  return parseInt(text, 8);
}

function checksumOk(block: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return octal(block, 148, 8, 'checksum') === sum;
}

/** Parses pax extended header records: "LEN key=value\n" repeated. */
function parsePax(data: Buffer): Map<string, string> {
  const out = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    if (space === -1) throw new PackError('PAYLOAD_TAR_INVALID', 'malformed pax record');
    const len = Number(data.toString('ascii', at, space));
    if (!Number.isSafeInteger(len) || len <= space - at + 1 || at + len > data.length || data[at + len - 1] !== 0x0a) {
      throw new PackError('PAYLOAD_TAR_INVALID', 'malformed pax record');
    }
    const record = data.toString('utf8', space + 1, at + len - 1);
    const eq = record.indexOf('=');
    if (eq <= 0) throw new PackError('PAYLOAD_TAR_INVALID', 'malformed pax record');
    out.set(record.slice(0, eq), record.slice(eq + 1));
    at += len;
  }
  return out;
}

export class PayloadTarReader {
  private state: State = { kind: 'header' };
  private pending: Buffer | null = null;
  private pax: Map<string, string> | null = null;
  private longName: string | null = null;
  private longLink: string | null = null;
  /** Bytes of the tar consumed so far. */
  bytes = 0;

  constructor(private readonly sink: InnerSink) {}

  async write(input: Buffer): Promise<void> {
    this.bytes += input.length;
    let buf = input;
    while (buf.length > 0) {
      const s = this.state;
      switch (s.kind) {
        case 'data': {
          const take = Math.min(s.left, buf.length);
          s.left -= take;
          await this.sink.data(buf.subarray(0, take));
          buf = buf.subarray(take);
          if (s.left === 0) {
            await this.sink.entryEnd();
            this.state = s.pad > 0 ? { kind: 'pad', left: s.pad } : { kind: 'header' };
          }
          break;
        }
        case 'meta': {
          const take = Math.min(s.left, buf.length);
          s.parts.push(Buffer.from(buf.subarray(0, take)));
          s.left -= take;
          buf = buf.subarray(take);
          if (s.left === 0) {
            this.finishMeta(s.type, Buffer.concat(s.parts));
            this.state = s.pad > 0 ? { kind: 'pad', left: s.pad } : { kind: 'header' };
          }
          break;
        }
        case 'pad': {
          // Padding after an entry carries nothing; like every tar reader, skip it unread.
          const take = Math.min(s.left, buf.length);
          s.left -= take;
          buf = buf.subarray(take);
          if (s.left === 0) this.state = { kind: 'header' };
          break;
        }
        case 'eof': {
          if (!isZeroBlock(buf)) throw new PackError('PAYLOAD_TAR_INVALID', 'data after the end of the payload tar');
          buf = buf.subarray(buf.length);
          break;
        }
        case 'header': {
          let block: Buffer;
          if (this.pending) {
            const need = BLOCK - this.pending.length;
            if (buf.length < need) {
              this.pending = Buffer.concat([this.pending, buf]);
              buf = buf.subarray(buf.length);
              break;
            }
            block = Buffer.concat([this.pending, buf.subarray(0, need)]);
            this.pending = null;
            buf = buf.subarray(need);
          } else if (buf.length < BLOCK) {
            this.pending = Buffer.from(buf);
            buf = buf.subarray(buf.length);
            break;
          } else {
            block = buf.subarray(0, BLOCK);
            buf = buf.subarray(BLOCK);
          }
          await this.header(block);
          break;
        }
        default:
          return assertNever(s, 'tar parser state');
      }
    }
  }

  /** The tar must have ended with its end-of-archive block, and nothing may be left half-read. */
  end(): void {
    if (this.state.kind !== 'eof' || (this.pending !== null && !isZeroBlock(this.pending))) {
      throw new PackError('PAYLOAD_TAR_INVALID', 'the payload tar is cut short (no end-of-archive marker)');
    }
  }

  private finishMeta(type: 'pax' | 'longname' | 'longlink', data: Buffer): void {
    if (type === 'pax') this.pax = parsePax(data);
    else {
      const end = data.indexOf(0);
      const text = data.toString('utf8', 0, end === -1 ? data.length : end);
      if (type === 'longname') this.longName = text;
      else this.longLink = text;
    }
  }

  private async header(block: Buffer): Promise<void> {
    if (isZeroBlock(block)) {
      if (this.pax || this.longName || this.longLink) throw new PackError('PAYLOAD_TAR_INVALID', 'extended header without an entry');
      this.state = { kind: 'eof' };
      return;
    }
    if (!checksumOk(block)) throw new PackError('PAYLOAD_TAR_INVALID', 'payload tar header checksum mismatch');
    const magic = block.toString('ascii', 257, 265);
    const ustar = magic === 'ustar\u000000';
    if (!ustar && magic !== 'ustar  \0') throw new PackError('PAYLOAD_TAR_INVALID', 'payload tar header is neither POSIX nor GNU tar');
    const flag = String.fromCharCode(block[156]!);
    let size = octal(block, 124, 12, 'size');
    const metaType = flag === 'x' ? 'pax' : flag === 'L' ? 'longname' : flag === 'K' ? 'longlink' : null;
    if (metaType) {
      if (size > MAX_META_BYTES) throw new PackError('PAYLOAD_TAR_INVALID', 'extended header too large');
      this.state = size === 0 ? { kind: 'header' } : { kind: 'meta', left: size, pad: paddingFor(size), type: metaType, parts: [] };
      if (size === 0) this.finishMeta(metaType, Buffer.alloc(0));
      return;
    }
    let type: InnerEntryType;
    switch (flag) {
      case '0':
      case '\0':
        type = 'file';
        break;
      case '5':
        type = 'directory';
        break;
      case '2':
        type = 'symlink';
        break;
      case '1':
        type = 'hardlink';
        break;
      case 'g':
        throw new PackError('PAYLOAD_TAR_INVALID', 'global pax headers are not allowed in a payload');
      case '3':
      case '4':
        throw new PackError('UNSAFE_ENTRY_TYPE', `device node ${field(block, 0, 100)} in a payload`);
      case '6':
        throw new PackError('UNSAFE_ENTRY_TYPE', `FIFO ${field(block, 0, 100)} in a payload`);
      default:
        throw new PackError('UNSAFE_ENTRY_TYPE', `tar entry type '${flag}' is not allowed in a payload`);
    }
    let path = field(block, 0, 100);
    const prefix = ustar ? field(block, 345, 155) : '';
    if (prefix) path = `${prefix}/${path}`;
    let linkpath = field(block, 157, 100);
    if (this.longName !== null) path = this.longName;
    if (this.longLink !== null) linkpath = this.longLink;
    if (this.pax) {
      path = this.pax.get('path') ?? path;
      linkpath = this.pax.get('linkpath') ?? linkpath;
      const paxSize = this.pax.get('size');
      if (paxSize !== undefined) {
        if (!/^[0-9]{1,16}$/.test(paxSize)) throw new PackError('PAYLOAD_TAR_INVALID', 'malformed pax size');
        size = Number(paxSize);
      }
    }
    this.pax = null;
    this.longName = null;
    this.longLink = null;
    // Only regular files carry data; a size on a link or directory is ignored by tar and refused here.
    if (type !== 'file' && size !== 0) throw new PackError('PAYLOAD_TAR_INVALID', `${type} entry ${path} declares data`);
    const mode = octal(block, 100, 8, 'mode') & 0o7777;
    await this.sink.entry({ path, type, size, mode, linkpath });
    if (size > 0) this.state = { kind: 'data', left: size, pad: paddingFor(size) };
    else await this.sink.entryEnd();
  }
}
