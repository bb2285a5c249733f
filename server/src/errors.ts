import { SondeError } from '../../base/src/errors/sonde-error.js';

/**
 * Codes of the fleet server and its staff CLI (docs/errors.md, "Fleet server"). Over HTTP each
 * travels as `{ statusCode, code, error, message }` with the status below; a refused pack upload
 * carries the pack's own code (`domain: pack`) instead, with 422.
 */
export const SERVER_CODES = [
  'AUTH_REQUIRED',
  'FORBIDDEN',
  'BODY_INVALID',
  'BODY_TOO_LARGE',
  'NOT_FOUND',
  'METHOD_NOT_ALLOWED',
  'PACK_ID_INVALID',
  'PACK_NOT_FOUND',
  'PACK_IN_USE',
  'KEYRING_EMPTY',
  'RANGE_NOT_SATISFIABLE',
  'PROBE_ID_INVALID',
  'PROBE_ID_RESERVED',
  'PROBE_NOT_FOUND',
  'TOKEN_NOT_FOUND',
  'STORE_WRITE_FAILED',
  'INTERNAL_ERROR',
  'MESSAGE_PROBE_MISMATCH',
  'PROBE_UNKNOWN',
  'WEBHOOK_FAILED',
  'SERVER_OPTIONS_INVALID',
  'LISTEN_ADDRESS_INVALID',
  'DATA_DIR_INVALID',
  'DATA_DIR_IN_USE',
  'DATA_DIR_NOT_EMPTY',
  'ARCHIVE_INVALID',
  'MQTT_CONNECT_FAILED',
  'SERVER_UNREACHABLE',
  'SERVER_RESPONSE_INVALID',
  'DIAGNOSTICS_UNAVAILABLE',
  // the rollouts module (server/src/rollouts/)
  'ROLLOUT_NOT_FOUND',
  'ROLLOUT_STATE_CONFLICT',
  'ROLLOUT_TARGET_EMPTY',
  'PROMOTION_REQUIRED',
] as const;

export type ServerCode = (typeof SERVER_CODES)[number];

export class ServerError extends SondeError<ServerCode> {
  override readonly domain = 'server';
}

/** The HTTP status each code is answered with (codes only raised locally answer 500 if they ever reach HTTP). */
export const HTTP_STATUS: Readonly<Record<ServerCode, number>> = Object.freeze({
  AUTH_REQUIRED: 401,
  FORBIDDEN: 403,
  BODY_INVALID: 400,
  BODY_TOO_LARGE: 413,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  PACK_ID_INVALID: 400,
  PACK_NOT_FOUND: 404,
  PACK_IN_USE: 409,
  KEYRING_EMPTY: 409,
  RANGE_NOT_SATISFIABLE: 416,
  PROBE_ID_INVALID: 400,
  PROBE_ID_RESERVED: 400,
  PROBE_NOT_FOUND: 404,
  TOKEN_NOT_FOUND: 404,
  STORE_WRITE_FAILED: 507,
  INTERNAL_ERROR: 500,
  MESSAGE_PROBE_MISMATCH: 400,
  PROBE_UNKNOWN: 404,
  WEBHOOK_FAILED: 502,
  SERVER_OPTIONS_INVALID: 500,
  LISTEN_ADDRESS_INVALID: 500,
  DATA_DIR_INVALID: 500,
  DATA_DIR_IN_USE: 500,
  DATA_DIR_NOT_EMPTY: 500,
  ARCHIVE_INVALID: 400,
  MQTT_CONNECT_FAILED: 502,
  SERVER_UNREACHABLE: 502,
  SERVER_RESPONSE_INVALID: 502,
  DIAGNOSTICS_UNAVAILABLE: 504,
  ROLLOUT_NOT_FOUND: 404,
  ROLLOUT_STATE_CONFLICT: 409,
  ROLLOUT_TARGET_EMPTY: 422,
  PROMOTION_REQUIRED: 409,
});
