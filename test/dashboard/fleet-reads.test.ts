import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { serverSamples, SimProbe, startTestServer, waitFor, type TestServer } from '../server/harness.js';
import { versionKey } from '../../server/src/store/sqlite-probes.js';

/**
 * What the dashboard reads, at the API (issue 22): the probes listing filtered, sorted and paged
 * by the server, the bulk label change, the fleet summary with its problems worst first, and a
 * deployment's receipt. Simulated probes publish real states and events over MQTT.
 */
let s: TestServer;
let packSha: string;
const sims: SimProbe[] = [];
interface P {
  id: string;
  version: string | null;
  health: string | null;
  groups: string[];
  tags: string[];
}

const at = (min: number) => new Date(Date.now() - min * 60_000).toISOString();

beforeAll(async () => {
  const samples = await serverSamples();
  s = await startTestServer({ keyring: samples.keys.rootCert });
  const pack = await readFile(samples.packs['1.1.0']);
  expect((await s.api('POST', '/api/v1/packs', { body: pack })).status).toBe(201);
  packSha = createHash('sha256').update(pack).digest('hex');
  const fleet: [string, Partial<Parameters<SimProbe['state']>[0]>][] = [
    ['alpha', { version: '1.9.0', health: 'ok' }],
    ['bravo', { version: '1.10.0', health: 'degraded' }],
    ['charlie', { version: '1.10.0-rc.1', health: 'ok', lastDeployment: { id: 'd-c1', outcome: 'failed', errorCode: 'MIGRATION_FAILED', version: '1.10.0-rc.1', at: at(5) } }],
    ['delta', { version: '2.0.0', agentVersion: '0.2.0', health: 'down', lastDeployment: { id: 'd-d1', outcome: 'committed', errorCode: null, version: '2.0.0', at: at(3) } }],
  ];
  for (const [id, over] of fleet) {
    const sim = await SimProbe.connect(s.mqttUrl, await s.enroll(id));
    await sim.state(over);
    sims.push(sim);
  }
  await s.enroll('echo-silent');
  await s.api('PATCH', '/api/v1/probes/alpha', { body: { addGroups: ['site-lyon'], addTags: ['rack_3'] } });
  await s.api('PATCH', '/api/v1/probes/delta', { body: { addGroups: ['site-paris'] } });
  // charlie's deployment, as the agent reports one: accepted, states, outcome with the reason.
  const charlie = sims[2]!;
  await charlie.event('command-accepted', { commandId: 'c-x1' });
  await charlie.event('install-state', { deploymentId: 'd-c1', state: 'staged' });
  await charlie.event('install-state', { deploymentId: 'd-c1', state: 'switched' });
  await charlie.event('install-outcome', { id: 'outcome-d-c1', deploymentId: 'd-c1', outcome: 'failed', code: 'HEALTH_CHECK_FAILED', message: 'the new release failed its health check: exited 3; its last output: cannot open /data/db' });
  await s.settle();
  await waitFor('the states stored', async () => (await s.api<P[]>('GET', '/api/v1/probes?health=ok')).body.length === 2);
});
afterAll(async () => {
  for (const sim of sims) await sim.close();
  await s.close();
});

const ids = async (q: string) => (await s.api<P[]>('GET', `/api/v1/probes${q}`)).body.map((p) => p.id);

describe('the probes listing', () => {
  it('filters by text (id, group or tag), version, health and the last deployment outcome; all combine', async () => {
    expect(await ids('?q=LYON')).toEqual(['alpha']);
    expect(await ids('?q=rack_')).toEqual(['alpha']);
    expect(await ids('?q=ha')).toEqual(['alpha', 'charlie']);
    expect(await ids('?q=%25')).toEqual([]);
    expect(await ids('?version=1.10.0')).toEqual(['bravo']);
    expect(await ids('?version=none')).toEqual(['echo-silent']);
    expect(await ids('?health=ok')).toEqual(['alpha', 'charlie']);
    expect(await ids('?health=none')).toEqual(['echo-silent']);
    expect(await ids('?outcome=failed')).toEqual(['charlie']);
    expect(await ids('?outcome=none')).toEqual(['alpha', 'bravo', 'echo-silent']);
    expect(await ids('?health=ok&q=a&outcome=failed')).toEqual(['charlie']);
    expect(await ids('?online=false')).toEqual(['echo-silent']);
    // Agents older than 0.2.0: every probe that reported one but delta (0.2.0); echo-silent never reported.
    expect(await ids('?agentBelow=0.2.0')).toEqual(['alpha', 'bravo', 'charlie']);
    expect(await ids('?agentBelow=0.1.0')).toEqual([]);
  });

  it('lets a rollout target the probes whose agent is older than a version (issue 21)', async () => {
    const r = await s.api<{ id: string; target: unknown }>('POST', '/api/v1/rollouts', { body: { packSha256: packSha, target: { agentBelow: '0.2.0' }, draft: true } });
    expect(r.status).toBe(201);
    expect(r.body.target).toEqual({ agentBelow: '0.2.0' });
    const targets = await s.api<{ probeId: string }[]>('GET', `/api/v1/rollouts/${r.body.id}/targets`);
    expect(targets.body.map((t) => t.probeId).sort()).toEqual(['alpha', 'bravo', 'charlie']);
    const bad = await s.api<{ code: string }>('POST', '/api/v1/rollouts', { body: { packSha256: packSha, target: { agentBelow: 'old' } } });
    expect([bad.status, bad.body.code]).toEqual([400, 'BODY_INVALID']);
  });

  it('sorts versions as versions (1.9.0 < 1.10.0-rc.1 < 1.10.0 < 2.0.0), missing ones last, either way', async () => {
    expect(await ids('?sort=version')).toEqual(['alpha', 'charlie', 'bravo', 'delta', 'echo-silent']);
    expect(await ids('?sort=version&order=desc')).toEqual(['delta', 'bravo', 'charlie', 'alpha', 'echo-silent']);
    expect(versionKey('1.9.0') < versionKey('1.10.0')).toBe(true);
    expect(versionKey('1.10.0-rc.1') < versionKey('1.10.0')).toBe(true);
  });

  it('pages with the total in X-Total-Count, in a stable order', async () => {
    const a = await s.api<P[]>('GET', '/api/v1/probes?sort=health&limit=2&offset=0');
    const b = await s.api<P[]>('GET', '/api/v1/probes?sort=health&limit=2&offset=2');
    const c = await s.api<P[]>('GET', '/api/v1/probes?sort=health&limit=2&offset=4');
    expect(a.headers['x-total-count']).toBe('5');
    expect([...a.body, ...b.body, ...c.body].map((p) => p.id).sort()).toEqual(['alpha', 'bravo', 'charlie', 'delta', 'echo-silent']);
  });

  it('refuses an unknown sort key or filter with BODY_INVALID', async () => {
    for (const q of ['?sort=password', '?health=great', '?outcome=x', '?nope=1']) {
      const r = await s.api<{ code: string }>('GET', `/api/v1/probes${q}`);
      expect([q, r.status, r.body.code]).toEqual([q, 400, 'BODY_INVALID']);
    }
  });
});

describe('labels in bulk', () => {
  it('changes every probe named in one call and names the ids that do not exist', async () => {
    const r = await s.api<{ updated: string[]; missing: string[] }>('PATCH', '/api/v1/probes', {
      body: { probeIds: ['bravo', 'charlie', 'ghost'], channel: 'beta', addTags: ['batch-7'] },
    });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ updated: ['bravo', 'charlie'], missing: ['ghost'] });
    expect(await ids('?tag=batch-7&channel=beta')).toEqual(['bravo', 'charlie']);
  });

  it('refuses a change that changes nothing, or a bad label, and leaves every probe as it was', async () => {
    const before = (await s.api<P[]>('GET', '/api/v1/probes')).body;
    for (const body of [{ probeIds: ['alpha'] }, { probeIds: ['alpha'], addTags: ['bad label'] }, { probeIds: [], addTags: ['x'] }]) {
      const r = await s.api<{ code: string }>('PATCH', '/api/v1/probes', { body });
      expect([r.status, r.body.code]).toEqual([400, 'BODY_INVALID']);
    }
    expect((await s.api<P[]>('GET', '/api/v1/probes')).body).toEqual(before);
  });
});

describe('the fleet summary', () => {
  it('counts by health, version, channel and online, and lists the probes with problems worst first', async () => {
    const r = await s.api<{
      total: number;
      online: number;
      offline: number;
      byHealth: Record<string, number>;
      byVersion: Record<string, number>;
      problems: { counts: Record<string, number>; probes: { id: string; problems: string[] }[] };
    }>('GET', '/api/v1/fleet');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ total: 5, online: 4, offline: 1 });
    expect(r.body.byHealth).toEqual({ ok: 2, degraded: 1, down: 1, none: 1 });
    expect(r.body.byVersion['1.10.0']).toBe(1);
    expect(r.body.problems.counts).toEqual({ offline: 1, down: 1, degraded: 1, 'failed-deployment': 1, stuck: 0 });
    expect(r.body.problems.probes.map((p) => [p.id, p.problems])).toEqual([
      ['echo-silent', ['offline']],
      ['delta', ['down']],
      ['bravo', ['degraded']],
      ['charlie', ['failed-deployment']],
    ]);
    expect((await s.api<{ problems: { probes: unknown[] } }>('GET', '/api/v1/fleet?limit=1')).body.problems.probes).toHaveLength(1);
  });
});

describe("a deployment's receipt", () => {
  it('gives each state with its time, the outcome with its reason and the last words, and every event', async () => {
    const r = await s.api<{ steps: { state: string; seconds: number | null }[]; outcome: { outcome: string; code: string; message: string }; events: unknown[] }>(
      'GET',
      '/api/v1/probes/charlie/deployments/d-c1',
    );
    expect(r.status).toBe(200);
    expect(r.body.steps.map((x) => x.state)).toEqual(['staged', 'switched', 'failed']);
    expect(r.body.steps.at(-1)!.seconds).toBeNull();
    expect(r.body.steps[0]!.seconds).toBeGreaterThanOrEqual(0);
    expect(r.body.outcome).toMatchObject({ outcome: 'failed', code: 'HEALTH_CHECK_FAILED' });
    expect(r.body.outcome.message).toContain('cannot open /data/db');
    expect(r.body.events).toHaveLength(3);
  });

  it('answers DEPLOYMENT_NOT_FOUND for a deployment the probe never reported, PROBE_NOT_FOUND for no probe', async () => {
    const a = await s.api<{ code: string }>('GET', '/api/v1/probes/charlie/deployments/d-nope');
    expect([a.status, a.body.code]).toEqual([404, 'DEPLOYMENT_NOT_FOUND']);
    const b = await s.api<{ code: string }>('GET', '/api/v1/probes/zulu/deployments/d-c1');
    expect([b.status, b.body.code]).toEqual([404, 'PROBE_NOT_FOUND']);
  });
});
