import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { api, serverSamples, tempDir } from './harness.js';
import { freePort } from './mosquitto-harness.js';

/**
 * The fleet server's acceptance contract (issue 5), run exactly as written against the built CLI
 * (`npm test` builds first):
 *
 *   sonde server --data DIR --port P [--mqtt-port Q] [--keyring ROOT.crt]   # prints "admin token: <token>" once
 *   GET  /api/v1/openapi.json -> 200;  GET /metrics -> 200
 *   POST /api/v1/packs (raw .spk, Bearer) -> 201 trusted, 4xx with a code otherwise
 *   GET  /api/v1/probes -> JSON list with a token; 401 without
 *   SONDE_SERVER=http://127.0.0.1:P SONDE_TOKEN=... sonde upload PACK
 */
const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../dist/cli/src/sonde.js', import.meta.url));

let samples: SamplePaths;
let root: string;
let data: string;
let port: number;
let child: ChildProcess | null = null;
let stdout = '';
let stderr = '';
let token: string;

/** A free port P whose P+1 is free too: the server's MQTT port defaults to P+1. */
async function freePortWithNext(): Promise<number> {
  const { createServer } = await import('node:net');
  const bindable = (p: number): Promise<boolean> =>
    new Promise((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(p, '127.0.0.1', () => s.close(() => resolve(true)));
    });
  for (let i = 0; i < 50; i++) {
    const p = await freePort();
    if (p < 65535 && (await bindable(p + 1))) return p;
  }
  throw new Error('no free pair of ports');
}

async function startServer(): Promise<string> {
  stdout = '';
  stderr = '';
  const c = spawn(process.execPath, [CLI, 'server', '--data', data, '--port', String(port), '--keyring', samples.keys.rootCert], { stdio: ['ignore', 'pipe', 'pipe'] });
  child = c;
  c.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  c.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const until = Date.now() + 30_000;
  while (!/^mqtt /m.test(stdout) || !stdout.endsWith('\n')) {
    if (c.exitCode !== null) throw new Error(`the server exited ${c.exitCode}: ${stderr}`);
    if (Date.now() > until) throw new Error(`the server did not start: ${stdout} ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  // The admin-token line (first start only) is written with the endpoints, after they listen.
  await new Promise((r) => setTimeout(r, 100));
  return stdout;
}

async function stopServer(): Promise<number | null> {
  const c = child;
  child = null;
  if (!c || c.exitCode !== null) return c?.exitCode ?? null;
  const exited = new Promise<number | null>((r) => c.once('exit', (code) => r(code)));
  c.kill('SIGTERM');
  return exited;
}

async function sonde(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

beforeAll(async () => {
  samples = await serverSamples();
  root = await tempDir('sonde-server-contract-');
  data = join(root, 'data');
  port = await freePortWithNext();
});
afterAll(async () => {
  await stopServer();
  await rm(root, { recursive: true, force: true });
});

describe('the fleet server contract', () => {
  it('starts on an empty data directory and prints the admin token once, on its own line', async () => {
    const out = await startServer();
    const m = /^admin token: (\S+)$/m.exec(out);
    expect(m, out).not.toBeNull();
    token = m![1]!;
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(out).toContain(`http  http://127.0.0.1:${port}`);
    expect(out).toContain(`mqtt  mqtt://127.0.0.1:${port + 1}`);
    // The token is in no log line, and the data directory holds only its hash.
    expect(stderr).not.toContain(token);
    expect((await readFile(join(data, 'sonde.db'))).includes(Buffer.from(token))).toBe(false);
  });

  it('serves GET /api/v1/openapi.json and GET /metrics without a token', async () => {
    const base = `http://127.0.0.1:${port}`;
    const doc = await api<{ openapi: string; paths: Record<string, unknown> }>(base, 'GET', '/api/v1/openapi.json');
    expect(doc.status).toBe(200);
    expect(doc.body.openapi).toMatch(/^3\./);
    expect(Object.keys(doc.body.paths)).toContain('/api/v1/packs');
    const metrics = await api<string>(base, 'GET', '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.headers['content-type']).toMatch(/^text\/plain/);
    expect(metrics.body).toMatch(/^# TYPE sonde_probes gauge$/m);
  });

  it('takes a trusted pack (201) and refuses others with 4xx and a code', async () => {
    const base = `http://127.0.0.1:${port}`;
    const ok = await api<{ sha256: string }>(base, 'POST', '/api/v1/packs', { token, body: await readFile(samples.packs['1.0.0']) });
    expect(ok.status).toBe(201);
    expect(ok.body.sha256).toMatch(/^[0-9a-f]{64}$/);
    const bad = await api<{ code: string }>(base, 'POST', '/api/v1/packs', { token, body: (await readFile(samples.packs['1.1.0'])).subarray(0, 5000) });
    expect(bad.status).toBeGreaterThanOrEqual(400);
    expect(bad.status).toBeLessThan(500);
    expect(bad.body.code).toMatch(/^[A-Z_]+$/);
    const anonymous = await api<{ code: string }>(base, 'POST', '/api/v1/packs', { body: await readFile(samples.packs['1.1.0']) });
    expect(anonymous.status).toBe(401);
  });

  it('lists probes as JSON with a token, and answers 401 without one', async () => {
    const base = `http://127.0.0.1:${port}`;
    const withToken = await api<unknown>(base, 'GET', '/api/v1/probes', { token });
    expect(withToken.status).toBe(200);
    expect(Array.isArray(withToken.body)).toBe(true);
    const without = await api<{ code: string }>(base, 'GET', '/api/v1/probes');
    expect(without.status).toBe(401);
    expect(without.body.code).toBe('AUTH_REQUIRED');
  });

  it('uploads with SONDE_SERVER and SONDE_TOKEN: sonde upload PACK', async () => {
    const env = { SONDE_SERVER: `http://127.0.0.1:${port}`, SONDE_TOKEN: token };
    const r = await sonde(['upload', samples.packs['1.1.0']], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^stored [0-9a-f]{64} {2}probe-app 1\.1\.0 \(servicepack/);
    const json = await sonde(['upload', samples.packs['1.1.0'], '--json'], env);
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ version: '1.1.0', created: false });
    const refused = await sonde(['upload', samples.packs['1.1.0']], { ...env, SONDE_TOKEN: 'x'.repeat(43) });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^error AUTH_REQUIRED: /);
    const packs = await sonde(['packs', '--json'], env);
    expect(JSON.parse(packs.stdout)).toMatchObject({ ok: true, packs: [expect.anything(), expect.anything()] });
    expect((JSON.parse(packs.stdout) as { packs: unknown[] }).packs).toHaveLength(2);
  });

  it('stops on SIGTERM and prints no admin token on the next start of the same directory', async () => {
    expect(await stopServer()).toBe(0);
    const out = await startServer();
    expect(out).not.toMatch(/admin token/);
    const r = await api<unknown[]>(`http://127.0.0.1:${port}`, 'GET', '/api/v1/probes', { token });
    expect(r.status).toBe(200);
    // One server per data directory.
    const second = await sonde(['server', '--data', data, '--port', String(await freePort())]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(/DATA_DIR_IN_USE/);
  });

  it('keeps the admin token for a later start when the first start fails on a taken port', async () => {
    await stopServer();
    const { createServer } = await import('node:net');
    const dir = join(root, 'taken-port');
    const busyPort = await freePortWithNext();
    const squatter = createServer();
    await new Promise<void>((r) => squatter.listen(busyPort + 1, '127.0.0.1', () => r()));
    try {
      const failed = await sonde(['server', '--data', dir, '--port', String(busyPort), '--keyring', samples.keys.rootCert]);
      expect(failed.code).toBe(1);
      expect(failed.stderr).toMatch(/LISTEN_ADDRESS_INVALID.*EADDRINUSE/);
      expect(failed.stdout).not.toMatch(/admin token/);
    } finally {
      await new Promise((r) => squatter.close(r));
    }
    // The folder is made; the token that was never shown was never made either.
    const saved = { data, port };
    data = dir;
    port = await freePortWithNext();
    try {
      const out = await startServer();
      const m = /^admin token: (\S+)$/m.exec(out);
      expect(m, out).not.toBeNull();
      expect((await api<unknown[]>(`http://127.0.0.1:${port}`, 'GET', '/api/v1/probes', { token: m![1]! })).status).toBe(200);
    } finally {
      expect(await stopServer()).toBe(0);
      ({ data, port } = saved);
    }
  });
});
