import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { download } from '../../agent/src/link/download.js';
import { LinkError } from '../../agent/src/link/errors.js';
import { startFlakyServer, type FlakyServer } from '../helpers/flaky-http.js';

const run = promisify(execFile);

/** A CA (P-256, for speed) made with the openssl CLI: the kind of CA a fleet server pins. */
async function makeCa(dir: string, name: string): Promise<{ key: string; cert: string }> {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return { key, cert };
}

/** A server certificate for 127.0.0.1 (subjectAltName IP), issued by `ca`. */
async function issueServerCert(dir: string, ca: { key: string; cert: string }): Promise<{ key: string; cert: string }> {
  const key = join(dir, 'server.key');
  const csr = join(dir, 'server.csr');
  const cert = join(dir, 'server.crt');
  const ext = join(dir, 'server.ext');
  await writeFile(ext, 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n');
  await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr, '-subj', '/CN=127.0.0.1']);
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', '0x1001', '-days', '2', '-out', cert, '-extfile', ext]);
  return { key, cert };
}

let dir: string;
let server: FlakyServer;
let pinned: string;
let otherCa: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sonde-download-tls-'));
  const fleetCa = await makeCa(dir, 'fleet-ca');
  const stranger = await makeCa(dir, 'other-ca');
  const leaf = await issueServerCert(dir, fleetCa);
  pinned = await readFile(fleetCa.cert, 'utf8');
  otherCa = await readFile(stranger.cert, 'utf8');
  server = await startFlakyServer({ size: 2 * 1024 * 1024, tls: { key: await readFile(leaf.key, 'utf8'), cert: await readFile(leaf.cert, 'utf8') } });
});

afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('download over https', () => {
  it('fetches from a server whose certificate chains to the pinned CA, resuming after cuts', async () => {
    server.set({ cut: { afterBytes: 500_000, times: 2 } });
    const dest = join(dir, 'ok', 'pack.spk');

    await download({ url: server.url, sha256: server.sha256, size: server.body.length, dest, ca: pinned, retry: { attempts: 5, minDelayMs: 1, maxDelayMs: 5 } });

    expect(server.url.startsWith('https://127.0.0.1:')).toBe(true);
    expect(server.requests.at(-1)!.range).toMatch(/^bytes=\d+-$/);
    expect(createHash('sha256').update(await readFile(dest)).digest('hex')).toBe(server.sha256);
  });

  it.each([
    { trusting: 'only the system roots (no pinned CA)', ca: (): string | undefined => undefined },
    { trusting: 'another CA', ca: (): string | undefined => otherCa },
  ])('refuses the server, at once, when trusting $trusting', async ({ ca }) => {
    server.set({});
    const before = { requests: server.requests.length, tlsFailures: server.tlsFailures };
    const dest = join(dir, 'refused', 'pack.spk');
    const pin = ca();

    const e = await download({ url: server.url, sha256: server.sha256, size: server.body.length, dest, retry: { attempts: 50, minDelayMs: 1, maxDelayMs: 5 }, ...(pin ? { ca: pin } : {}) }).then(
      () => undefined,
      (err: unknown) => err,
    );

    expect(e).toBeInstanceOf(LinkError);
    expect((e as LinkError).code).toBe('DOWNLOAD_FAILED');
    expect((e as LinkError).message).toMatch(/certificate is not trusted \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/);
    // One handshake, no HTTP request: a certificate verdict is not retried.
    await new Promise((r) => setTimeout(r, 20));
    expect(server.requests.length).toBe(before.requests);
    expect(server.tlsFailures - before.tlsFailures).toBe(1);
    expect(await stat(dest).catch(() => undefined)).toBeUndefined();
  });
});
