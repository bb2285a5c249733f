import { fstatSync } from 'node:fs';
import { Writable } from 'node:stream';
import pino from 'pino';

/**
 * Where the agent's and the server's pino lines go (docs/agent.md and docs/server.md, "Logs"):
 *
 * - on a terminal: one readable line per entry (`10:28:30.123 WARN  message  key=value`);
 * - under systemd, when the stream is the journal (`JOURNAL_STREAM` names this very file): the
 *   JSON line behind a syslog priority prefix (`<6>{…}`), which journald turns into the entry's
 *   PRIORITY and strips, so `journalctl -p warning` shows warnings and worse;
 * - anywhere else: the JSON line as it is.
 */
export const PRIORITY_OF_LEVEL: Readonly<Record<number, number>> = Object.freeze({ 10: 7, 20: 7, 30: 6, 40: 4, 50: 3, 60: 2 });
const LEVEL_NAMES: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };

/** One JSON log line as a person reads it (the terminal form). */
export function prettyLine(line: string): string {
  try {
    const { time, level, msg, pid: _pid, hostname: _h, app: _app, ...rest } = JSON.parse(line) as Record<string, unknown>;
    const t = new Date(Number(time)).toISOString().slice(11, 23);
    const extra = Object.entries(rest)
      .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    return `${t} ${LEVEL_NAMES[Number(level)] ?? String(level)} ${String(msg ?? '')}${extra ? `  ${extra}` : ''}`;
  } catch {
    return line;
  }
}

/** The JSON line with the syslog priority journald maps its pino level to. */
export function journalLine(line: string): string {
  const m = /"level":(\d+)/.exec(line);
  const priority = m ? (PRIORITY_OF_LEVEL[Number(m[1])] ?? 6) : 6;
  return `<${priority}>${line}`;
}

/** Whether `fd` is the journal stream systemd connected (JOURNAL_STREAM is "device:inode"). */
export function isJournalStream(fd: number, env: NodeJS.ProcessEnv = process.env): boolean {
  const want = env['JOURNAL_STREAM'];
  if (!want) return false;
  try {
    const st = fstatSync(fd);
    return want === `${st.dev}:${st.ino}`;
  } catch {
    return false;
  }
}

function lines(write: (line: string) => void): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) write(line);
      done();
    },
  });
}

/** The destination for a logger writing to `fd` (1 or 2), in the form the reader there needs. */
export function logDestination(fd: 1 | 2): pino.DestinationStream {
  const out = fd === 1 ? process.stdout : process.stderr;
  if (out.isTTY) return lines((l) => out.write(`${prettyLine(l)}\n`));
  const dest = pino.destination({ fd, sync: false });
  if (!isJournalStream(fd)) return dest;
  // pino hands each entry to write() as one line.
  return { write: (s: string) => dest.write(s.endsWith('\n') ? `${journalLine(s.slice(0, -1))}\n` : journalLine(s)) } as pino.DestinationStream;
}
