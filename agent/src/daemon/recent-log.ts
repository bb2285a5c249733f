import { Writable } from 'node:stream';

/**
 * The agent's recent log, kept in memory for diagnostics bundles (agent/src/diagnostics): the
 * last `maxBytes` of its JSON log lines, oldest dropped first. The log itself goes to stdout
 * (journald under systemd); this copy lets a support engineer see it without logging in.
 */
export class RecentLog extends Writable {
  private lines: string[] = [];
  private bytes = 0;

  constructor(private readonly maxBytes = 512 * 1024) {
    super();
  }

  override _write(chunk: Buffer | string, _enc: BufferEncoding, done: (e?: Error | null) => void): void {
    for (const line of chunk.toString().split('\n')) {
      if (line === '') continue;
      const kept = line.length > this.maxBytes ? line.slice(0, this.maxBytes) : line;
      this.lines.push(kept);
      this.bytes += kept.length + 1;
    }
    let drop = 0;
    while (this.bytes > this.maxBytes && drop < this.lines.length) this.bytes -= this.lines[drop++]!.length + 1;
    if (drop > 0) this.lines = this.lines.slice(drop);
    done();
  }

  /** The kept lines, oldest first, at most the newest `maxBytes` of them. */
  text(maxBytes = this.maxBytes): string {
    const out: string[] = [];
    let n = 0;
    for (let i = this.lines.length - 1; i >= 0 && n + this.lines[i]!.length + 1 <= maxBytes; i--) {
      out.push(this.lines[i]!);
      n += this.lines[i]!.length + 1;
    }
    return out.length === 0 ? '' : `${out.reverse().join('\n')}\n`;
  }
}
