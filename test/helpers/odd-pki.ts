import { execFile } from 'node:child_process';
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Signer } from '../../pack/src/writer.js';

const run = promisify(execFile);

/**
 * Certificates that break RFC 5280 in the ways the trust store must catch, made with the openssl
 * CLI (ECDSA P-256: fast, and an external PKI's kind of key). Each profile below is one section
 * of a self-contained config, so the host's openssl.cnf cannot add or change an extension.
 */
const CONFIG = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ca_pathlen0]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ca_no_cert_sign]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ca_false]
basicConstraints = critical, CA:FALSE
keyUsage = critical, keyCertSign, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ca_eku_server]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ca_eku_any]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
extendedKeyUsage = anyExtendedKeyUsage
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ca_eku_code]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[ca_no_key_usage]
basicConstraints = critical, CA:TRUE
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_no_eku]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
[leaf_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyCertSign
extendedKeyUsage = codeSigning
[leaf_no_key_usage]
basicConstraints = critical, CA:FALSE
extendedKeyUsage = codeSigning
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[leaf_any_eku]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = anyExtendedKeyUsage
[leaf_no_digital_signature]
basicConstraints = critical, CA:FALSE
keyUsage = critical, keyAgreement
extendedKeyUsage = codeSigning
[leaf_no_akid]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = codeSigning
subjectKeyIdentifier = none
authorityKeyIdentifier = none
[root_unknown_critical]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
1.3.6.1.4.1.55555.2 = critical, ASN1:NULL
[leaf_unknown_critical]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = codeSigning
1.3.6.1.4.1.55555.1 = critical, ASN1:NULL
`;

export type OddProfile =
  | 'root'
  | 'ca_pathlen0'
  | 'ca'
  | 'ca_no_cert_sign'
  | 'ca_false'
  | 'ca_eku_server'
  | 'ca_eku_any'
  | 'ca_eku_code'
  | 'ca_no_key_usage'
  | 'leaf'
  | 'leaf_any_eku'
  | 'leaf_no_eku'
  | 'leaf_ca'
  | 'leaf_no_key_usage'
  | 'leaf_no_digital_signature'
  | 'leaf_unknown_critical'
  /** A valid code-signing leaf without key identifiers: only names tie it to its issuer. */
  | 'leaf_no_akid'
  | 'root_unknown_critical';

export interface OddCert {
  readonly name: string;
  readonly pem: string;
  readonly cert: X509Certificate;
  readonly keyPath: string;
  readonly certPath: string;
}

/**
 * A folder of openssl-made certificates: `make(name, profile, issuer?)` issues one (self-signed
 * without an issuer). `cn` gives it another certificate's common name (an impostor); the files
 * keep `name`.
 */
export async function oddPki(dir: string): Promise<{
  make: (name: string, profile: OddProfile, issuer?: OddCert, cn?: string) => Promise<OddCert>;
  signer: (leaf: OddCert, ...cas: OddCert[]) => Promise<Signer>;
}> {
  await mkdir(dir, { recursive: true });
  const config = join(dir, 'openssl.cnf');
  await writeFile(config, CONFIG);
  const serial = (): string => `0x${(randomBytes(16)[0]! & 0x7f).toString(16).padStart(2, '0')}${randomBytes(15).toString('hex')}`;
  const openssl = (args: string[]): Promise<unknown> => run('openssl', args);
  return {
    async make(name, profile, issuer, cn) {
      const keyPath = join(dir, `${name}.key`);
      const certPath = join(dir, `${name}.crt`);
      await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyPath]);
      const subject = `/O=Odd PKI/CN=${cn ?? name}`;
      if (issuer === undefined) {
        await openssl(['req', '-new', '-x509', '-config', config, '-extensions', profile, '-key', keyPath, '-subj', subject, '-sha256', '-days', '3650', '-set_serial', serial(), '-out', certPath]);
      } else {
        const csr = join(dir, `${name}.csr`);
        await openssl(['req', '-new', '-config', config, '-key', keyPath, '-subj', subject, '-out', csr]);
        await openssl(['x509', '-req', '-in', csr, '-CA', issuer.certPath, '-CAkey', issuer.keyPath, '-extfile', config, '-extensions', profile, '-sha256', '-days', '1825', '-set_serial', serial(), '-out', certPath]);
      }
      const pem = await readFile(certPath, 'utf8');
      return { name, pem, cert: new X509Certificate(pem), keyPath, certPath };
    },
    async signer(leaf, ...cas) {
      return { key: createPrivateKey(await readFile(leaf.keyPath, 'utf8')), chainPem: [leaf.pem, ...cas.map((c) => c.pem)] };
    },
  };
}
