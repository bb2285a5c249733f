import { SondeError } from '../../../base/src/errors/sonde-error.js';

/** Codes of the FTP drop (the inbox the probe's FTP server writes into). docs/errors.md. */
export const DROP_CODES = ['UPLOAD_INCOMPLETE', 'DROP_UNREADABLE', 'DROP_INSTALL_ERROR'] as const;
export type DropCode = (typeof DROP_CODES)[number];

export class DropError extends SondeError<DropCode> {
  override readonly domain = 'drop';
}
