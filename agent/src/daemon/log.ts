import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';

/**
 * pino JSON logs with stable message keys; on a terminal, one readable line per entry instead.
 * redact covers known secret keys, but secret values are kept out of log calls in the first place
 * (STYLE.md rule 12).
 */
const REDACT = ['token', 'password', 'secret', '*.token', '*.password', '*.secret', 'value', '*.value', 'headers.authorization'];

function prettyStream(out: NodeJS.WriteStream): Writable {
  const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) {
        if (!line) continue;
        try {
          const { time, level, msg, pid: _pid, hostname: _h, ...rest } = JSON.parse(line) as Record<string, unknown>;
          const t = new Date(Number(time)).toISOString().slice(11, 23);
          const extra = Object.entries(rest)
            .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
            .join(' ');
          out.write(`${t} ${LEVELS[Number(level)] ?? level} ${String(msg ?? '')}${extra ? `  ${extra}` : ''}\n`);
        } catch {
          out.write(`${line}\n`);
        }
      }
      done();
    },
  });
}

/** The logger; with `recent`, every line also goes to that in-memory copy (diagnostics bundles). */
export function createLogger(level: string, out: NodeJS.WriteStream = process.stdout, recent?: Writable): Logger {
  const options = { level, base: { app: 'sonde-agent' }, redact: { paths: REDACT, censor: '[redacted]' } };
  const main = out.isTTY ? prettyStream(out) : pino.destination({ fd: out === process.stderr ? 2 : 1, sync: false });
  if (!recent) return pino(options, main);
  return pino(options, pino.multistream([{ level: level as pino.Level, stream: main }, { level: level as pino.Level, stream: recent }]));
}

export type { Logger };
