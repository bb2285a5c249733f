import pino, { type Logger } from 'pino';
import { logDestination } from '../../base/src/log/log-stream.js';

/**
 * The server's pino logger: JSON lines on stderr (stdout carries the few lines an operator reads:
 * the endpoints, and the admin token once); readable lines on a terminal, and each line with its
 * syslog priority when stderr is the journal (base/src/log/log-stream.ts). Secret values never enter a log call (STYLE.md rule
 * 12); redact covers the known keys in case one ever does.
 */
export const REDACT_PATHS = [
  'token',
  'password',
  'secret',
  '*.token',
  '*.password',
  '*.secret',
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
];

export function createServerLogger(level: string, destination: NodeJS.WritableStream | number = 2): Logger {
  const options = { level, base: { app: 'sonde-server' }, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  return typeof destination === 'number' ? pino(options, logDestination(destination === 1 ? 1 : 2)) : pino(options, destination);
}

export type { Logger };
