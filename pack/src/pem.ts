import { X509Certificate } from 'node:crypto';

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every certificate in a PEM text, in order. Parsing is node:crypto's, never hand-written DER. */
export function parseCertificates(pem: string): X509Certificate[] {
  return (pem.match(PEM_CERT) ?? []).map((block) => {
    const cert = new X509Certificate(block);
    // node:crypto decodes the subject key only when it is first read; read it here, so that a
    // certificate whose key does not decode is refused as one that does not parse.
    void cert.publicKey;
    return cert;
  });
}
