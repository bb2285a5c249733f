import { execFile } from 'node:child_process';
import { createPrivateKey, randomBytes, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * An "external PKI" as an operator might already run one: ECDSA P-256 with SHA-256, built with
 * the openssl CLI because node-forge cannot make EC certificates. Root CA → intermediate CA →
 * code-signing leaf. Everything is written into `dir` (which must exist); the caller removes it.
 */
export interface ExternalEcPki {
  rootPem: string;
  /** Leaf, then intermediate: what a pack signed by this PKI embeds. */
  chainPem: string;
  signerKey: KeyObject;
  rootPath: string;
}

// A self-contained config, so that the host's openssl.cnf cannot add or change extensions.
const CONFIG = `
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[v3_leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = codeSigning
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
`;

export async function makeExternalEcPki(dir: string): Promise<ExternalEcPki> {
  const path = (name: string): string => join(dir, name);
  const config = path('openssl.cnf');
  await writeFile(config, CONFIG);

  for (const name of ['root', 'intermediate', 'leaf']) {
    await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path(`${name}.key`)]);
  }
  await openssl([
    'req', '-new', '-x509', '-config', config, '-extensions', 'v3_root', '-key', path('root.key'),
    '-subj', '/O=Example Corp/CN=Example External Root', '-sha256', '-days', '3650',
    '-set_serial', randomSerial(), '-out', path('root.crt'),
  ]);
  await issue('intermediate', 'root', 'v3_intermediate', '/O=Example Corp/CN=Example Intermediate');
  await issue('leaf', 'intermediate', 'v3_leaf', '/O=Example Corp/CN=Example Release Signing');

  const [rootPem, intermediatePem, leafPem, leafKey] = await Promise.all(
    ['root.crt', 'intermediate.crt', 'leaf.crt', 'leaf.key'].map((f) => readFile(path(f), 'utf8')),
  );
  return {
    rootPem: rootPem ?? '',
    chainPem: `${leafPem ?? ''}${intermediatePem ?? ''}`,
    signerKey: createPrivateKey(leafKey ?? ''),
    rootPath: path('root.crt'),
  };

  async function issue(name: string, issuer: string, extensions: string, subject: string): Promise<void> {
    await openssl(['req', '-new', '-config', config, '-key', path(`${name}.key`), '-subj', subject, '-out', path(`${name}.csr`)]);
    await openssl([
      'x509', '-req', '-in', path(`${name}.csr`), '-CA', path(`${issuer}.crt`), '-CAkey', path(`${issuer}.key`),
      '-extfile', config, '-extensions', extensions, '-sha256', '-days', '1825',
      '-set_serial', randomSerial(), '-out', path(`${name}.crt`),
    ]);
  }
}

async function openssl(args: string[]): Promise<void> {
  await run('openssl', args, { env: { ...process.env, OPENSSL_CONF: '/dev/null' } });
}

/** 16 random bytes, positive, without a leading zero byte, as openssl's -set_serial takes it. */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return `0x${bytes.toString('hex')}`;
}
