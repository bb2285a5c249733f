import { SondeError } from '../../base/src/errors/sonde-error.js';

/** Codes of `sonde pack`: the recipe, the source tree, the signer and the recipients. */
export const PACKER_CODES = ['RECIPE_INVALID', 'SOURCE_INVALID', 'SIGNER_KEY_MISMATCH', 'RECIPIENT_CERT_INVALID'] as const;
export type PackerCode = (typeof PACKER_CODES)[number];

export class PackerError extends SondeError<PackerCode> {
  override readonly domain = 'packer';
}
