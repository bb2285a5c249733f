import { execFile } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { readFile, stat, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCredentials } from '../../agent/src/daemon/credentials.js';
import { download } from '../../agent/src/link/download.js';
import { fetchNext } from '../../agent/src/link/poller.js';
import { serverSamples, SimProbe, startTestServer, tempDir, waitFor, type TestServer } from './harness.js';

/**
 * Enrollment and the --listen addresses: `sonde server enroll` prints exactly the credential file
 * the agent loads, and a probe off loopback reaches the server over HTTPS and MQTTS pinned to the
 * server CA named in that file.
 */
const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../dist/cli/src/sonde.js', import.meta.url));
let s: TestServer;
let scratch: string;
let packSha: string;

beforeAll(async () => {
  const samples = await serverSamples();
  scratch = await tempDir('sonde-enroll-');
  // 127.0.0.2 stands for the lab bridge: another address of this machine, served with TLS.
  s = await startTestServer({ keyring: samples.keys.rootCert, options: { listen: ['127.0.0.2'] } });
  const bytes = await readFile(samples.packs['1.0.0']);
  expect((await s.api('POST', '/api/v1/packs', { body: bytes })).status).toBe(201);
  packSha = createHash('sha256').update(bytes).digest('hex');
});
afterAll(async () => {
  await s.close();
  await rm(scratch, { recursive: true, force: true });
});

describe('sonde server enroll', () => {
  it('prints a credential file the agent loads once written 0600, naming the TLS address and the CA', async () => {
    const { stdout } = await run(process.execPath, [CLI, 'server', 'enroll', 'lab-probe-1', '--data', s.dir]);
    const file = join(scratch, 'enrollment.json');
    await writeFile(file, stdout, { mode: 0o600 });
    const creds = await loadCredentials(file);
    expect(creds).toMatchObject({ format: 'sonde-enrollment-1', probeId: 'lab-probe-1', server: { http: `https://127.0.0.2:${s.server.port}`, mqtt: `mqtts://127.0.0.2:${s.server.mqttPort}` } });
    expect(new X509Certificate(creds.ca!).subject).toContain('Sonde fleet server CA');
    expect(Object.keys(JSON.parse(stdout)).sort()).toEqual(['ca', 'format', 'probeId', 'server', 'token']);
    // The token works, and only the hash of it is stored.
    const db = await readFile(join(s.dir, 'sonde.db'));
    expect(db.includes(Buffer.from(creds.token))).toBe(false);
  });

  it('writes the file itself with --out, mode 0600, and a re-enrollment revokes the earlier token', async () => {
    const out = join(scratch, 'again.json');
    await run(process.execPath, [CLI, 'server', 'enroll', 'lab-probe-1', '--data', s.dir, '--out', out, '--server-url', 'http://127.0.0.1:1234']);
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const creds = await loadCredentials(out);
    expect(creds.server).toEqual({ http: 'http://127.0.0.1:1234', mqtt: `mqtt://127.0.0.1:${s.server.mqttPort}` });
    const first = JSON.parse(await readFile(join(scratch, 'enrollment.json'), 'utf8')) as { token: string };
    const old = await s.api('GET', '/api/v1/probes/lab-probe-1/next', { token: first.token });
    expect(old.status).toBe(401);
    const fresh = await s.api('GET', '/api/v1/probes/lab-probe-1/next', { token: creds.token });
    expect(fresh.status).toBe(204);
  });

  it('refuses a probe id that is not one', async () => {
    const r = await s.api<{ code: string }>('POST', '/api/v1/probes/Bad_ID/enroll', { body: {} });
    expect(r.status).toBe(400);
    expect(r.body.code).toBe('PROBE_ID_INVALID');
    await expect(run(process.execPath, [CLI, 'server', 'enroll', '../x', '--data', s.dir])).rejects.toMatchObject({ code: 1 });
  });
});

describe('--listen', () => {
  it('serves HTTPS and MQTTS there: the agent downloads, polls and connects with the pinned CA', async () => {
    const creds = (await s.api<{ probeId: string; token: string; server: { http: string; mqtt: string }; ca: string }>('POST', '/api/v1/probes/lab-probe-2/enroll', { body: {} })).body;
    expect(creds.server.http.startsWith('https://127.0.0.2:')).toBe(true);
    const probe = await SimProbe.connect(creds.server.mqtt, creds, { ca: creds.ca });
    try {
      const c = await s.server.context.commands.send('lab-probe-2', { type: 'install', packSha256: packSha });
      const cmd = await waitFor('the command over MQTTS', () => probe.commands.find((x) => x.commandId === c.commandId));
      if (cmd.type !== 'install') throw new Error('not an install');
      expect(cmd.pack.url.startsWith(`https://127.0.0.2:${s.server.port}/`)).toBe(true);
      const dest = join(scratch, 'pack.spk');
      const r = await download({ url: cmd.pack.url, sha256: cmd.pack.sha256, size: cmd.pack.size, dest, token: creds.token, ca: creds.ca, retry: { attempts: 2, minDelayMs: 10, maxDelayMs: 20 } });
      expect(r.path).toBe(dest);
      expect(await fetchNext({ baseUrl: creds.server.http, probeId: 'lab-probe-2', token: creds.token, ca: creds.ca })).not.toBeNull();
    } finally {
      await probe.close();
    }
  });

  it('is refused by a client that does not pin the server CA', async () => {
    const creds = (await s.api<{ token: string; server: { http: string } }>('POST', '/api/v1/probes/lab-probe-3/enroll', { body: {} })).body;
    await expect(fetchNext({ baseUrl: creds.server.http, probeId: 'lab-probe-3', token: creds.token })).rejects.toThrow(/certificate|self[- ]signed|issuer/i);
  });
});
