import { SondeError } from '../../base/src/errors/sonde-error.js';

/** Errors of the lab (`sonde lab …`): virtual probes, their bridge, the lab's own server. */
export const LAB_CODES = [
  'LAB_NAME_INVALID',
  'LAB_UNSUPPORTED',
  'LAB_BUSY',
  'LAB_NETWORK_FAILED',
  'LAB_PROBE_NOT_FOUND',
  'LAB_PROBE_FAILED',
  'LAB_SERVER_FAILED',
  'LAB_TIMEOUT',
  'LAB_IMAGE_FAILED',
  'LAB_CONFIG_INVALID',
] as const;
export type LabCode = (typeof LAB_CODES)[number];

export class LabError extends SondeError<LabCode> {
  override readonly domain = 'lab';
}
