import { z } from 'zod';
import { isCanonicalBase64 } from './base64.js';
import { PackError } from './errors.js';
import { MAX_CHAIN_LENGTH } from './format.js';

/**
 * manifest.sig: a detached signature over the exact bytes of manifest.json, with the signer's
 * certificate chain (signer first, then intermediates; the root may be included and must then be
 * one of the keyring's roots).
 */
const canonical = isCanonicalBase64;
export const pemCert = z
  .string()
  .max(16 * 1024)
  .regex(/^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?$/)
  .refine((pem) => canonical(pem.replace(/-----[A-Z ]+-----/g, '').replace(/\n/g, '')), 'certificate base64 is not canonical');

export const signatureSchema = z
  .object({
    format: z.literal('sonde-signature-1'),
    algorithm: z.enum(['rsa-pss-sha256', 'ecdsa-p256-sha256']),
    signature: z.string().regex(/^[A-Za-z0-9+/]+={0,2}$/).max(2048).refine(canonical, 'signature base64 is not canonical'),
    chain: z.array(pemCert).min(1).max(MAX_CHAIN_LENGTH),
  })
  .strict();

export type SignatureEnvelope = z.infer<typeof signatureSchema>;

export function parseSignature(bytes: Buffer): SignatureEnvelope {
  try {
    return signatureSchema.parse(JSON.parse(bytes.toString('utf8')));
  } catch (e) {
    throw new PackError('SIGNATURE_MALFORMED', 'manifest.sig is not a valid signature envelope', { cause: e });
  }
}
