import { z } from 'zod';
import { isCanonicalBase64 } from './base64.js';
import { AGENT_PRODUCT, PACK_KINDS, PAYLOAD_TYPES } from './format.js';
import { pemCert } from './signature.js';
// Only the two checks the manifest needs: all of semver is some 50 modules to load on every verify.
import validVersion from 'semver/functions/valid.js';
import validRange from 'semver/ranges/valid.js';

/**
 * manifest.json (DESIGN.md, "The service pack", step 2). Parsed strictly: an unknown key anywhere
 * is an error, so a field an older agent does not understand is never silently ignored.
 */
export { PACK_KINDS, PAYLOAD_TYPES, type PackKind, type PayloadType } from './format.js';

const semverString = z.string().max(64).refine((v) => validVersion(v) === v, 'must be a semantic version');
const semverRange = z.string().max(256).refine((v) => validRange(v) !== null, 'must be a semver range');
const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'must be a lower-case sha256 hex digest');
const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'must be base64').refine(isCanonicalBase64, 'base64 is not canonical');
const slug = z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'must be a lower-case name');

export const payloadSchema = z
  .object({
    name: slug,
    type: z.enum(PAYLOAD_TYPES),
    /** The tar entry that carries it: payloads/NN-name. */
    file: z.string().regex(/^payloads\/[0-9]{2}-[a-z0-9][a-z0-9._-]{0,63}$/),
    /** Bytes stored in the pack (after compression and encryption) and their sha256. */
    size: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
    sha256: sha256Hex,
    /** Bytes of the plain payload tar, and the number of entries in it. */
    unpackedSize: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
    fileCount: z.number().int().nonnegative().max(10_000_000),
    compression: z.enum(['none', 'gzip']),
    /** Present when the payload is sealed: the HKDF salt of its payload key. */
    encryption: z.object({ salt: base64.length(24) }).strict().optional(),
    /**
     * A `system` payload only: the sha256 of the plain file-system image (unpackedSize bytes), which
     * the agent holds the slot's device against when it reads the image back (docs/slots.md).
     */
    imageSha256: sha256Hex.optional(),
  })
  .strict();

export const recipientSchema = z
  .object({
    /** sha256 of the recipient public key's SubjectPublicKeyInfo (DER), hex. */
    keyId: sha256Hex,
    label: z.string().max(200),
    algorithm: z.literal('rsa-oaep-sha256'),
    wrappedKey: base64.max(2048),
  })
  .strict();

/**
 * A root rotation statement (root-rotation.ts, docs/pack-format.md "Root rotation"): the complete
 * set of roots after rotation `sequence`, signed by a root of the set before it and by every root
 * it adds. The signatures cover the canonical JSON of `body`.
 */
export const rootRotationSchema = z
  .object({
    format: z.literal('sonde-root-rotation-1'),
    body: z
      .object({
        sequence: z.number().int().min(1).max(2 ** 31),
        issuedAt: z.string().datetime({ offset: false }),
        roots: z.array(pemCert).min(1).max(16),
      })
      .strict(),
    signatures: z
      .array(
        z
          .object({
            signer: sha256Hex,
            algorithm: z.enum(['rsa-pss-sha256', 'ecdsa-p256-sha256']),
            signature: base64.min(1).max(2048),
          })
          .strict(),
      )
      .min(1)
      .max(32),
  })
  .strict();

export const MAX_ROOT_ROTATIONS = 64;

export const manifestSchema = z
  .object({
    kind: z.enum(PACK_KINDS),
    product: slug,
    version: semverString,
    compatible: z.array(z.string().min(1).max(64)).min(1).max(256),
    requires: semverRange.optional(),
    minAgentVersion: semverString.optional(),
    securityVersion: z.number().int().nonnegative().max(2 ** 31),
    /** Signed creation time; the clock policy evaluates certificates at this instant. */
    createdAt: z.string().datetime({ offset: false }),
    releaseNotes: z.string().max(64 * 1024).optional(),
    /**
     * A signed allowance to install over a newer version. It names the one release it may
     * replace (downgradeFrom), so it cannot be replayed against another, and it never crosses the
     * probe's security floor (agent/src/update/policy.ts).
     */
    allowDowngrade: z.boolean().optional(),
    downgradeFrom: semverString.optional(),
    payloads: z.array(payloadSchema).max(64),
    /** A trust pack's history of root rotations, oldest first, so a probe that missed some catches up. */
    rootRotations: z.array(rootRotationSchema).min(1).max(MAX_ROOT_ROTATIONS).optional(),
    encryption: z
      .object({
        algorithm: z.literal('aes-256-gcm-stream-64k'),
        recipients: z.array(recipientSchema).min(1).max(1024),
      })
      .strict()
      .optional(),
  })
  .strict()
  .superRefine((m, ctx) => {
    if (m.downgradeFrom !== undefined && m.allowDowngrade !== true) {
      ctx.addIssue({ code: 'custom', message: 'downgradeFrom needs allowDowngrade', path: ['downgradeFrom'] });
    }
    const names = new Set<string>();
    m.payloads.forEach((p, i) => {
      if (names.has(p.name)) ctx.addIssue({ code: 'custom', message: `duplicate payload name ${p.name}`, path: ['payloads', i] });
      names.add(p.name);
      const expected = `payloads/${String(i + 1).padStart(2, '0')}-${p.name}`;
      if (p.file !== expected) ctx.addIssue({ code: 'custom', message: `payload ${i} must be stored as ${expected}`, path: ['payloads', i, 'file'] });
      // A system payload is a file-system image, not a tar: no entries, and the image's own hash.
      if (p.type === 'system' && (p.imageSha256 === undefined || p.fileCount !== 0)) {
        ctx.addIssue({ code: 'custom', message: 'a system payload is one file-system image: imageSha256 and fileCount 0', path: ['payloads', i] });
      }
      if (p.type !== 'system' && p.imageSha256 !== undefined) ctx.addIssue({ code: 'custom', message: 'only a system payload carries imageSha256', path: ['payloads', i] });
      if ((p.encryption !== undefined) !== (m.encryption !== undefined)) {
        ctx.addIssue({ code: 'custom', message: 'every payload is encrypted exactly when the pack is', path: ['payloads', i] });
      }
    });
    if (m.rootRotations !== undefined && m.kind !== 'trust') {
      ctx.addIssue({ code: 'custom', message: 'only a trust pack carries root rotations', path: ['rootRotations'] });
    }
    // An agent pack carries one agent build and nothing else: it never touches the app's slots.
    if (m.kind === 'agent' && (m.product !== AGENT_PRODUCT || m.payloads.length !== 1 || m.payloads[0]!.type !== 'agent')) {
      ctx.addIssue({ code: 'custom', message: `an agent pack is product ${AGENT_PRODUCT} with exactly one payload, of type agent`, path: ['payloads'] });
    }
    if (m.kind !== 'agent' && m.payloads.some((p) => p.type === 'agent')) {
      ctx.addIssue({ code: 'custom', message: 'only an agent pack carries an agent payload', path: ['payloads'] });
    }
    if (m.kind === 'servicepack' && m.requires === undefined) {
      ctx.addIssue({ code: 'custom', message: 'a servicepack must state the versions it applies to (requires)', path: ['requires'] });
    }
  });

export type Manifest = z.infer<typeof manifestSchema>;
export type PayloadEntry = z.infer<typeof payloadSchema>;
export type Recipient = z.infer<typeof recipientSchema>;
export type RootRotation = z.infer<typeof rootRotationSchema>;
