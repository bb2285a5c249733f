import { SondeError } from '../../../base/src/errors/sonde-error.js';

/** Codes of the probe's links to the fleet server: downloads, MQTT messages, polling. docs/errors.md. */
export const LINK_CODES = [
  'DOWNLOAD_FAILED',
  'INSTALL_INTERNAL_ERROR',
  'DOWNLOAD_HASH_MISMATCH',
  'DOWNLOAD_SIZE_MISMATCH',
  'DOWNLOAD_CANCELLED',
  'DOWNLOAD_WINDOW_INVALID',
  'MESSAGE_TOO_LARGE',
  'MESSAGE_NOT_JSON',
  'MESSAGE_INVALID',
  'COMMAND_WRONG_PROBE',
  'COMMAND_UNKNOWN',
  'COMMAND_BUSY',
  'COMMAND_CANCELLED',
  'AGENT_CONFIG_INVALID',
  'CREDENTIALS_INVALID',
] as const;
export type LinkCode = (typeof LINK_CODES)[number];

export class LinkError extends SondeError<LinkCode> {
  override readonly domain = 'link';
}
