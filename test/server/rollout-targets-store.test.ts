import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ProbeState } from '../../base/src/protocol/messages.js';
import { hashToken, newTokenId, newTokenSecret } from '../../server/src/auth/tokens.js';
import type { RolloutRecord, TargetRecord } from '../../server/src/rollouts/rollout-repository.js';
import { SqliteStore } from '../../server/src/store/sqlite-store.js';
import { probeState } from './harness.js';

/**
 * The rollout targets in SQLite: updateTargets applies many changes in a few set-based
 * statements, and must keep the meaning of applying them one by one, in order.
 */
const AT = '2026-11-22T10:00:00.000Z';
const LATER = '2026-11-22T10:05:00.000Z';

function rollout(id: string): RolloutRecord {
  return {
    id,
    name: null,
    packSha256: 'a'.repeat(64),
    packVersion: '1.1.0',
    packProduct: 'probe-app',
    environment: null,
    target: { channel: 'stable' },
    strategy: { waves: [100], successThreshold: 1, errorThreshold: 0.1, advance: { mode: 'approval' }, skipCurrent: true },
    windows: [],
    download: null,
    agentFirst: null,
    state: 'running',
    wave: 0,
    waveCount: 1,
    hasCanary: false,
    waitUntil: null,
    pausedReason: null,
    createdBy: 'test',
    createdByName: 'test',
    createdAt: AT,
    startedAt: AT,
    updatedAt: AT,
    finishedAt: null,
  };
}

function target(rolloutId: string, probeId: string, position: number): TargetRecord {
  return {
    rolloutId,
    probeId,
    wave: 0,
    position,
    state: 'pending',
    attempt: 1,
    commandId: null,
    errorCode: null,
    deploymentId: null,
    skipReason: null,
    acknowledged: false,
    sentAt: null,
    updatedAt: AT,
    finishedAt: null,
  };
}

describe('rollout targets in the SQLite store', () => {
  let dir: string;
  let store: SqliteStore;
  const probes = Array.from({ length: 2500 }, (_, i) => `probe-${String(i).padStart(5, '0')}`);

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sonde-targets-'));
    store = SqliteStore.open(join(dir, 'server.db'));
    await store.rollouts.create(
      rollout('ro-000000000001'),
      probes.map((p, i) => target('ro-000000000001', p, i)),
    );
    // A second rollout over the same probes: its targets must never be touched.
    await store.rollouts.create(
      rollout('ro-000000000002'),
      probes.slice(0, 10).map((p, i) => target('ro-000000000002', p, i)),
    );
  });

  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const all = async (id: string): Promise<Map<string, TargetRecord>> =>
    new Map((await store.rollouts.targets(id, { limit: 10_000, offset: 0 })).map((t) => [t.probeId, t]));

  it('marks thousands of targets sent in one call, each with its own command id, and reads them back by command id', async () => {
    const changes = probes.map((p) => ({ probeId: p, from: 'pending' as const, state: 'sent' as const, commandId: `ro-000000000001:1:${p}`, sentAt: LATER }));
    const applied = await store.rollouts.updateTargets('ro-000000000001', changes, LATER);
    expect(applied).toHaveLength(probes.length);
    const after = await all('ro-000000000001');
    for (const p of probes) expect(after.get(p)).toMatchObject({ state: 'sent', commandId: `ro-000000000001:1:${p}`, sentAt: LATER, updatedAt: LATER });
    const other = await all('ro-000000000002');
    for (const t of other.values()) expect(t).toMatchObject({ state: 'pending', commandId: null, updatedAt: AT });

    const byCommand = await store.rollouts.targetsByCommands([`ro-000000000001:1:${probes[7]}`, `ro-000000000001:1:${probes[2400]}`, 'no-such-command']);
    expect([...byCommand.keys()].sort()).toEqual([`ro-000000000001:1:${probes[7]}`, `ro-000000000001:1:${probes[2400]}`]);
    expect(byCommand.get(`ro-000000000001:1:${probes[7]}`)?.probeId).toBe(probes[7]);
  });

  it('applies two changes of one probe in one call in order, and skips a change whose from-state no longer holds', async () => {
    const p = probes[3]!;
    const q = probes[4]!;
    const applied = await store.rollouts.updateTargets(
      'ro-000000000001',
      [
        { probeId: p, from: 'pending', state: 'sent', commandId: 'c-p', sentAt: AT },
        { probeId: q, from: 'sent', state: 'accepted' }, // q is still pending: not applied
        { probeId: p, from: 'sent', state: 'accepted' },
        { probeId: p, from: 'accepted', state: 'failed', errorCode: 'HEALTH_CHECK_FAILED', deploymentId: 'd-1', finishedAt: LATER },
      ],
      LATER,
    );
    expect(applied.map((c) => `${c.probeId}:${c.state}`)).toEqual([`${p}:sent`, `${p}:accepted`, `${p}:failed`]);
    const after = await all('ro-000000000001');
    expect(after.get(p)).toMatchObject({ state: 'failed', commandId: 'c-p', errorCode: 'HEALTH_CHECK_FAILED', deploymentId: 'd-1', finishedAt: LATER });
    expect(after.get(q)).toMatchObject({ state: 'pending', commandId: null });
  });

  it('writes booleans as 0/1 and clears a column set to null', async () => {
    const p = probes[9]!;
    await store.rollouts.updateTargets('ro-000000000001', [{ probeId: p, from: 'pending', state: 'failed', errorCode: 'X', finishedAt: AT }], AT);
    await store.rollouts.updateTargets('ro-000000000001', [{ probeId: p, from: 'failed', state: 'failed', acknowledged: true }], LATER);
    expect((await all('ro-000000000001')).get(p)).toMatchObject({ state: 'failed', acknowledged: true, errorCode: 'X' });
    await store.rollouts.updateTargets('ro-000000000001', [{ probeId: p, from: 'failed', state: 'pending', attempt: 2, errorCode: null, finishedAt: null, acknowledged: false }], LATER);
    expect((await all('ro-000000000001')).get(p)).toMatchObject({ state: 'pending', attempt: 2, errorCode: null, finishedAt: null, acknowledged: false });
  });
});

describe('what the rollout planner reads of the probes', () => {
  it('gives online and version for each probe, the product only where the version is the pack version, and no state before a report', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sonde-planning-'));
    const store = SqliteStore.open(join(dir, 'server.db'));
    try {
      for (const id of ['plan-a', 'plan-b', 'plan-c']) {
        await store.probes.enroll(id, { httpBase: 'http://127.0.0.1:9', mqttPasswordHash: 'x', token: { id: newTokenId(), kind: 'probe', name: id, role: null, probeId: id, hash: hashToken(newTokenSecret()) } });
      }
      const state = (probeId: string, version: string): ProbeState => probeState(probeId, { at: AT, version, appVersion: version });
      await store.ingest({ states: [{ probeId: 'plan-a', state: state('plan-a', '1.1.0'), receivedAt: AT }, { probeId: 'plan-b', state: state('plan-b', '1.0.0'), receivedAt: AT }], events: [] });
      expect(await store.probes.planning(['plan-a', 'plan-b', 'plan-c', 'plan-unknown'], '1.1.0')).toEqual([
        { id: 'plan-a', online: true, state: { version: '1.1.0', product: 'probe-app' } },
        { id: 'plan-b', online: true, state: { version: '1.0.0', product: null } },
        { id: 'plan-c', online: false, state: null },
      ]);
    } finally {
      store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
