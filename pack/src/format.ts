/**
 * Fixed facts of the `.spk` format (DESIGN.md, "The service pack"). A pack is an uncompressed
 * POSIX tar whose entries appear in this order: the marker, the manifest, its signature, then
 * the payloads in manifest order. Changing any value here changes the format version.
 */
export const PACK_FORMAT_VERSION = 1;
/**
 * The first entry's name and content. They say "bundle", the format's first name: they are bytes
 * of every pack ever written, so they stay; everywhere else the word is "pack".
 */
export const PACK_MARKER = `sonde-bundle ${PACK_FORMAT_VERSION}\n`;

export const ENTRY_MARKER = 'sonde-bundle';
export const ENTRY_MANIFEST = 'manifest.json';
export const ENTRY_SIGNATURE = 'manifest.sig';
export const PAYLOAD_PREFIX = 'payloads/';

export const MAX_MARKER_BYTES = 64;
export const MAX_MANIFEST_BYTES = 1024 * 1024;
export const MAX_SIGNATURE_BYTES = 64 * 1024;
export const MAX_CHAIN_LENGTH = 5;

/** AES-256-GCM STREAM: 64 KiB of plaintext per chunk, each followed by its 16-byte tag. */
export const AEAD_CHUNK_PLAIN = 64 * 1024;
export const AEAD_TAG_BYTES = 16;
export const AEAD_CHUNK_STORED = AEAD_CHUNK_PLAIN + AEAD_TAG_BYTES;

/**
 * Decompression guard: at any point of a payload, the bytes inflated may not exceed
 * RATIO_CAP times the compressed bytes consumed plus RATIO_SLACK. A signed manifest already
 * bounds the total; this stops a bomb before it fills the disk. The packer stores a payload
 * uncompressed when gzip would come near the cap, so honest packs never trip it.
 */
export const RATIO_CAP = 200;
export const RATIO_SLACK = 16 * 1024 * 1024;

export function payloadEntryName(index: number, name: string): string {
  return `${PAYLOAD_PREFIX}${String(index + 1).padStart(2, '0')}-${name}`;
}

/** Bytes a payload of `plainBytes` occupies once sealed. An empty payload is one final empty chunk. */
export function sealedSize(plainBytes: number): number {
  const chunks = Math.max(1, Math.ceil(plainBytes / AEAD_CHUNK_PLAIN));
  return plainBytes + chunks * AEAD_TAG_BYTES;
}

/** The kinds of pack (DESIGN.md, "Pack kinds") and the types of payload a manifest may list. */
export const PACK_KINDS = ['product', 'servicepack', 'license', 'trust', 'agent'] as const;
export const PAYLOAD_TYPES = ['app', 'system', 'data', 'config', 'db', 'license', 'hooks', 'trust', 'agent'] as const;

/** The product name of an agent pack (kind `agent`): the agent updating itself (docs/self-update.md). */
export const AGENT_PRODUCT = 'sonde-agent';

export type PackKind = (typeof PACK_KINDS)[number];
export type PayloadType = (typeof PAYLOAD_TYPES)[number];
