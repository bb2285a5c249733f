import type { X509Certificate } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import {
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  KeyUsage,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_certificatePolicies,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectAltName,
  id_ce_subjectKeyIdentifier,
  type KeyUsageType,
} from '@peculiar/asn1-x509';
import { PackError } from './errors.js';

/**
 * What trust.ts needs of a certificate that node:crypto's X509Certificate does not expose: the
 * basic constraints' path length, the key usage bits and any critical extension this verifier
 * does not process. Parsed from the certificate's DER with @peculiar/asn1-x509, a maintained
 * ASN.1 schema library (DESIGN.md, "Trust": no hand-written DER). Only the verification pass
 * loads this module (through verify.ts): the library costs about 5 MiB resident, which the
 * agent's idle daemon does not carry.
 */
export interface CertExtensions {
  /** basicConstraints' pathLenConstraint; null when the certificate sets none. */
  readonly pathLenConstraint: number | null;
  /** The key usage bits; null when the certificate has no keyUsage extension. */
  readonly keyUsage: ReadonlySet<KeyUsageType> | null;
  /** The extended key usage OIDs; null when the certificate has none. */
  readonly extKeyUsage: readonly string[] | null;
  /** OIDs of critical extensions this verifier does not process (RFC 5280 4.2: such a certificate must be refused). */
  readonly unknownCritical: readonly string[];
}

/** The extensions the verifier processes, or that do not change what a certificate may sign. */
const UNDERSTOOD = new Set<string>([
  id_ce_basicConstraints,
  id_ce_keyUsage,
  id_ce_extKeyUsage,
  id_ce_subjectKeyIdentifier,
  id_ce_authorityKeyIdentifier,
  id_ce_subjectAltName,
  id_ce_certificatePolicies,
]);

const cache = new WeakMap<X509Certificate, CertExtensions>();

/** The extensions of `cert` (parsed once per certificate object). */
export function readExtensions(cert: X509Certificate): CertExtensions {
  const known = cache.get(cert);
  if (known) return known;
  let parsed: CertExtensions;
  try {
    const asn = AsnConvert.parse(cert.raw, Certificate);
    let pathLenConstraint: number | null = null;
    let keyUsage: Set<KeyUsageType> | null = null;
    let extKeyUsage: string[] | null = null;
    const unknownCritical: string[] = [];
    for (const ext of asn.tbsCertificate.extensions ?? []) {
      const value = ext.extnValue.buffer;
      if (ext.extnID === id_ce_basicConstraints) pathLenConstraint = AsnConvert.parse(value, BasicConstraints).pathLenConstraint ?? null;
      else if (ext.extnID === id_ce_keyUsage) keyUsage = new Set(AsnConvert.parse(value, KeyUsage).toJSON());
      else if (ext.extnID === id_ce_extKeyUsage) extKeyUsage = [...AsnConvert.parse(value, ExtendedKeyUsage)];
      else if (ext.critical && !UNDERSTOOD.has(ext.extnID)) unknownCritical.push(ext.extnID);
    }
    parsed = { pathLenConstraint, keyUsage, extKeyUsage, unknownCritical };
  } catch (e) {
    throw new PackError('CHAIN_INVALID', `certificate ${cert.subject.replace(/\n/g, ', ')} has extensions that do not parse`, { cause: e });
  }
  cache.set(cert, parsed);
  return parsed;
}
