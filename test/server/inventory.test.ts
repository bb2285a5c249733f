import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { EmbeddedBroker } from '../../server/src/mqtt/embedded-broker.js';
import type { EnrollmentFile } from '../../server/src/inventory/probe-service.js';
import { serverSamples, SimProbe, startTestServer, waitFor, type TestServer } from './harness.js';
import { readFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';

/**
 * The inventory, built from what probes publish (issue 5): the last state (never retained by the
 * broker), events deduplicated by id and ordered by seq, online and offline (the last will), the
 * deployment history, and the rule that a probe counts as updated only on its committed outcome.
 */
let s: TestServer;
let creds: EnrollmentFile;
let probe: SimProbe;
let packSha: string;

interface ProbeDetail {
  online: boolean;
  version: string | null;
  health: string | null;
  lastSeen: string | null;
  lastCommitted: { version: string | null } | null;
  deployments: { deploymentId: string; state: string | null; outcome: string | null; version: string | null; commandId: string | null; packSha256: string | null }[];
  commands: { commandId: string; status: string; errorCode: string | null }[];
  events: { id: string; seq: number; type: string }[];
}

const detail = async (id = 'inv-1'): Promise<ProbeDetail> => (await s.api<ProbeDetail>('GET', `/api/v1/probes/${id}`)).body;

beforeAll(async () => {
  const samples = await serverSamples();
  s = await startTestServer({ keyring: samples.keys.rootCert });
  expect((await s.api('POST', '/api/v1/packs', { body: await readFile(samples.packs['1.1.0']) })).status).toBe(201);
  packSha = createHash('sha256').update(await readFile(samples.packs['1.1.0'])).digest('hex');
  creds = await s.enroll('inv-1');
  probe = await SimProbe.connect(s.mqttUrl, creds);
  await s.settle();
});
afterAll(async () => {
  await probe.close();
  await s.close();
});

describe('the inventory', () => {
  it('keeps the last state a probe published, and the broker retains none of it', async () => {
    await probe.state({ version: '1.0.0', health: 'ok' });
    await probe.state({ version: '1.0.0', health: 'degraded' });
    await s.settle();
    const d = await detail();
    expect(d).toMatchObject({ online: true, version: '1.0.0', health: 'degraded' });
    expect(d.lastSeen).not.toBeNull();
    // Even a state published with the retain flag is not kept by the broker (fleet-facts).
    await probe.client.publishAsync('sonde/v1/probes/inv-1/state', JSON.stringify(probe.stateOf({ health: 'degraded' })), { qos: 1, retain: true });
    await s.settle();
    expect(await (s.server.context.bus as EmbeddedBroker).retainedTopics()).toEqual([]);
  });

  it('ignores a state older than the one it holds (one that overtook another across a reconnect)', async () => {
    await probe.state({ at: new Date(Date.now() - 3_600_000).toISOString(), health: 'down' });
    await s.settle();
    expect((await detail()).health).toBe('degraded');
  });

  it('stores an event once, however often the outbox delivers it', async () => {
    const e = probe.eventOf('drop-received', { message: 'dropped over FTP' });
    await probe.send(e);
    await probe.send(e);
    await probe.send(e);
    await s.settle();
    const events = (await detail()).events.filter((x) => x.id === e.id);
    expect(events).toHaveLength(1);
  });

  it('orders a probe history by seq, whatever the arrival order', async () => {
    const earlier = probe.eventOf('drop-received');
    const later = probe.eventOf('drop-duplicate');
    expect(later.seq).toBe(earlier.seq + 1);
    await probe.send(later);
    await probe.send(earlier);
    await s.settle();
    const ids = (await detail()).events.map((x) => x.id);
    expect(ids.indexOf(earlier.id)).toBeLessThan(ids.indexOf(later.id));
    const seqs = (await detail()).events.map((x) => x.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
  });

  it('counts a probe as updated only on its committed outcome, never on staged or switched', async () => {
    const sent = await s.api<{ commandId: string }>('POST', '/api/v1/probes/inv-1/commands', { body: { type: 'install', packSha256: packSha } });
    expect(sent.status).toBe(202);
    const commandId = sent.body.commandId;
    await waitFor('the install command', () => probe.commands.find((c) => c.commandId === commandId));
    const dep = 'dep-0001';
    await probe.event('command-accepted', { commandId });
    await probe.event('download-started', { commandId, packSha256: packSha, totalBytes: 100 });
    await probe.event('download-complete', { commandId, packSha256: packSha });
    for (const state of ['verified', 'staged', 'switched']) {
      await probe.event('install-state', { deploymentId: dep, state });
      // The new version is running but not committed: the state says so, and it must not count.
      await probe.state({ version: '1.1.0', lastDeployment: { id: dep, outcome: state, errorCode: null, version: '1.1.0', at: null } });
      await s.settle();
      const d = await detail();
      expect(d.lastCommitted).toBeNull();
      expect(d.commands.find((c) => c.commandId === commandId)?.status).toBe('running');
      expect(d.deployments.find((x) => x.deploymentId === dep)).toMatchObject({ state, outcome: null });
    }
    await probe.event('install-outcome', { id: `outcome-${dep}`, deploymentId: dep, outcome: 'committed', version: '1.1.0', commandId });
    await s.settle();
    const d = await detail();
    expect(d.lastCommitted).toMatchObject({ version: '1.1.0' });
    expect(d.commands.find((c) => c.commandId === commandId)?.status).toBe('succeeded');
    expect(d.deployments.find((x) => x.deploymentId === dep)).toMatchObject({ outcome: 'committed', version: '1.1.0', commandId, packSha256: packSha });
  });

  it('records a rolled-back deployment as failed with its code', async () => {
    const sent = await s.api<{ commandId: string }>('POST', '/api/v1/probes/inv-1/commands', { body: { type: 'install', packSha256: packSha } });
    const commandId = sent.body.commandId;
    await probe.event('command-accepted', { commandId });
    await probe.event('install-state', { deploymentId: 'dep-0002', state: 'switched' });
    await probe.event('install-outcome', { id: 'outcome-dep-0002', deploymentId: 'dep-0002', outcome: 'rolled-back', code: 'HEALTH_CHECK_FAILED', version: '1.1.0', commandId });
    await s.settle();
    const d = await detail();
    expect(d.commands.find((c) => c.commandId === commandId)).toMatchObject({ status: 'failed', errorCode: 'HEALTH_CHECK_FAILED' });
    expect(d.deployments.find((x) => x.deploymentId === 'dep-0002')).toMatchObject({ outcome: 'rolled-back' });
    // The committed deployment before it stays the last committed one.
    expect(d.lastCommitted?.version).toBe('1.1.0');
  });

  it('ignores an event for a command sent to another probe', async () => {
    const other = await s.enroll('inv-2');
    const sent = await s.api<{ commandId: string }>('POST', '/api/v1/probes/inv-2/commands', { body: { type: 'install', packSha256: packSha } });
    await probe.event('install-outcome', { id: 'outcome-forged', deploymentId: 'dep-forged', outcome: 'committed', commandId: sent.body.commandId });
    await s.settle();
    const c = await s.api<{ status: string }>('GET', `/api/v1/commands/${sent.body.commandId}`);
    expect(c.body.status).toBe('sent');
    expect(other.probeId).toBe('inv-2');
  });

  it('marks a probe offline from its last will, and online again when it reconnects', async () => {
    const p = await SimProbe.connect(s.mqttUrl, await s.enroll('inv-will'));
    await p.state();
    await s.settle();
    expect((await detail('inv-will')).online).toBe(true);
    p.drop();
    await waitFor('the will', async () => (await detail('inv-will')).online === false);
    const events = (await detail('inv-will')).events.map((e) => e.type);
    expect(events).toContain('offline');
    const creds2 = await s.enroll('inv-will');
    const again = await SimProbe.connect(s.mqttUrl, creds2);
    await s.settle();
    expect((await detail('inv-will')).online).toBe(true);
    await again.close();
  });

  it('keeps a probe online when the will of a connection it replaced arrives late', async () => {
    const c = await s.enroll('inv-takeover');
    const first = await SimProbe.connect(s.mqttUrl, c);
    // A second connection of the same probe takes over: aedes closes the first one and publishes
    // its will, possibly after the second said `online`.
    const second = await SimProbe.connect(s.mqttUrl, c);
    await s.settle(200);
    expect((await detail('inv-takeover')).online).toBe(true);
    // The first connection's will, arriving after the second connection's `online`.
    await second.send(second.eventOf('offline', { id: `offline-${first.connection}` }));
    await s.settle();
    const d = await detail('inv-takeover');
    expect(d.events.some((e) => e.id === `offline-${first.connection}`)).toBe(true);
    expect(d.online).toBe(true);
    // The will of the current connection does mark it offline.
    await second.send(second.eventOf('offline', { id: `offline-${second.connection}` }));
    await s.settle();
    expect((await detail('inv-takeover')).online).toBe(false);
    await first.close();
    await second.close();
  });

  it('filters the list by channel, group, tag and online', async () => {
    await s.api('PATCH', '/api/v1/probes/inv-2', { body: { channel: 'beta', addGroups: ['lab'], addTags: ['east'] } });
    const by = async (q: string): Promise<string[]> => (await s.api<{ id: string }[]>('GET', `/api/v1/probes?${q}`)).body.map((p) => p.id);
    expect(await by('channel=beta')).toEqual(['inv-2']);
    expect(await by('group=lab')).toEqual(['inv-2']);
    expect(await by('tag=east')).toEqual(['inv-2']);
    expect(await by('tag=west')).toEqual([]);
    expect(await by('online=true')).toContain('inv-1');
    expect(await by('online=false')).toContain('inv-2');
    expect(await s.server.context.probes.match({ channel: 'beta', group: 'lab', tag: 'east' })).toEqual(['inv-2']);
    expect(await s.server.context.probes.match({ probeIds: ['inv-1', 'inv-2', 'nope'] })).toEqual(['inv-1', 'inv-2']);
    const page = await s.api<unknown[]>('GET', '/api/v1/probes?limit=1&offset=1');
    expect(page.body).toHaveLength(1);
    expect(Number(page.headers['x-total-count'])).toBeGreaterThan(1);
  });
});
