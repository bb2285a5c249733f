/**
 * The pack format's one door (DESIGN.md, "The service pack"; docs/architecture.md). The agent,
 * the drop, the server, the vendor tools, the lab and the benchmarks import the pack module
 * through this file only; dependency-cruiser refuses any import of a file behind it.
 */

// Errors of the three domains the module owns.
export { PackError, PACK_CODES, type PackCode } from './errors.js';
export { PackerError, PACKER_CODES, type PackerCode } from './packer-errors.js';
export { KeysError, KEYS_CODES, type KeysCode } from './keys-errors.js';

// What a pack is: the manifest.
export { manifestSchema, PACK_KINDS, PAYLOAD_TYPES, type Manifest, type PackKind, type PayloadEntry, type PayloadType, type Recipient } from './manifest.js';

// Read, verify, decrypt, extract (the probe's side).
export { readPack, UnverifiedPack, parseManifest, type PackSource } from './read.js';
export { verifyPack, VerifiedPack } from './verify.js';
export { extractPack, type ExtractOptions, type ExtractResult, type ExtractedPayload } from './extract.js';

// Trust: the only place that says yes to a signer or to a change of the keyring.
export { admitTrustPayload, loadKeyring, keyringFromCertificates, verifyChain, REVOCATIONS_FILE, type Keyring, type TrustUpdate, type TrustedChain } from './trust.js';
export { fingerprintHex, normaliseSerial, signRevocations, verifyRevocations, type RevocationBody, type RevocationEntry, type RevocationList } from './revocations.js';
export { parseCertificates } from './pem.js';

// Size a pack on disk (an upload still being written, a pack in the inbox).
export { measurePack, type PackExtent } from './extent.js';

// Recipients and key files.
export { keyIdOf } from './recipients.js';
export {
  CERTIFICATE_MODE,
  loadPrivateKey,
  readCertificateFile,
  readPassphraseFile,
  refuseOverwrite,
  writeCertificate,
  writePrivateKey,
  type CertificateFile,
} from './key-files.js';

// Write (the packer) from a recipe.
export { makePlan, type PackPlan, type PlanOverrides, type Recipe } from './recipe.js';
export { writePack, type Signer, type WrittenPack } from './writer.js';
