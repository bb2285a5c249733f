/** The public surface of the pack format: what the agent, the packer and the server use. */
export { PackError, PACK_CODES, type PackCode } from './errors.js';
export { readPack, UnverifiedPack, parseManifest, type PackSource } from './read.js';
export { verifyPack, VerifiedPack } from './verify.js';
export { extractPack, type ExtractOptions, type ExtractResult, type ExtractedPayload } from './extract.js';
export { loadKeyring, keyringFromCertificates, verifyChain, type Keyring, type TrustedChain } from './trust.js';
export { manifestSchema, PACK_KINDS, PAYLOAD_TYPES, type Manifest, type PackKind, type PayloadEntry, type PayloadType, type Recipient } from './manifest.js';
export { keyIdOf } from './recipients.js';
