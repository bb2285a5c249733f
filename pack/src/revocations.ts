import { X509Certificate, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { isCanonicalBase64 } from './base64.js';
import { PackError } from './errors.js';
import { canonicalJson } from './canonical-json.js';
import { signBytes, verifyBytes, type SignatureAlgorithm } from './signing.js';

/**
 * `revocations.json` (DESIGN.md, "Trust"): a list of revoked certificate serial numbers (and,
 * for external PKIs whose serials may collide, SHA-256 fingerprints), signed by a root of the
 * keyring. The signature covers the canonical JSON of `body`, so the file stays readable.
 *
 * The schemas are built on first use: zod schemas cost resident memory (about 1.5 MiB here), and
 * the agent's daemon loads this module with the pack module's entry but never reads a list itself.
 */
function buildSchemas() {
  const entry = z
    .object({
      serial: z.string().regex(/^[0-9A-F]+$/).optional(),
      fingerprint256: z.string().regex(/^[0-9a-f]{64}$/).optional(),
      revokedAt: z.string().datetime(),
      reason: z.string().max(200).optional(),
    })
    .strict()
    .refine((e) => e.serial !== undefined || e.fingerprint256 !== undefined, 'serial or fingerprint256 required');

  const body = z
    .object({
      issuer: z.string().regex(/^[0-9a-f]{64}$/),
      sequence: z.number().int().nonnegative(),
      issuedAt: z.string().datetime(),
      revoked: z.array(entry).max(100_000),
    })
    .strict();

  const file = z
    .object({
      format: z.literal('sonde-revocations-1'),
      body,
      algorithm: z.enum(['rsa-pss-sha256', 'ecdsa-p256-sha256']),
      signature: z.string().base64().refine(isCanonicalBase64, 'signature base64 is not canonical'),
    })
    .strict();
  return { entry, body, file };
}

type Schemas = ReturnType<typeof buildSchemas>;
let built: Schemas | null = null;
function schemas(): Schemas {
  built ??= buildSchemas();
  return built;
}

/** Builds the schemas now (about 15 ms the first time here), for a process about to verify. */
export function prepareRevocationSchemas(): void {
  schemas();
}

export type RevocationBody = z.infer<Schemas['body']>;
export type RevocationFile = z.infer<Schemas['file']>;
export type RevocationEntry = z.infer<Schemas['entry']>;

/** Serial numbers compare as upper-case hex without leading zeros. */
export function normaliseSerial(serial: string): string {
  const hex = serial.replace(/[:\s]/g, '').toUpperCase().replace(/^0+(?=.)/, '');
  if (!/^[0-9A-F]+$/.test(hex)) throw new PackError('REVOCATIONS_INVALID', `not a hex serial number: ${serial}`);
  return hex;
}

export function fingerprintHex(cert: X509Certificate): string {
  return cert.fingerprint256.replace(/:/g, '').toLowerCase();
}

export function signRevocations(body: RevocationBody, rootKey: KeyObject): RevocationFile {
  const parsed = schemas().body.parse(body);
  const { algorithm, signature } = signBytes(rootKey, Buffer.from(canonicalJson(parsed)));
  return { format: 'sonde-revocations-1', body: parsed, algorithm, signature: signature.toString('base64') };
}

/** A verified revocation list: the set of revoked serials and fingerprints. */
export interface RevocationList {
  readonly sequence: number;
  readonly issuer: string;
  readonly serials: ReadonlySet<string>;
  readonly fingerprints: ReadonlySet<string>;
  readonly body: RevocationBody;
}

/**
 * Parse and check a revocation file against the keyring's roots. A list that is present but
 * malformed or not signed by one of the roots makes the whole keyring unusable: failing closed
 * is the only safe reading of a revocation list that cannot be trusted.
 */
export function verifyRevocations(text: string, roots: readonly X509Certificate[]): RevocationList {
  let file: RevocationFile;
  try {
    file = schemas().file.parse(JSON.parse(text));
  } catch (e) {
    throw new PackError('REVOCATIONS_INVALID', 'revocations.json is not a valid revocation list', { cause: e });
  }
  const root = roots.find((r) => fingerprintHex(r) === file.body.issuer);
  if (!root) throw new PackError('REVOCATIONS_INVALID', 'revocations.json is signed by a root that is not in the keyring');
  const ok = verifyBytes(
    root.publicKey,
    file.algorithm as SignatureAlgorithm,
    Buffer.from(canonicalJson(file.body)),
    Buffer.from(file.signature, 'base64'),
  );
  if (!ok) throw new PackError('REVOCATIONS_INVALID', 'revocations.json signature does not verify');
  return {
    sequence: file.body.sequence,
    issuer: file.body.issuer,
    serials: new Set(file.body.revoked.flatMap((e) => (e.serial ? [normaliseSerial(e.serial)] : []))),
    fingerprints: new Set(file.body.revoked.flatMap((e) => (e.fingerprint256 ? [e.fingerprint256] : []))),
    body: file.body,
  };
}
