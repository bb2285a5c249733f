import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestServer } from './harness.js';
import { ids, SimFleet, startReceiver, startRolloutServer, statusOf, targetsOf, waitForState, type Receiver, type TargetBody } from './rollout-fleet.js';

/**
 * A rollout over 50 simulated probes: a canary, then waves by percentage. One wave fails past the
 * error threshold: the rollout pauses by itself, the webhook fires, and no probe outside the waves
 * already started receives the pack. Then the failed probes are retried and the rollout resumed
 * to completion, each probe counted as updated only by its install-outcome `committed`.
 */
let s: TestServer;
let hook: Receiver;
let fleet: SimFleet;
let pack: { sha256: string; version: string };

beforeAll(async () => {
  hook = await startReceiver();
  const started = await startRolloutServer({ webhookUrl: hook.url });
  s = started.s;
  pack = started.packs['1.1.0']!;
  fleet = await SimFleet.start(s, ids('fleet', 50), { newVersion: pack.version, oldVersion: '1.0.0' });
});
afterAll(async () => {
  await fleet?.close();
  await s?.close();
  await hook?.close();
});

describe('a rollout over 50 probes whose third wave fails', () => {
  let id: string;
  let targets: TargetBody[];
  const failing = new Map<string, 'fail' | 'roll-back'>();

  it('plans a canary of 2, then waves reaching 20 %, 50 % and 100 % of the fleet', async () => {
    // Decided when each command arrives: by then the plan below is known.
    fleet.verdict = (probeId) => failing.get(probeId) ?? 'commit';
    const r = await s.api<{ id: string; state: string; waveCount: number }>('POST', '/api/v1/rollouts', {
      body: {
        name: 'fleet 1.1.0',
        packSha256: pack.sha256,
        target: { channel: 'stable' },
        strategy: { canary: { probes: 2 }, waves: [20, 50, 100], successThreshold: 0.8, errorThreshold: 0.2, advance: { mode: 'wait', seconds: 0.2 } },
      },
    });
    expect(r.status, JSON.stringify(r.body)).toBe(201);
    expect(r.body).toMatchObject({ state: 'running', waveCount: 4 });
    id = r.body.id;
    targets = await targetsOf(s, id);
    const sizes = [0, 1, 2, 3].map((w) => targets.filter((t) => t.wave === w).length);
    expect(sizes).toEqual([2, 8, 15, 25]);
    // Wave 2 (the third): 3 failures and 2 rollbacks out of 15, past the 20 % error threshold.
    const third = targets.filter((t) => t.wave === 2).map((t) => t.probeId);
    third.slice(0, 3).forEach((p) => failing.set(p, 'fail'));
    third.slice(3, 5).forEach((p) => failing.set(p, 'roll-back'));
  });

  it('pauses by itself once the third wave fails past the error threshold, and fires the webhook', async () => {
    const paused = await waitForState(s, id, 'paused');
    expect(paused.pausedReason).toBe('error-threshold');
    expect(paused.wave).toBe(2);
    const got = await waitForWebhook(hook, id);
    expect(got.data).toMatchObject({ rolloutId: id, reason: 'error-threshold', wave: 2, eligible: 15, errorThreshold: 0.2, packSha256: pack.sha256 });
    expect(Number(got.data['failed'])).toBeGreaterThan(3);
    const audit = await s.api<{ action: string; actor: string; target: string }[]>('GET', `/api/v1/audit?actor=server:rollouts&limit=50`);
    expect(audit.body.map((a) => a.action)).toContain('rollout errors-exceeded');
  });

  it('sent the pack to no probe outside the waves already started', async () => {
    await fleet.drain();
    await new Promise((r) => setTimeout(r, 400)); // several ticks while paused
    const started = new Set(targets.filter((t) => t.wave <= 2).map((t) => t.probeId));
    const commanded = fleet.commanded(pack.sha256);
    expect([...commanded].filter((p) => !started.has(p))).toEqual([]);
    for (const t of targets.filter((x) => x.wave === 3)) expect(fleet.members.get(t.probeId)!.installs).toEqual([]);
    const st = await statusOf(s, id);
    expect(st.waves.map((w) => w.started)).toEqual([true, true, true, false]);
    expect(st.waves[3]).toMatchObject({ size: 25, pending: 25, committed: 0 });
  });

  it('tells failed from rolled back, and counts as updated only the probes that committed', async () => {
    await s.settle();
    const st = await statusOf(s, id);
    const now = await targetsOf(s, id);
    const committed = now.filter((t) => t.state === 'committed').map((t) => t.probeId);
    // Every committed target is a probe that published install-outcome committed, and vice versa.
    const reported = fleet.ids.filter((p) => fleet.members.get(p)!.version === pack.version);
    expect(committed.sort()).toEqual(reported.sort());
    expect(st.progress.updated).toBe(committed.length);
    expect(now.filter((t) => t.state === 'rolled-back').map((t) => t.probeId).sort()).toEqual([...failing].filter(([, v]) => v === 'roll-back').map(([p]) => p).sort());
    expect(now.filter((t) => t.state === 'failed').every((t) => t.errorCode === 'MIGRATION_FAILED')).toBe(true);
  });

  it('retries the failed probes, resumes, and completes with the whole fleet updated', async () => {
    failing.clear();
    const retry = await s.api<{ retried: string[]; rollout: { state: string } }>('POST', `/api/v1/rollouts/${id}/retry`);
    expect(retry.status).toBe(200);
    expect(retry.body.retried).toHaveLength(5);
    expect(retry.body.rollout.state).toBe('paused'); // nothing is sent while paused
    await new Promise((r) => setTimeout(r, 200));
    expect(fleet.distinctCommands(retry.body.retried[0]!)).toHaveLength(1);
    expect((await s.api('POST', `/api/v1/rollouts/${id}/resume`)).status).toBe(200);
    const done = await waitForState(s, id, 'completed', (b) => b.progress.committed === 50);
    expect(done.progress).toMatchObject({ size: 50, committed: 50, updated: 50, failed: 0, rolledBack: 0 });
    for (const p of fleet.ids) expect(fleet.distinctCommands(p)).toHaveLength(retry.body.retried.includes(p) ? 2 : 1);
    const events = done.history.map((h) => h.event);
    expect(events).toEqual(['start', 'wave-passed', 'wait-elapsed', 'wave-passed', 'wait-elapsed', 'errors-exceeded', 'retry', 'resume', 'wave-passed', 'wait-elapsed', 'last-wave-passed']);
    // The pack is no longer held by the rollout.
    const pins = await s.server.context.store.packs.holders(pack.sha256);
    expect(pins.filter((h) => h.startsWith('rollout:'))).toEqual([]);
  });
});

async function waitForWebhook(hook: Receiver, rolloutId: string): Promise<{ type: string; data: Record<string, unknown> }> {
  const until = Date.now() + 10_000;
  while (Date.now() < until) {
    const got = hook.received.find((h) => h.type === 'rollout.paused' && h.data['rolloutId'] === rolloutId);
    if (got) return got;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('no rollout.paused webhook');
}
