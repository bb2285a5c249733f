import type { X509Certificate } from 'node:crypto';

export interface CertSummary {
  subject: string;
  issuer: string;
  serial: string;
  fingerprint256: string;
  validFrom: string;
  validTo: string;
  ca: boolean;
}

const oneLine = (dn: string): string => dn.split('\n').join(', ');

export function summariseCert(c: X509Certificate): CertSummary {
  return {
    subject: oneLine(c.subject),
    issuer: oneLine(c.issuer),
    serial: c.serialNumber,
    fingerprint256: c.fingerprint256.replace(/:/g, '').toLowerCase(),
    validFrom: new Date(c.validFrom).toISOString(),
    validTo: new Date(c.validTo).toISOString(),
    ca: c.ca,
  };
}
