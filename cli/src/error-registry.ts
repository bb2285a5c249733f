import { PACK_CODES, KEYS_CODES, PACKER_CODES } from '../../pack/src/index.js';
import { CLI_CODES } from '../../base/src/cli/cli-error.js';
import { UPDATE_CODES } from '../../agent/src/update/errors.js';
import { DROP_CODES } from '../../agent/src/drop/errors.js';
import { LINK_CODES } from '../../agent/src/link/errors.js';
import { DIAGNOSTICS_CODES } from '../../agent/src/diagnostics/errors.js';
import { SERVER_CODES } from '../../server/src/errors.js';
import { LAB_CODES } from '../../lxc/src/errors.js';

/**
 * Every error code Sonde can emit, by domain. docs/errors.md documents exactly these; the test
 * test/docs/error-codes.test.ts fails when the two disagree in either direction.
 */
export const ERROR_CODES: Readonly<Record<string, readonly string[]>> = Object.freeze({
  pack: PACK_CODES,
  cli: CLI_CODES,
  keys: KEYS_CODES,
  packer: PACKER_CODES,
  update: UPDATE_CODES,
  drop: DROP_CODES,
  link: LINK_CODES,
  diagnostics: DIAGNOSTICS_CODES,
  server: SERVER_CODES,
  lab: LAB_CODES,
});

export function allErrorCodes(): string[] {
  return Object.values(ERROR_CODES).flat();
}
