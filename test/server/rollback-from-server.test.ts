import { createHash } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { makeProbe, startDaemon, type InProcessDaemon, type ProbeFixture } from '../helpers/daemon-harness.js';
import { stopApp } from '../helpers/probe.js';
import { sonde } from '../helpers/probe-state.js';
import { serverSamples, startTestServer, tempDir, waitFor, type TestServer } from './harness.js';

/**
 * Rollback from the server (issue 23), with a real agent daemon: `sonde rollback --probe ID` and
 * `sonde rollback --rollout RID` (the contract: exit 0 once the commands are queued) send rollback
 * commands; the agent runs its own rollback, with its own refusals, and reports the outcome
 * against the command. The built CLI is the client, as a support engineer runs it.
 */
let s: TestServer;
let samples: SamplePaths;
let dir: string;
let probe: ProbeFixture;
let daemon: InProcessDaemon | null = null;
const sha: Record<string, string> = {};
let viewer: string;

interface Detail {
  version: string | null;
  online: boolean;
  deployments: { outcome: string | null; version: string | null; errorCode: string | null }[];
}
interface CommandView {
  commandId: string;
  type: string;
  status: string;
  errorCode: string | null;
}

const ID = 'rb-probe';

function cli(args: string[], token = s.admin): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return sonde(args, '', undefined, { SONDE_SERVER: s.url, SONDE_TOKEN: token });
}

async function finished(commandId: string): Promise<CommandView> {
  return waitFor(
    `command ${commandId} finished`,
    async () => {
      const c = (await s.api<CommandView>('GET', `/api/v1/commands/${commandId}`)).body;
      return ['succeeded', 'failed', 'refused', 'cancelled'].includes(c.status) ? c : null;
    },
    60_000,
  );
}

async function install(version: string): Promise<void> {
  const c = await s.server.context.commands.send(ID, { type: 'install', packSha256: sha[version]! });
  const done = await finished(c.commandId);
  expect(done, JSON.stringify(done)).toMatchObject({ status: 'succeeded' });
  await waitFor(`a state naming ${version}`, async () => (await s.api<Detail>('GET', `/api/v1/probes/${ID}`)).body.version === version, 20_000);
}

beforeAll(async () => {
  samples = await serverSamples();
  dir = await tempDir('sonde-rollback-');
  s = await startTestServer({ keyring: samples.keys.rootCert });
  for (const v of ['1.0.0', '1.1.0'] as const) {
    const bytes = await readFile(samples.packs[v]);
    expect((await s.api('POST', '/api/v1/packs', { body: bytes })).status).toBe(201);
    sha[v] = createHash('sha256').update(bytes).digest('hex');
  }
  viewer = (await s.api<{ token: string }>('POST', '/api/v1/tokens', { body: { name: 'watcher', role: 'viewer' } })).body.token;
  probe = await makeProbe(dir, { samples, mqttUrl: s.mqttUrl, httpBase: s.url, id: ID, siteVars: { CollectorPassword: 'rollback-test-secret' } });
  await writeFile(probe.credentialsPath, `${JSON.stringify(await s.enroll(ID), null, 2)}\n`, { mode: 0o600 });
  await s.api('PATCH', `/api/v1/probes/${ID}`, { body: { addGroups: ['site-north'] } });
  daemon = await startDaemon(probe);
  await waitFor('the agent online', async () => (await s.api<Detail>('GET', `/api/v1/probes/${ID}`)).body.online, 20_000);
});
afterAll(async () => {
  await daemon?.stop();
  await stopApp(probe.root).catch(() => undefined);
  await s.close();
  await rm(dir, { recursive: true, force: true });
});

describe('rollback from the server', () => {
  it('a probe with nothing to return to refuses with the agent\'s own code (ROLLBACK_UNAVAILABLE) and keeps running its release', async () => {
    await install('1.0.0');
    const r = await cli(['rollback', '--probe', ID, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const { commands } = JSON.parse(r.stdout) as { commands: CommandView[] };
    expect(commands).toHaveLength(1);
    expect(commands[0]).toMatchObject({ type: 'rollback' });
    expect(await finished(commands[0]!.commandId)).toMatchObject({ status: 'failed', errorCode: 'ROLLBACK_UNAVAILABLE' });
    expect((await s.api<Detail>('GET', `/api/v1/probes/${ID}`)).body.version).toBe('1.0.0');
  });

  it('sonde rollback --probe returns a probe to its previous committed release and exits 0 once queued', async () => {
    await install('1.1.0');
    const r = await cli(['rollback', '--probe', ID]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/queued 1 rollback command/);
    const commandId = /\b(c-[0-9a-z]+-[0-9a-f]+)\b/.exec(r.stdout)![1]!;
    expect(await finished(commandId)).toMatchObject({ status: 'succeeded', errorCode: null });
    await waitFor('a state naming 1.0.0', async () => (await s.api<Detail>('GET', `/api/v1/probes/${ID}`)).body.version === '1.0.0', 20_000);
    const d = (await s.api<Detail>('GET', `/api/v1/probes/${ID}`)).body;
    expect(d.deployments[0]).toMatchObject({ outcome: 'committed', version: '1.0.0' });
  });

  it('sonde rollback --rollout returns every probe the rollout committed, and the rollback is not counted as the rollout\'s progress', async () => {
    const created = await s.api<{ id: string }>('POST', '/api/v1/rollouts', {
      body: { packSha256: sha['1.1.0'], target: { probeIds: [ID] }, strategy: { waves: [100], successThreshold: 1, errorThreshold: 0, advance: { mode: 'wait', seconds: 0 } } },
    });
    expect(created.status).toBe(201);
    const rid = created.body.id;
    await waitFor('the rollout completed', async () => (await s.api<{ state: string }>('GET', `/api/v1/rollouts/${rid}`)).body.state === 'completed', 60_000);
    await waitFor('a state naming 1.1.0', async () => (await s.api<Detail>('GET', `/api/v1/probes/${ID}`)).body.version === '1.1.0', 20_000);
    const r = await cli(['rollback', '--rollout', rid]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`rollout ${rid} is completed`);
    const commandId = /\b(c-[0-9a-z]+-[0-9a-f]+)\b/.exec(r.stdout)![1]!;
    expect(await finished(commandId)).toMatchObject({ status: 'succeeded' });
    await waitFor('a state naming 1.0.0', async () => (await s.api<Detail>('GET', `/api/v1/probes/${ID}`)).body.version === '1.0.0', 20_000);
    const status = (await s.api<{ progress: { committed: number; failed: number } }>('GET', `/api/v1/rollouts/${rid}`)).body;
    expect(status.progress).toMatchObject({ committed: 1, failed: 0 });
  });

  it('a rollout not yet finished is aborted first, so it sends no further install; with nothing committed, nothing is rolled back', async () => {
    const created = await s.api<{ id: string }>('POST', '/api/v1/rollouts', { body: { packSha256: sha['1.1.0'], target: { probeIds: [ID] }, draft: true } });
    expect(created.status).toBe(201);
    const r = await cli(['rollback', '--rollout', created.body.id]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`rollout ${created.body.id} is aborted`);
    expect(r.stdout).toContain('no probe to roll back');
    const missing = await cli(['rollback', '--rollout', 'ro-000000000000']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('ROLLOUT_NOT_FOUND');
  });

  it('a viewer may not roll back (403), and an empty group or two selectors are refused, nothing sent', async () => {
    const before = (await s.server.context.commands.forProbe(ID)).length;
    const r = await cli(['rollback', '--group', 'site-north'], viewer);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/FORBIDDEN|403/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    const empty = await s.api<{ code: string }>('POST', '/api/v1/rollbacks', { body: { group: 'nobody-here' } });
    expect(empty).toMatchObject({ status: 404, body: { code: 'PROBE_NOT_FOUND' } });
    const both = await s.api<{ code: string }>('POST', '/api/v1/rollbacks', { body: { group: 'site-north', probeIds: [ID] } });
    expect(both).toMatchObject({ status: 400, body: { code: 'BODY_INVALID' } });
    const two = await cli(['rollback', '--probe', ID, '--rollout', 'ro-000000000000']);
    expect(two.code).toBe(2);
    expect(two.stderr).toContain('exactly one of');
    expect((await s.server.context.commands.forProbe(ID)).length).toBe(before);
  });
});
