import { execFile } from 'node:child_process';
import { readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { serverSamples, SimProbe, startTestServer, tempDir, type TestServer } from './harness.js';

/** The staff CLI as a subprocess: probes, probe (and its --set/--add flags), tokens, trust, gc, mosquitto-config. */
const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../dist/cli/src/sonde.js', import.meta.url));
let samples: SamplePaths;
let s: TestServer;
let env: Record<string, string>;

async function sonde(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
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
  s = await startTestServer();
  env = { SONDE_SERVER: s.url, SONDE_TOKEN: s.admin };
  const p = await SimProbe.connect(s.mqttUrl, await s.enroll('cli-1'));
  await p.state({ version: '1.0.0' });
  await p.close();
  await s.enroll('cli-2');
  await s.settle();
});
const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  await s.close();
  for (const c of cleanups) await c();
});

describe('the staff CLI', () => {
  it('sonde probes lists the inventory, as a table or JSON', async () => {
    const table = await sonde('probes');
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^ID +CHANNEL +VERSION/);
    expect(table.stdout).toMatch(/^cli-1 +stable +1\.0\.0/m);
    expect(table.stdout).toMatch(/2 probe\(s\)/);
    const json = await sonde('probes', '--json', '--channel', 'stable');
    const listed = JSON.parse(json.stdout) as { ok: boolean; probes: { id: string }[]; total: number };
    expect(listed).toMatchObject({ ok: true, total: 2 });
    expect(listed.probes.map((p) => p.id)).toEqual(['cli-1', 'cli-2']);
  });

  it('sonde probe ID --set-channel --add-group --add-tag changes it and shows it', async () => {
    const r = await sonde('probe', 'cli-2', '--set-channel', 'beta', '--add-group', 'g', '--add-tag', 't', '--add-tag', 'u', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ id: 'cli-2', channel: 'beta', groups: ['g'], tags: ['t', 'u'] });
    const shown = await sonde('probe', 'cli-2', '--remove-tag', 'u');
    expect(shown.stdout).toMatch(/^channel +beta$/m);
    expect(shown.stdout).toMatch(/^tags +t$/m);
    const bad = await sonde('probe', 'cli-2', '--set-channel', 'nightly');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^error BODY_INVALID: /);
    const missing = await sonde('probe', 'nope');
    expect(missing.stderr).toMatch(/^error PROBE_NOT_FOUND: /);
  });

  it('refuses without a server or a token, and names an unreachable server', async () => {
    const noToken = await run(process.execPath, [CLI, 'probes', '--server', s.url], { env: { ...process.env, SONDE_TOKEN: '' } }).catch((e: { code: number; stderr: string }) => e);
    expect(noToken).toMatchObject({ code: 2 });
    const down = await sonde('probes', '--server', 'http://127.0.0.1:1');
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^error SERVER_UNREACHABLE: /);
  });

  it('sonde server token create makes a token through the API or locally', async () => {
    const viaApi = await sonde('server', 'token', 'create', '--role', 'viewer', '--name', 'wall screen', '--json');
    expect(viaApi.code, viaApi.stderr).toBe(0);
    const t = JSON.parse(viaApi.stdout) as { token: string; role: string };
    expect(t.role).toBe('viewer');
    const local = await sonde('server', 'token', 'create', '--role', 'operator', '--name', 'night shift', '--data', s.dir, '--json');
    const u = JSON.parse(local.stdout) as { token: string };
    expect((await s.api('GET', '/api/v1/probes', { token: t.token })).status).toBe(200);
    expect((await s.api('PATCH', '/api/v1/probes/cli-1', { token: u.token, body: { addTags: ['n'] } })).status).toBe(200);
    const audit = (await s.api<{ actor: string; action: string }[]>('GET', '/api/v1/audit?limit=5')).body;
    expect(audit.some((e) => e.actor.startsWith('local:') && e.action === 'cli server token create')).toBe(true);
  });

  it('sonde server trust add takes a root for later uploads, while the server runs', async () => {
    const before = await s.api<{ code: string }>('POST', '/api/v1/packs', { body: await readFile(samples.packs['1.0.0']) });
    expect(before.body.code).toBe('KEYRING_EMPTY');
    const r = await sonde('server', 'trust', 'add', samples.keys.rootCert, '--data', s.dir);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^trusted: CN=Sample Vendor Root CA/);
    expect((await s.api('POST', '/api/v1/packs', { body: await readFile(samples.packs['1.0.0']) })).status).toBe(201);
    const again = await sonde('server', 'trust', 'add', samples.keys.rootCert, '--data', s.dir);
    expect(again.stdout).toMatch(/^already trusted/);
    const notRoot = await sonde('server', 'trust', 'add', samples.keys.signerCert, '--data', s.dir);
    expect(notRoot.code).toBe(1);
    expect(notRoot.stderr).toMatch(/KEYRING_INVALID/);
  });

  it('sonde server gc deletes packs nothing holds', async () => {
    const dry = await sonde('server', 'gc', '--data', s.dir, '--older-than', '0s', '--dry-run', '--json');
    expect(JSON.parse(dry.stdout)).toMatchObject({ dryRun: true });
    expect((JSON.parse(dry.stdout) as { deleted: string[] }).deleted).toHaveLength(1);
    const real = await sonde('server', 'gc', '--data', s.dir, '--older-than', '0s');
    expect(real.stdout).toMatch(/1 pack\(s\) deleted/);
    expect(await readdir(join(s.dir, 'packs'))).toEqual([]);
  });

  it('sonde server mosquitto-config writes the config, a 0600 password file with every probe, and %u ACLs', async () => {
    const cfg = await tempDir('sonde-mosq-cfg-');
    cleanups.push(() => rm(cfg, { recursive: true, force: true }));
    const out = join(cfg, 'mosquitto');
    const r = await sonde('server', 'mosquitto-config', '--data', s.dir, '--out', out, '--port', '18883');
    expect(r.code, r.stderr).toBe(0);
    const passwd = await readFile(join(out, 'passwd'), 'utf8');
    expect(passwd.split('\n').filter(Boolean).map((l) => l.split(':')[0])).toEqual(['sonde-server', 'cli-1', 'cli-2']);
    expect((await stat(join(out, 'passwd'))).mode & 0o777).toBe(0o600);
    const conf = await readFile(join(out, 'mosquitto.conf'), 'utf8');
    expect(conf).toMatch(/^allow_anonymous false$/m);
    expect(conf).toMatch(/^use_username_as_clientid true$/m);
    expect(conf).toMatch(/^max_queued_messages 1000000$/m);
    expect(conf).toMatch(/^listener 18883 127\.0\.0\.1$/m);
    // A later enrollment rewrites the remembered password file.
    await s.enroll('cli-3');
    expect(await readFile(join(out, 'passwd'), 'utf8')).toMatch(/^cli-3:\$7\$/m);
  });
});
