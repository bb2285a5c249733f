import { SondeError } from '../errors/sonde-error.js';

/** Errors of the command line itself: bad flags, unreadable inputs named on the command line. */
export const CLI_CODES = ['USAGE', 'INPUT_UNREADABLE', 'PORT_IN_USE', 'FILE_ACCESS_FAILED'] as const;
export type CliCode = (typeof CLI_CODES)[number];

export class CliError extends SondeError<CliCode> {
  override readonly domain = 'cli';
}
