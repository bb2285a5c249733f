import type * as Extract from './extract.js';
import type * as Read from './read.js';
import type * as Recipe from './recipe.js';
import type * as Verify from './verify.js';
import type * as Writer from './writer.js';
import { prepareRevocationSchemas } from './revocations.js';
import type { Keyring } from './trust.js';
import type { RootRotation, RotationWalk } from './root-rotation.js';

/**
 * The pack format's one door (DESIGN.md, "The service pack"; docs/architecture.md). The agent,
 * the drop, the server, the vendor tools, the lab and the benchmarks import the pack module
 * through this file only; dependency-cruiser refuses any import of a file behind it.
 *
 * The door is light: what is small and used everywhere (errors, the manifest's types and schema,
 * trust, key files, sizing a pack on disk) loads with it; the streaming passes (read, verify,
 * extract, write) load on their first call. The agent's daemon imports this file and idles for
 * months without ever running a pass itself (installs run in an installer process), and the
 * passes with their tar, zlib, worker and semver modules cost it about 5 MiB resident
 * (bench/agent-idle, docs/architecture.md).
 */

// Errors of the three domains the module owns.
export { PackError, PACK_CODES, type PackCode } from './errors.js';
export { PackerError, PACKER_CODES, type PackerCode } from './packer-errors.js';
export { KeysError, KEYS_CODES, type KeysCode } from './keys-errors.js';

// What a pack is: the manifest.
export { AGENT_PRODUCT, PACK_KINDS, PAYLOAD_TYPES, type PackKind, type PayloadType } from './format.js';
export type { Manifest, PayloadEntry, Recipient } from './manifest.js';

// Read, verify, decrypt, extract (the probe's side): loaded on first use.
export type { UnverifiedPack, PackSource } from './read.js';
export type { VerifiedPack, VerifyOptions } from './verify.js';
export type { ExtractOptions, ExtractResult, ExtractedPayload } from './extract.js';

/**
 * Loads the read, verify and extract passes now: for a process about to run them (the
 * installer), so that the first pack's `received` state does not pay for loading them.
 */
export async function preloadReadPasses(): Promise<void> {
  await Promise.all([import('./read.js'), import('./verify.js'), import('./extract.js')]);
  prepareRevocationSchemas();
}

/** Reads a pack's marker, manifest and signature (read.ts): the result is not trusted yet. */
export async function readPack(...args: Parameters<typeof Read.readPack>): ReturnType<typeof Read.readPack> {
  return (await import('./read.js')).readPack(...args);
}

/** The only way to a VerifiedPack (verify.ts, then trust.ts). */
export async function verifyPack(...args: Parameters<typeof Verify.verifyPack>): ReturnType<typeof Verify.verifyPack> {
  return (await import('./verify.js')).verifyPack(...args);
}

/** Streams a verified pack's payloads through hash, decryption and the safe extractor (extract.ts). */
export async function extractPack(...args: Parameters<typeof Extract.extractPack>): ReturnType<typeof Extract.extractPack> {
  return (await import('./extract.js')).extractPack(...args);
}

// Trust: the only place that says yes to a signer or to a change of the keyring.
export { admitTrustPayload, loadKeyring, keyringFromCertificates, verifyChain, REVOCATIONS_FILE, type Keyring, type TrustUpdate, type TrustedChain } from './trust.js';
export { heldRotationSequence, readRootRotations, rotationFileName, signRootRotation, ROTATIONS_DIR, type RootRotation, type RotationSigner, type RotationWalk } from './root-rotation.js';

/**
 * Follows root rotation statements from a keyring as a probe would (root-rotation.ts), with no
 * time floor: for the vendor's tools, which check a history before they ship it.
 */
export async function followRootRotations(keyring: Keyring, statements: readonly RootRotation[], at: Date): Promise<RotationWalk> {
  const [{ walkRootRotations }, { readExtensions }] = await Promise.all([import('./root-rotation.js'), import('./cert-extensions.js')]);
  return walkRootRotations(keyring, statements, at, { timeFloor: null, extensionsOf: readExtensions });
}
export { fingerprintHex, normaliseSerial, signRevocations, verifyRevocations, type RevocationBody, type RevocationEntry, type RevocationList } from './revocations.js';
export { parseCertificates } from './pem.js';

// Signed diagnostics requests through the drop, and files sealed to a recipient (the answer).
// Loaded on first use: the daemon handles a request a few times in its life.
export type { DiagnosticsRequestBody, VerifiedRequest } from './diagnostics-request.js';
export async function diagnosticsRequests(): Promise<typeof import('./diagnostics-request.js')> {
  return import('./diagnostics-request.js');
}

// Size a pack on disk (an upload still being written, a pack in the inbox).
export { measurePack, type PackExtent } from './extent.js';

// Recipients, and reading key files (the vendor's tools write them: images/src/keys/key-write.ts).
export { keyIdOf } from './recipients.js';
export { loadPrivateKey, readCertificateFile, readPassphraseFile, type CertificateFile } from './key-files.js';

// Write (the packer) from a recipe: loaded on first use.
export type { PackPlan, PlanOverrides, Recipe } from './recipe.js';
export type { Signer, WrittenPack } from './writer.js';

/** A pack plan from a source folder's pack.json and the command line's flags (recipe.ts). */
export async function makePlan(...args: Parameters<typeof Recipe.makePlan>): ReturnType<typeof Recipe.makePlan> {
  return (await import('./recipe.js')).makePlan(...args);
}

/** Builds, signs and (optionally) encrypts a pack (writer.ts). */
export async function writePack(...args: Parameters<typeof Writer.writePack>): ReturnType<typeof Writer.writePack> {
  return (await import('./writer.js')).writePack(...args);
}
