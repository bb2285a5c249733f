import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { x as extractTar } from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { makeProbe, startDaemon, type InProcessDaemon, type ProbeFixture } from '../helpers/daemon-harness.js';
import { stopApp } from '../helpers/probe.js';
import { sonde } from '../helpers/probe-state.js';
import { serverSamples, startTestServer, tempDir, waitFor, type TestServer } from './harness.js';

/**
 * Remote diagnostics (issue 23), with a real agent daemon and the built CLI:
 *
 *   sonde probe ID diagnose [--wait] [-o FILE]     # FILE: the bundle (tar.gz)
 *
 * The bundle holds what a support engineer needs (status, state, slots, deployments, receipts,
 * the app's last words, configs, the agent's recent log), and never a site variable's value.
 */
const CANARY = 'canary-Diag-Secret-91c4e';
const ID = 'diag-probe';

let s: TestServer;
let samples: SamplePaths;
let dir: string;
let probe: ProbeFixture;
let daemon: InProcessDaemon | null = null;
let viewer: string;

function cli(args: string[], token = s.admin, cwd?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return sonde(args, '', cwd, { SONDE_SERVER: s.url, SONDE_TOKEN: token });
}

async function unpack(file: string): Promise<{ dir: string; files: string[]; text: string }> {
  const out = join(dir, `unpacked-${Date.now()}`);
  await mkdir(out, { recursive: true });
  await extractTar({ file, cwd: out });
  const files: string[] = [];
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name), `${rel}${e.name}/`);
      else files.push(`${rel}${e.name}`);
    }
  };
  await walk(out, '');
  let text = '';
  for (const f of files) text += await readFile(join(out, f), 'utf8');
  return { dir: out, files: files.sort(), text };
}

beforeAll(async () => {
  samples = await serverSamples();
  dir = await tempDir('sonde-diagnostics-');
  s = await startTestServer({ keyring: samples.keys.rootCert });
  const shas: string[] = [];
  for (const v of ['1.0.0', '1.1.0'] as const) {
    const bytes = await readFile(samples.packs[v]);
    expect((await s.api('POST', '/api/v1/packs', { body: bytes })).status).toBe(201);
    shas.push(createHash('sha256').update(bytes).digest('hex'));
  }
  viewer = (await s.api<{ token: string }>('POST', '/api/v1/tokens', { body: { name: 'watcher', role: 'viewer' } })).body.token;
  probe = await makeProbe(dir, { samples, mqttUrl: s.mqttUrl, httpBase: s.url, id: ID, siteVars: { CollectorPassword: CANARY } });
  await writeFile(probe.credentialsPath, `${JSON.stringify(await s.enroll(ID), null, 2)}\n`, { mode: 0o600 });
  daemon = await startDaemon(probe);
  await waitFor('the agent online', async () => (await s.api<{ online: boolean }>('GET', `/api/v1/probes/${ID}`)).body.online, 20_000);
  // 1.1.0's config holds the site variable's value, filled in by the agent.
  for (const sha of shas) {
    const c = await s.server.context.commands.send(ID, { type: 'install', packSha256: sha });
    await waitFor('the install', async () => (await s.server.context.commands.get(c.commandId)).status === 'succeeded', 60_000);
  }
  expect(await readFile(join(probe.root, 'etc', 'config.json'), 'utf8')).toContain(CANARY);
});
afterAll(async () => {
  await daemon?.stop();
  await stopApp(probe.root).catch(() => undefined);
  await s.close();
  await rm(dir, { recursive: true, force: true });
});

describe('sonde probe ID diagnose', () => {
  it('brings back a bundle with what support needs, in which no site variable value appears', async () => {
    const out = join(dir, 'bundle.tar.gz');
    const started = Date.now();
    const r = await cli(['probe', ID, 'diagnose', '--wait', '-o', out]);
    const took = Date.now() - started;
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^wrote .*bundle\.tar\.gz \(/);
    const b = await unpack(out);
    expect(b.files).toEqual(
      expect.arrayContaining(['bundle.json', 'status.json', 'state.json', 'slots.json', 'deployments.json', 'app-last-words.txt', 'config.json', 'agent-config.json', 'agent.log']),
    );
    expect(b.files.some((f) => f.startsWith('receipts/'))).toBe(true);
    const status = JSON.parse(await readFile(join(b.dir, 'status.json'), 'utf8')) as { version: string };
    expect(status.version).toBe('1.1.0');
    const deployments = JSON.parse(await readFile(join(b.dir, 'deployments.json'), 'utf8')) as { outcome: string; transitions: unknown[] }[];
    expect(deployments[0]).toMatchObject({ outcome: 'committed' });
    expect(deployments[0]!.transitions.length).toBeGreaterThan(3);
    expect(await readFile(join(b.dir, 'agent.log'), 'utf8')).toContain('install committed');
    const config = JSON.parse(await readFile(join(b.dir, 'config.json'), 'utf8')) as { collector: { password: string } };
    expect(config.collector.password).toBe('[site variable CollectorPassword]');
    // The canary: in no file of the bundle, in any form.
    expect(b.text).not.toContain(CANARY);
    expect((await readFile(out)).includes(Buffer.from(CANARY))).toBe(false);
    const manifest = JSON.parse(await readFile(join(b.dir, 'bundle.json'), 'utf8')) as { probeId: string; masked: { siteVariables: string[] } };
    expect(manifest).toMatchObject({ probeId: ID, masked: { siteVariables: ['CollectorPassword'] } });
    const size = (await readFile(out)).length;
    expect(size).toBeLessThanOrEqual(1024 * 1024);
    console.log(`diagnostics: a ${size}-byte bundle in ${took} ms, request to file, on loopback (through the CLI)`);
  });

  it('lists the bundle for a viewer, but a viewer can neither request nor download one (audited requests)', async () => {
    const list = await s.api<{ commandId: string; size: number; sha256: string }[]>('GET', `/api/v1/probes/${ID}/diagnostics`, { token: viewer });
    expect(list.status).toBe(200);
    expect(list.body.length).toBe(1);
    const ask = await cli(['probe', ID, 'diagnose'], viewer);
    expect(ask.code).toBe(1);
    expect(ask.stderr).toContain('FORBIDDEN');
    expect((await s.api('GET', `/api/v1/diagnostics/${list.body[0]!.commandId}`, { token: viewer })).status).toBe(403);
    const audit = await s.api<{ action: string; status: number }[]>('GET', '/api/v1/audit?limit=50');
    const asks = audit.body.filter((a) => a.action === 'POST /api/v1/probes/:id/diagnose');
    expect(asks.map((a) => a.status).sort()).toEqual([202, 403]);
  });

  it('a probe may upload only against a diagnose command addressed to it, within its size cap', async () => {
    const other = await s.enroll('diag-other');
    const queued = await cli(['probe', ID, 'diagnose', '--json']);
    expect(queued.code, queued.stderr).toBe(0);
    const { commandId } = JSON.parse(queued.stdout) as { commandId: string };
    const put = (probeId: string, token: string, cmd: string, headers: Record<string, string>, body = Buffer.from('x')) =>
      s.api<{ code: string }>('PUT', `/api/v1/probes/${probeId}/diagnostics/${cmd}`, { token, body, headers: { 'content-type': 'application/gzip', ...headers } });
    const sha = createHash('sha256').update('x').digest('hex');
    // Another probe's token, for this probe's upload: refused at the door.
    expect((await put(ID, other.token, commandId, { 'content-range': 'bytes 0-0/1', 'x-sonde-sha256': sha })).status).toBe(403);
    // Its own id, but a command that is not a diagnose request for it.
    expect((await put('diag-other', other.token, commandId, { 'content-range': 'bytes 0-0/1', 'x-sonde-sha256': sha })).body.code).toBe('NOT_FOUND');
    await waitFor('the real upload', async () => (await s.api<{ status: string }>('GET', `/api/v1/commands/${commandId}`)).body.status === 'succeeded', 30_000);
    const list = await s.api<{ commandId: string }[]>('GET', `/api/v1/probes/${ID}/diagnostics`);
    expect(list.body.map((b) => b.commandId)).toContain(commandId);
  });
});
