import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ServerError } from '../errors.js';

/**
 * Diagnostics bundles the probes uploaded (docs/http-api.md, "Diagnostics"), in
 * `<data>/diagnostics/`: `<commandId>.part` while it arrives, then `<commandId>.tar.gz` beside
 * `<commandId>.json` (probe, size, sha256, times). A part grows only at its end, by the range the
 * probe says it sends, so an upload cut anywhere resumes where the server stopped. Each probe
 * keeps its newest KEEP_PER_PROBE bundles.
 */
export interface DiagnosticsRecord {
  readonly commandId: string;
  readonly probeId: string;
  readonly size: number;
  readonly sha256: string;
  readonly requestedAt: string;
  readonly receivedAt: string;
}

export interface ContentRange {
  readonly from: number;
  readonly last: number;
  readonly total: number;
}

const KEEP_PER_PROBE = 20;
const COMMAND_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export function parseContentRange(header: string | undefined): ContentRange | null {
  const m = /^bytes (\d{1,12})-(\d{1,12})\/(\d{1,12})$/.exec(header ?? '');
  if (!m) return null;
  const [from, last, total] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return from <= last && last < total ? { from, last, total } : null;
}

export class DiagnosticsStore {
  constructor(private readonly dir: string) {}

  private path(commandId: string, ext: 'part' | 'tar.gz' | 'json'): string {
    if (!COMMAND_ID.test(commandId)) throw new ServerError('NOT_FOUND', 'no such diagnostics bundle');
    return join(this.dir, `${commandId}.${ext}`);
  }

  /** Bytes held of an upload under way (0 when none), and whether the bundle is complete. */
  async received(commandId: string): Promise<{ bytes: number; complete: boolean }> {
    const done = await stat(this.path(commandId, 'tar.gz')).catch(() => null);
    if (done) return { bytes: done.size, complete: true };
    const part = await stat(this.path(commandId, 'part')).catch(() => null);
    return { bytes: part?.size ?? 0, complete: false };
  }

  /**
   * Appends `body` at `range.from` (which must be what the part holds) and, once the part holds
   * `range.total` bytes whose sha256 is `sha256`, keeps the bundle. Returns what is held after.
   */
  async append(
    meta: { commandId: string; probeId: string; requestedAt: string },
    range: ContentRange,
    sha256: string,
    body: Readable,
  ): Promise<{ bytes: number; record: DiagnosticsRecord | null }> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const part = this.path(meta.commandId, 'part');
    const held = (await stat(part).catch(() => null))?.size ?? 0;
    if (range.from !== held) throw new ServerError('RANGE_NOT_SATISFIABLE', `the server holds ${held} bytes of this bundle; send from there`);
    const want = range.last - range.from + 1;
    let got = 0;
    const counted = async function* (src: Readable): AsyncGenerator<Buffer> {
      for await (const chunk of src as AsyncIterable<Buffer>) {
        got += chunk.length;
        if (got > want) throw new ServerError('BODY_TOO_LARGE', `the body is longer than the ${want} bytes its Content-Range names`);
        yield chunk;
      }
    };
    await pipeline(body, counted, createWriteStream(part, { flags: 'a', mode: 0o600 }));
    const bytes = held + got;
    if (bytes < range.total) return { bytes, record: null };
    const hash = createHash('sha256');
    await pipeline(createReadStream(part), hash);
    if (hash.digest('hex') !== sha256) {
      await rm(part, { force: true });
      throw new ServerError('BODY_INVALID', 'the bundle does not match its X-Sonde-Sha256; it was dropped, upload it again');
    }
    const record: DiagnosticsRecord = { ...meta, size: bytes, sha256, receivedAt: new Date().toISOString() };
    await writeFile(this.path(meta.commandId, 'json'), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
    await rename(part, this.path(meta.commandId, 'tar.gz'));
    await this.prune(meta.probeId);
    return { bytes, record };
  }

  async list(probeId?: string): Promise<DiagnosticsRecord[]> {
    const names = (await readdir(this.dir).catch(() => [] as string[])).filter((n) => n.endsWith('.json'));
    const records: DiagnosticsRecord[] = [];
    for (const n of names) {
      const r = JSON.parse(await readFile(join(this.dir, n), 'utf8').catch(() => 'null')) as DiagnosticsRecord | null;
      if (r && (probeId === undefined || r.probeId === probeId)) records.push(r);
    }
    return records.sort((a, b) => b.receivedAt.localeCompare(a.receivedAt));
  }

  async get(commandId: string): Promise<{ record: DiagnosticsRecord; file: string }> {
    const text = await readFile(this.path(commandId, 'json'), 'utf8').catch(() => null);
    if (text === null) throw new ServerError('NOT_FOUND', `no diagnostics bundle for command ${commandId}`);
    return { record: JSON.parse(text) as DiagnosticsRecord, file: this.path(commandId, 'tar.gz') };
  }

  private async prune(probeId: string): Promise<void> {
    for (const old of (await this.list(probeId)).slice(KEEP_PER_PROBE)) {
      await rm(this.path(old.commandId, 'tar.gz'), { force: true });
      await rm(this.path(old.commandId, 'json'), { force: true });
    }
  }
}
