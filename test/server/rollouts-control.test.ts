import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stateDigest, waitFor, type TestServer } from './harness.js';
import { ids, SimFleet, startRolloutServer, statusOf, targetsOf, waitForState } from './rollout-fleet.js';

/**
 * Operators and rollouts: pause, resume, abort, the approval gate before the next wave, who may
 * do what (a viewer creating a rollout is refused and changes nothing), refusals with their codes,
 * and the rule that a probe counts as updated only once its install-outcome says committed.
 */
let s: TestServer;
let fleet: SimFleet;
let pack: { sha256: string; version: string };
let viewer: string;
let operator: string;

beforeAll(async () => {
  const started = await startRolloutServer();
  s = started.s;
  pack = started.packs['1.1.0']!;
  fleet = await SimFleet.start(s, [...ids('ctl', 12), ...ids('gate', 6), ...ids('slow', 3), ...ids('ab', 6), ...ids('drop', 1)], { newVersion: pack.version, oldVersion: '1.0.0' });
  for (const [prefix, group] of [
    ['ctl', 'control'],
    ['gate', 'gated'],
    ['slow', 'slow'],
    ['ab', 'abort'],
    ['drop', 'drop'],
  ] as const) {
    for (const p of fleet.ids.filter((x) => x.startsWith(`${prefix}-`))) expect((await s.api('PATCH', `/api/v1/probes/${p}`, { body: { addGroups: [group] } })).status).toBe(200);
  }
  viewer = (await s.api<{ token: string }>('POST', '/api/v1/tokens', { body: { name: 'watcher', role: 'viewer' } })).body.token;
  operator = (await s.api<{ token: string }>('POST', '/api/v1/tokens', { body: { name: 'ops-anna', role: 'operator' } })).body.token;
});
afterAll(async () => {
  await fleet?.close();
  await s?.close();
});

function create(body: Record<string, unknown>, token?: string) {
  return s.api<{ id: string; state: string; code?: string; message?: string }>('POST', '/api/v1/rollouts', { body: { packSha256: pack.sha256, ...body }, ...(token ? { token } : {}) });
}

describe('who may do what', () => {
  it('refuses a viewer creating a rollout with 403, and nothing changes', async () => {
    await s.settle();
    const before = await stateDigest(s.dir);
    const r = await create({ target: { group: 'control' } }, viewer);
    expect(r.status).toBe(403);
    expect(r.body.code).toBe('FORBIDDEN');
    await s.settle();
    expect(await stateDigest(s.dir)).toEqual(before);
    expect((await s.api<unknown[]>('GET', '/api/v1/rollouts', { token: viewer })).body).toEqual([]);
    expect(fleet.commanded().size).toBe(0);
  });

  it('lets a viewer read rollouts but not pause, approve or retry them; promotion needs an admin', async () => {
    const r = await create({ target: { group: 'control' }, draft: true }, operator);
    expect(r.status).toBe(201);
    expect(r.body.state).toBe('draft');
    expect((await s.api('GET', `/api/v1/rollouts/${r.body.id}`, { token: viewer })).status).toBe(200);
    expect((await s.api('GET', `/api/v1/rollouts/${r.body.id}/targets`, { token: viewer })).status).toBe(200);
    for (const action of ['start', 'pause', 'resume', 'abort', 'approve', 'retry', 'promote']) {
      expect((await s.api('POST', `/api/v1/rollouts/${r.body.id}/${action}`, { token: viewer })).status, action).toBe(403);
    }
    expect((await s.api('POST', `/api/v1/rollouts/${r.body.id}/promote`, { token: operator })).status).toBe(403);
    expect((await s.api('POST', `/api/v1/rollouts/${r.body.id}/abort`, { token: operator })).status).toBe(200);
    expect(fleet.commanded().size).toBe(0);
  });
});

describe('refusals', () => {
  it.each([
    { what: 'an unknown key', body: { target: { group: 'control' }, colour: 'red' }, status: 400, code: 'BODY_INVALID' },
    { what: 'no target field', body: { target: {} }, status: 400, code: 'BODY_INVALID' },
    { what: 'waves that do not reach 100 %', body: { target: { group: 'control' }, strategy: { waves: [10, 50] } }, status: 400, code: 'BODY_INVALID' },
    { what: 'waves that do not increase', body: { target: { group: 'control' }, strategy: { waves: [50, 20, 100] } }, status: 400, code: 'BODY_INVALID' },
    { what: 'a threshold above 1', body: { target: { group: 'control' }, strategy: { errorThreshold: 1.5 } }, status: 400, code: 'BODY_INVALID' },
    { what: 'a window at 25:00', body: { target: { group: 'control' }, windows: [{ start: '25:00', end: '02:00' }] }, status: 400, code: 'BODY_INVALID' },
    { what: 'a pack the server does not have', body: { packSha256: 'a'.repeat(64), target: { group: 'control' } }, status: 404, code: 'PACK_NOT_FOUND' },
    { what: 'a probe that is not enrolled', body: { target: { probeIds: ['ctl-00', 'ghost'] } }, status: 404, code: 'PROBE_NOT_FOUND' },
    { what: 'a target that addresses nobody', body: { target: { tag: 'nobody-has-this' } }, status: 422, code: 'ROLLOUT_TARGET_EMPTY' },
    { what: 'canary probes outside the target', body: { target: { group: 'control' }, strategy: { canary: { probeIds: ['gate-00'] } } }, status: 400, code: 'BODY_INVALID' },
  ])('refuses $what with $code, storing nothing', async ({ body, status, code }) => {
    const before = (await s.api<unknown[]>('GET', '/api/v1/rollouts?limit=1000')).body.length;
    const r = await create(body as Record<string, unknown>);
    expect(r.status, JSON.stringify(r.body)).toBe(status);
    expect(r.body.code).toBe(code);
    expect((await s.api<unknown[]>('GET', '/api/v1/rollouts?limit=1000')).body.length).toBe(before);
  });

  it('answers ROLLOUT_NOT_FOUND for an unknown or malformed id', async () => {
    for (const id of ['ro-000000000000', '..%2f..%2fetc', 'x'.repeat(200)]) {
      const r = await s.api<{ code: string }>('GET', `/api/v1/rollouts/${id}`);
      expect(r.status, id).toBe(404);
      expect(r.body.code).toBe('ROLLOUT_NOT_FOUND');
    }
  });
});

describe('pause, resume and abort', () => {
  it('holds every command while paused, and sends them on resume', async () => {
    fleet.verdict = () => 'commit';
    const r = await create({ target: { group: 'control' }, draft: true, strategy: { waves: [50, 100], advance: { mode: 'wait', seconds: 0 }, successThreshold: 1 } }, operator);
    const id = r.body.id;
    expect((await s.api('POST', `/api/v1/rollouts/${id}/start`, { token: operator })).status).toBe(200);
    expect((await s.api<{ state: string }>('POST', `/api/v1/rollouts/${id}/pause`, { token: operator })).body.state).toBe('paused');
    // Whatever the first tick sent before the pause, nothing more goes out while paused.
    await new Promise((r) => setTimeout(r, 300));
    await fleet.drain();
    const sentWhilePaused = fleet.commanded(pack.sha256);
    await new Promise((r) => setTimeout(r, 300));
    expect(fleet.commanded(pack.sha256)).toEqual(sentWhilePaused);
    const paused = await statusOf(s, id);
    expect(paused).toMatchObject({ state: 'paused', pausedReason: 'operator', wave: 0 });
    expect(paused.waves[1]!.started).toBe(false);
    const second = await s.api<{ code: string }>('POST', `/api/v1/rollouts/${id}/pause`, { token: operator });
    expect(second.status).toBe(409);
    expect(second.body.code).toBe('ROLLOUT_STATE_CONFLICT');
    expect((await s.api('POST', `/api/v1/rollouts/${id}/resume`, { token: operator })).status).toBe(200);
    await waitForState(s, id, 'completed', (b) => b.progress.committed === 12);
    const audit = await s.api<{ action: string; actorName: string; target: string }[]>('GET', `/api/v1/audit?limit=200`);
    const mine = audit.body.filter((a) => a.target === id).map((a) => `${a.actorName} ${a.action}`);
    expect(mine).toEqual(
      expect.arrayContaining([
        'ops-anna POST /api/v1/rollouts',
        'ops-anna POST /api/v1/rollouts/:id/start',
        'ops-anna POST /api/v1/rollouts/:id/pause',
        'ops-anna POST /api/v1/rollouts/:id/resume',
        'rollout engine rollout last-wave-passed',
      ]),
    );
  });

  it('aborts: probes not commanded are skipped, unacknowledged commands cancelled, and no more go out', async () => {
    // Probes ab-00 … ab-02 are offline: their commands wait in the command service.
    const away = ['ab-00', 'ab-01', 'ab-02'];
    for (const p of away) await fleet.members.get(p)!.sim!.close();
    for (const p of away) fleet.members.get(p)!.sim = null;
    await s.settle(100);
    fleet.verdict = () => 'hold';
    const r = await create({ target: { group: 'abort' }, strategy: { canary: { probeIds: away }, waves: [100], advance: { mode: 'wait', seconds: 0 } } });
    const id = r.body.id;
    await waitFor('canary commands stored', async () => (await s.server.context.commands.forRollout(id)).length === 3);
    const a = await s.api<{ state: string }>('POST', `/api/v1/rollouts/${id}/abort`);
    expect(a.status).toBe(200);
    expect(a.body.state).toBe('aborted');
    const targets = await targetsOf(s, id);
    expect(targets.filter((t) => t.wave === 0).map((t) => t.state)).toEqual(['skipped', 'skipped', 'skipped']);
    expect(targets.filter((t) => t.wave === 1).every((t) => t.state === 'skipped')).toBe(true);
    const cmds = await s.server.context.commands.forRollout(id);
    expect(cmds.filter((c) => c.type === 'install').map((c) => c.status)).toEqual(['cancelled', 'cancelled', 'cancelled']);
    // They come back: no install reaches them, and the other probes never got one.
    await fleet.connect(s.mqttUrl, away);
    await s.settle(300);
    expect([...fleet.commanded(pack.sha256)].filter((p) => p.startsWith('ab-'))).toEqual([]);
    expect((await s.api<{ code: string }>('POST', `/api/v1/rollouts/${id}/resume`)).body.code).toBe('ROLLOUT_STATE_CONFLICT');
  });
});

describe('the approval gate before the next wave', () => {
  it('waits for an approval after each wave, and records who approved and when', async () => {
    fleet.verdict = () => 'commit';
    const r = await create({ target: { group: 'gated' }, strategy: { canary: { probes: 2 }, waves: [100], advance: { mode: 'approval' }, successThreshold: 1 } }, operator);
    const id = r.body.id;
    const waiting = await waitForState(s, id, 'awaiting-approval');
    expect(waiting.wave).toBe(0);
    await new Promise((r) => setTimeout(r, 300));
    await fleet.drain();
    const canary = (await targetsOf(s, id)).filter((t) => t.wave === 0).map((t) => t.probeId);
    expect([...fleet.commanded(pack.sha256)].filter((p) => p.startsWith('gate-')).sort()).toEqual(canary.sort());

    const approved = await s.api<{ approval: { approvedByName: string; approvedAt: string; wave: number }; rollout: { state: string } }>('POST', `/api/v1/rollouts/${id}/approve`, {
      token: operator,
    });
    expect(approved.status).toBe(200);
    expect(approved.body.approval).toMatchObject({ approvedByName: 'ops-anna', wave: 1 });
    expect(approved.body.rollout.state).toBe('running');
    const done = await waitForState(s, id, 'completed', (b) => b.progress.committed === 6);
    expect(done.approvals).toEqual([expect.objectContaining({ kind: 'wave', wave: 1, approvedByName: 'ops-anna' })]);
    const audit = await s.api<{ action: string; actorName: string; at: string; target: string; status: number; detail: Record<string, unknown> }[]>(
      'GET',
      `/api/v1/audit?action=${encodeURIComponent('POST /api/v1/rollouts/:id/approve')}`,
    );
    const approvals = audit.body.filter((a) => a.target === id);
    expect(approvals).toEqual([expect.objectContaining({ actorName: 'ops-anna', status: 200, detail: expect.objectContaining({ approved: 'wave', wave: 1 }) })]);
    expect(Date.parse(approvals[0]!.at)).toBeGreaterThan(Date.now() - 60_000);
    // Nothing left to approve.
    expect((await s.api<{ code: string }>('POST', `/api/v1/rollouts/${id}/approve`, { token: operator })).body.code).toBe('ROLLOUT_STATE_CONFLICT');
  });
});

describe('counting updated probes', () => {
  it('counts a probe only after its install-outcome committed, never on staged, switched or a state that shows the version', async () => {
    fleet.verdict = () => 'hold';
    const r = await create({ target: { group: 'slow' }, strategy: { waves: [100], successThreshold: 1, advance: { mode: 'wait', seconds: 0 } } });
    const id = r.body.id;
    await waitForState(s, id, 'running', (b) => b.progress.installing === 3);
    await fleet.drain();
    // Staged and switched were reported; a probe even claims the new version in its state.
    await fleet.members.get('slow-00')!.sim!.state({ version: pack.version, appVersion: pack.version });
    await s.settle(300);
    const before = await statusOf(s, id);
    expect(before.state).toBe('running');
    expect(before.progress).toMatchObject({ committed: 0, updated: 0, installing: 3 });
    expect((await s.api<{ lastCommitted: unknown }>('GET', '/api/v1/probes/slow-00')).body.lastCommitted).toBeNull();

    await fleet.release('commit', (p) => p === 'slow-00');
    await waitForState(s, id, 'running', (b) => b.progress.committed === 1);
    await fleet.release('commit');
    const done = await waitForState(s, id, 'completed');
    expect(done.progress).toMatchObject({ committed: 3, updated: 3 });
  });

  it('counts a probe that committed the version by itself (an FTP drop) from its own install-outcome', async () => {
    fleet.verdict = () => 'hold';
    const r = await create({ target: { group: 'drop' }, strategy: { waves: [100], successThreshold: 1, advance: { mode: 'wait', seconds: 0 } } });
    const id = r.body.id;
    await waitForState(s, id, 'running', (b) => b.progress.installing === 1);
    // The drop's outcome names no command of this rollout: the server reconciles it by version.
    const sim = fleet.members.get('drop-00')!.sim!;
    await sim.event('install-outcome', { id: 'outcome-d-drop', deploymentId: 'd-drop', outcome: 'committed', version: pack.version });
    const done = await waitForState(s, id, 'completed');
    expect(done.progress).toMatchObject({ committed: 1, updated: 1 });
    expect((await targetsOf(s, id))[0]).toMatchObject({ probeId: 'drop-00', state: 'committed' });
  });
});
