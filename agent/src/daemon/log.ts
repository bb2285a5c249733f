import type { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';
import { logDestination } from '../../../base/src/log/log-stream.js';

/**
 * pino JSON logs with stable message keys; on a terminal, one readable line per entry instead,
 * and under systemd each line carries its syslog priority (base/src/log/log-stream.ts).
 * redact covers known secret keys, but secret values are kept out of log calls in the first place
 * (STYLE.md rule 12).
 */
const REDACT = ['token', 'password', 'secret', '*.token', '*.password', '*.secret', 'value', '*.value', 'headers.authorization'];

/** The logger; with `recent`, every line also goes to that in-memory copy (diagnostics bundles). */
export function createLogger(level: string, out: NodeJS.WriteStream = process.stdout, recent?: Writable): Logger {
  const options = { level, base: { app: 'sonde-agent' }, redact: { paths: REDACT, censor: '[redacted]' } };
  const main = logDestination(out === process.stderr ? 2 : 1);
  if (!recent) return pino(options, main);
  return pino(options, pino.multistream([{ level: level as pino.Level, stream: main }, { level: level as pino.Level, stream: recent }]));
}

export type { Logger };
