import type { X509Certificate } from 'node:crypto';
import * as asn1js from 'asn1js';
import { PackError } from './errors.js';

/**
 * What trust.ts needs of a certificate that node:crypto's X509Certificate does not expose: the
 * basic constraints' path length, the key usage bits and any critical extension this verifier
 * does not process. The DER is decoded by asn1js, a maintained ASN.1 library (DESIGN.md, "Trust":
 * no hand-written DER); this file only walks the decoded structure of RFC 5280 4.1 and 4.2.
 * Only the verification pass loads it (through verify.ts), never the idle daemon.
 *
 * asn1js rather than @peculiar/asn1-x509 (tried first): the schema library's import took 87-107 ms
 * in every installer process, asn1js's about 30 ms, for the same three extensions.
 */
export type KeyUsageName =
  | 'digitalSignature'
  | 'nonRepudiation'
  | 'keyEncipherment'
  | 'dataEncipherment'
  | 'keyAgreement'
  | 'keyCertSign'
  | 'cRLSign'
  | 'encipherOnly'
  | 'decipherOnly';

/** KeyUsage ::= BIT STRING, bit 0 first (RFC 5280 4.2.1.3). */
const KEY_USAGE_BITS: readonly KeyUsageName[] = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
];

export interface CertExtensions {
  /** basicConstraints' pathLenConstraint; null when the certificate sets none. */
  readonly pathLenConstraint: number | null;
  /** The key usage bits; null when the certificate has no keyUsage extension. */
  readonly keyUsage: ReadonlySet<KeyUsageName> | null;
  /** OIDs of critical extensions this verifier does not process (RFC 5280 4.2: such a certificate must be refused). */
  readonly unknownCritical: readonly string[];
}

const OID_BASIC_CONSTRAINTS = '2.5.29.19';
const OID_KEY_USAGE = '2.5.29.15';

/** The extensions the verifier processes, or that do not change what a certificate may sign. */
const UNDERSTOOD = new Set<string>([
  OID_BASIC_CONSTRAINTS,
  OID_KEY_USAGE,
  '2.5.29.37', // extendedKeyUsage (node:crypto's X509Certificate.keyUsage)
  '2.5.29.14', // subjectKeyIdentifier
  '2.5.29.35', // authorityKeyIdentifier
  '2.5.29.17', // subjectAltName
  '2.5.29.32', // certificatePolicies
]);

function decode(bytes: ArrayBuffer | Uint8Array, what: string): asn1js.AsnType {
  const r = asn1js.fromBER(bytes);
  if (r.offset === -1) throw new Error(`${what} does not decode`);
  return r.result;
}

function children(node: asn1js.AsnType, what: string): asn1js.AsnType[] {
  if (!(node instanceof asn1js.Constructed)) throw new Error(`${what} is not a constructed value`);
  return node.valueBlock.value;
}

/** The Extension SEQUENCEs of a certificate: TBSCertificate's [3] EXPLICIT field, when present. */
function extensionsOf(der: Buffer): asn1js.AsnType[] {
  const [tbs] = children(decode(der, 'the certificate'), 'the certificate');
  if (tbs === undefined) throw new Error('the certificate has no TBSCertificate');
  const tagged = children(tbs, 'TBSCertificate').find((e) => e.idBlock.tagClass === 3 && e.idBlock.tagNumber === 3);
  if (tagged === undefined) return [];
  const [list] = children(tagged, 'the extensions field');
  return list === undefined ? [] : children(list, 'Extensions');
}

const cache = new WeakMap<X509Certificate, CertExtensions>();

/** The extensions of `cert` (parsed once per certificate object). */
export function readExtensions(cert: X509Certificate): CertExtensions {
  const known = cache.get(cert);
  if (known) return known;
  let parsed: CertExtensions;
  try {
    let pathLenConstraint: number | null = null;
    let keyUsage: Set<KeyUsageName> | null = null;
    const unknownCritical: string[] = [];
    for (const ext of extensionsOf(cert.raw)) {
      // Extension ::= SEQUENCE { extnID OBJECT IDENTIFIER, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
      const parts = children(ext, 'an Extension');
      const id = parts[0];
      const value = parts[parts.length - 1];
      if (!(id instanceof asn1js.ObjectIdentifier) || !(value instanceof asn1js.OctetString)) throw new Error('an Extension is malformed');
      const oid = id.valueBlock.toString();
      const critical = parts.length === 3 && parts[1] instanceof asn1js.Boolean ? parts[1].valueBlock.value : false;
      const inner = value.valueBlock.valueHexView;
      if (oid === OID_BASIC_CONSTRAINTS) {
        // BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER (0..MAX) OPTIONAL }
        const len = children(decode(inner, 'basicConstraints'), 'basicConstraints').find((e) => e instanceof asn1js.Integer);
        pathLenConstraint = len instanceof asn1js.Integer ? len.valueBlock.valueDec : null;
        if (pathLenConstraint !== null && pathLenConstraint < 0) throw new Error('a negative pathLenConstraint');
      } else if (oid === OID_KEY_USAGE) {
        const bits = decode(inner, 'keyUsage');
        if (!(bits instanceof asn1js.BitString)) throw new Error('keyUsage is not a BIT STRING');
        const bytes = bits.valueBlock.valueHexView;
        keyUsage = new Set(KEY_USAGE_BITS.filter((_, i) => i < bytes.length * 8 && ((bytes[i >> 3]! >> (7 - (i & 7))) & 1) === 1));
      } else if (critical && !UNDERSTOOD.has(oid)) {
        unknownCritical.push(oid);
      }
    }
    parsed = { pathLenConstraint, keyUsage, unknownCritical };
  } catch (e) {
    throw new PackError('CHAIN_INVALID', `certificate ${cert.subject.replace(/\n/g, ', ')} has extensions that do not parse`, { cause: e });
  }
  cache.set(cert, parsed);
  return parsed;
}
