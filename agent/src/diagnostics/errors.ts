import { SondeError } from '../../../base/src/errors/sonde-error.js';

/** Codes of the probe's diagnostics bundles (docs/errors.md, "Diagnostics"). */
export const DIAGNOSTICS_CODES = ['DIAGNOSTICS_TOO_LARGE', 'DIAGNOSTICS_UPLOAD_FAILED', 'DIAGNOSTICS_FAILED'] as const;
export type DiagnosticsCode = (typeof DIAGNOSTICS_CODES)[number];

export class DiagnosticsError extends SondeError<DiagnosticsCode> {
  override readonly domain = 'diagnostics';
}
