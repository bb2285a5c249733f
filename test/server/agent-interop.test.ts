import { createHash } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeProbe, startDaemon, type InProcessDaemon, type ProbeFixture } from '../helpers/daemon-harness.js';
import { stopApp } from '../helpers/probe.js';
import { serverSamples, startTestServer, tempDir, waitFor, type TestServer } from './harness.js';

/**
 * The agent and the server meet: a real agent daemon (issue 4), enrolled by the server, gets an
 * install command over the embedded broker, downloads the pack from the server with its token,
 * installs it, and the server counts the probe as updated once the committed outcome arrives.
 */
let s: TestServer;
let dir: string;
let probe: ProbeFixture;
let daemon: InProcessDaemon | null = null;
let packSha: string;

beforeAll(async () => {
  const samples = await serverSamples();
  dir = await tempDir('sonde-interop-');
  s = await startTestServer({ keyring: samples.keys.rootCert });
  const bytes = await readFile(samples.packs['1.0.0']);
  expect((await s.api('POST', '/api/v1/packs', { body: bytes })).status).toBe(201);
  packSha = createHash('sha256').update(bytes).digest('hex');
  probe = await makeProbe(dir, { samples, mqttUrl: s.mqttUrl, httpBase: s.url, id: 'agent-1' });
  // The credential file is the server's, exactly as `sonde server enroll` prints it.
  const creds = await s.enroll('agent-1');
  await writeFile(probe.credentialsPath, `${JSON.stringify(creds, null, 2)}\n`, { mode: 0o600 });
  daemon = await startDaemon(probe);
});
afterAll(async () => {
  await daemon?.stop();
  await stopApp(probe.root).catch(() => undefined);
  await s.close();
  await rm(dir, { recursive: true, force: true });
});

interface Detail {
  online: boolean;
  version: string | null;
  lastCommitted: { version: string | null } | null;
  deployments: { outcome: string | null; packSha256: string | null }[];
  events: { type: string; state?: string }[];
}

describe('a real agent against the server', () => {
  it('comes online, installs what the server commands, and is counted as updated on commit', async () => {
    await waitFor('the agent online', async () => (await s.api<Detail>('GET', '/api/v1/probes/agent-1')).body.online, 20_000);
    const c = await s.server.context.commands.send('agent-1', { type: 'install', packSha256: packSha });
    const done = await waitFor(
      'the install outcome',
      async () => {
        const x = await s.server.context.commands.get(c.commandId);
        return x.status === 'succeeded' || x.status === 'failed' || x.status === 'refused' ? x : null;
      },
      60_000,
    );
    expect(done).toMatchObject({ status: 'succeeded', errorCode: null });
    const d = (await s.api<Detail>('GET', '/api/v1/probes/agent-1')).body;
    expect(d.lastCommitted?.version).toBe('1.0.0');
    expect(d.deployments[0]).toMatchObject({ outcome: 'committed', packSha256: packSha });
    const types = d.events.map((e) => (e.type === 'install-state' ? `install-state:${e.state}` : e.type));
    expect(types).toEqual(expect.arrayContaining(['online', 'command-accepted', 'download-started', 'download-complete', 'install-outcome']));
    await waitFor('a state naming 1.0.0', async () => (await s.api<Detail>('GET', '/api/v1/probes/agent-1')).body.version === '1.0.0', 20_000);
  });

  it('goes offline on a graceful stop', async () => {
    await daemon!.stop();
    daemon = null;
    await waitFor('offline', async () => !(await s.api<Detail>('GET', '/api/v1/probes/agent-1')).body.online, 10_000);
  });
});
