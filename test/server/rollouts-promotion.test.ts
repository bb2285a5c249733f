import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestServer } from './harness.js';
import { ids, SimFleet, startRolloutServer, waitForState } from './rollout-fleet.js';

/**
 * Promotion through environments (integration → qa → uat → production) is a gate: a pack may be
 * rolled out in a later environment only after it completed in the one before AND an admin
 * approved the promotion. Refused before, allowed after; the approval is in the audit log.
 */
let s: TestServer;
let fleet: SimFleet;
let pack: { sha256: string; version: string };
let other: { sha256: string; version: string };
let operator: string;

beforeAll(async () => {
  const started = await startRolloutServer({ packs: ['1.1.0', '1.1.1'] });
  s = started.s;
  pack = started.packs['1.1.0']!;
  other = started.packs['1.1.1']!;
  fleet = await SimFleet.start(s, [...ids('int', 2), ...ids('qa', 2)], { newVersion: pack.version, oldVersion: '1.0.0' });
  for (const p of fleet.ids) expect((await s.api('PATCH', `/api/v1/probes/${p}`, { body: { addGroups: [p.split('-')[0]!] } })).status).toBe(200);
  operator = (await s.api<{ token: string }>('POST', '/api/v1/tokens', { body: { name: 'ops', role: 'operator' } })).body.token;
});
afterAll(async () => {
  await fleet?.close();
  await s?.close();
});

const strategy = { waves: [100], successThreshold: 1, advance: { mode: 'wait', seconds: 0 } };

function create(environment: string, group: string, sha256 = pack.sha256, extra: Record<string, unknown> = {}) {
  return s.api<{ id: string; state: string; code?: string; message?: string }>('POST', '/api/v1/rollouts', {
    token: operator,
    body: { packSha256: sha256, environment, target: { group }, strategy, ...extra },
  });
}

async function rolloutCount(): Promise<number> {
  return (await s.api<unknown[]>('GET', '/api/v1/rollouts?limit=1000')).body.length;
}

describe('the environment promotion gate', () => {
  let integration: string;

  it('refuses a rollout in qa before the pack succeeded in integration and was approved', async () => {
    const r = await create('qa', 'qa');
    expect(r.status).toBe(409);
    expect(r.body.code).toBe('PROMOTION_REQUIRED');
    expect(r.body.message).toMatch(/no rollout of this pack completed in integration/);
    expect(r.body.message).toMatch(/no approval to promote it to qa/);
    expect(await rolloutCount()).toBe(0);
    expect(fleet.commanded().size).toBe(0);
  });

  it('lets integration, the first environment, go without a gate, and refuses to promote it until it completed', async () => {
    const r = await create('integration', 'int', pack.sha256, { draft: true });
    expect(r.status).toBe(201);
    integration = r.body.id;
    const early = await s.api<{ code: string }>('POST', `/api/v1/rollouts/${integration}/promote`);
    expect(early.status).toBe(409);
    expect(early.body.code).toBe('ROLLOUT_STATE_CONFLICT');
    expect((await s.api('POST', `/api/v1/rollouts/${integration}/start`, { token: operator })).status).toBe(200);
    await waitForState(s, integration, 'completed', (b) => b.progress.committed === 2);
  });

  it('still refuses qa after success in integration, while nobody approved the promotion', async () => {
    const before = await rolloutCount();
    const r = await create('qa', 'qa');
    expect(r.status).toBe(409);
    expect(r.body.code).toBe('PROMOTION_REQUIRED');
    expect(r.body.message).not.toMatch(/completed in integration/);
    expect(r.body.message).toMatch(/no approval to promote it to qa/);
    expect(await rolloutCount()).toBe(before);
  });

  it('takes the promotion approval from an admin only, and records who and when', async () => {
    expect((await s.api('POST', `/api/v1/rollouts/${integration}/promote`, { token: operator })).status).toBe(403);
    const a = await s.api<{ kind: string; environment: string; approvedByName: string; approvedAt: string }>('POST', `/api/v1/rollouts/${integration}/promote`);
    expect(a.status).toBe(200);
    expect(a.body).toMatchObject({ kind: 'promotion', environment: 'qa', approvedByName: 'admin' });
    const audit = await s.api<{ actorName: string; target: string; status: number; at: string; detail: Record<string, unknown> }[]>(
      'GET',
      `/api/v1/audit?action=${encodeURIComponent('POST /api/v1/rollouts/:id/promote')}`,
    );
    const ok = audit.body.filter((e) => e.status === 200);
    expect(ok).toEqual([expect.objectContaining({ actorName: 'admin', target: integration, detail: expect.objectContaining({ approved: 'promotion', environment: 'qa' }) })]);
    expect(Date.parse(ok[0]!.at)).toBeGreaterThan(Date.now() - 60_000);
  });

  it('allows qa after success and approval, but not uat or production, and not another pack', async () => {
    const qa = await create('qa', 'qa');
    expect(qa.status, JSON.stringify(qa.body)).toBe(201);
    await waitForState(s, qa.body.id, 'completed', (b) => b.progress.committed === 2);
    for (const env of ['uat', 'production']) {
      const r = await create(env, 'qa');
      expect(r.status, env).toBe(409);
      expect(r.body.code).toBe('PROMOTION_REQUIRED');
    }
    const r = await create('qa', 'qa', other.sha256);
    expect(r.status).toBe(409);
    expect(r.body.code).toBe('PROMOTION_REQUIRED');
  });
});
