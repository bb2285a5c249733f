import forge from 'node-forge';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIP as netIsIP } from 'node:net';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import { createRootCa, randomSerialHex } from '../../../images/src/keys/issue.js';
import type { DataPaths } from '../data-dir.js';

/**
 * The server's own CA (DESIGN.md, "Fleet server"): made with node-forge on the first start, it
 * issues the TLS certificate for the --listen addresses, and probes pin it from their credential
 * file. It is not a vendor root: packs are verified against the keyring, never against this CA.
 */
export interface ServerCa {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface TlsMaterial {
  readonly certPem: string;
  readonly keyPem: string;
  readonly caPem: string;
}

const CA_NAME = 'Sonde fleet server CA';
const LEAF_DAYS = 825;
const RENEW_BEFORE_MS = 30 * 86_400_000;

export async function ensureCa(p: DataPaths): Promise<{ ca: ServerCa; created: boolean }> {
  try {
    return { ca: { certPem: await readFile(p.caCert, 'utf8'), keyPem: await readFile(p.caKey, 'utf8') }, created: false };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const issued = await createRootCa({ commonName: CA_NAME });
  // The key first: a certificate without its key would be taken for a whole CA on the next start.
  await writeFileAtomic(p.caKey, issued.keyPem, { mode: 0o600 });
  await writeFileAtomic(p.caCert, issued.certPem, { mode: 0o644 });
  return { ca: { certPem: issued.certPem, keyPem: issued.keyPem }, created: true };
}

/** A server certificate naming these addresses (IP SANs, plus localhost), renewed when they change. */
export async function ensureTlsCertificate(p: DataPaths, ca: ServerCa, addresses: readonly string[]): Promise<TlsMaterial> {
  const sans = [...new Set(['127.0.0.1', ...addresses])].sort();
  try {
    const meta = JSON.parse(await readFile(p.tlsMeta, 'utf8')) as { sans?: string[] };
    const certPem = await readFile(p.tlsCert, 'utf8');
    const keyPem = await readFile(p.tlsKey, 'utf8');
    const cert = new X509Certificate(certPem);
    const fresh = Date.parse(cert.validTo) - Date.now() > RENEW_BEFORE_MS;
    if (fresh && JSON.stringify(meta.sans) === JSON.stringify(sans) && cert.verify(new X509Certificate(ca.certPem).publicKey)) {
      return { certPem, keyPem, caPem: ca.certPem };
    }
  } catch {
    // missing or unreadable: issue a new one
  }
  const issued = issueServerCertificate(ca, sans);
  await writeFileAtomic(p.tlsKey, issued.keyPem, { mode: 0o600 });
  await writeFileAtomic(p.tlsCert, issued.certPem);
  await writeFileAtomic(p.tlsMeta, `${JSON.stringify({ sans }, null, 2)}\n`);
  return { ...issued, caPem: ca.certPem };
}

function issueServerCertificate(ca: ServerCa, addresses: readonly string[]): { certPem: string; keyPem: string } {
  // An RSA-2048 leaf from Node's generator; forge only encodes and signs it with the CA key.
  const pair = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const caCert = forge.pki.certificateFromPem(ca.certPem);
  const caKey = forge.pki.privateKeyFromPem(ca.keyPem) as forge.pki.rsa.PrivateKey;
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(pair.publicKey.export({ type: 'spki', format: 'pem' }) as string);
  cert.serialNumber = randomSerialHex();
  const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000 - 60_000);
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = new Date(notBefore.getTime() + LEAF_DAYS * 86_400_000);
  const utf8 = forge.asn1.Type.UTF8 as unknown as forge.asn1.Class;
  cert.setSubject([
    { name: 'commonName', value: 'Sonde fleet server', valueTagClass: utf8 },
    { name: 'organizationName', value: 'Sonde', valueTagClass: utf8 },
  ]);
  cert.setIssuer(caCert.subject.attributes);
  const altNames = [
    { type: 2, value: 'localhost' },
    ...addresses.filter((a) => netIsIP(a) !== 0).map((ip) => ({ type: 7, ip })),
  ];
  const ski = caCert.getExtension('subjectKeyIdentifier') as { subjectKeyIdentifier?: string } | undefined;
  const caSki = ski?.subjectKeyIdentifier !== undefined ? forge.util.hexToBytes(ski.subjectKeyIdentifier) : caCert.generateSubjectKeyIdentifier().getBytes();
  cert.setExtensions([
    { name: 'basicConstraints', critical: true, cA: false },
    { name: 'keyUsage', critical: true, digitalSignature: true, keyEncipherment: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames },
    { name: 'subjectKeyIdentifier' },
    { name: 'authorityKeyIdentifier', keyIdentifier: caSki },
  ]);
  cert.sign(caKey, forge.md.sha256.create());
  return {
    certPem: forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n'),
    keyPem: pair.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
  };
}
