import { describe, expect, it } from 'vitest';
import type { ProbeState } from '../../base/src/protocol/messages.js';
import { StateCadence, diskBand } from '../../agent/src/daemon/state-cadence.js';
import { probeState } from '../server/harness.js';

/**
 * The state goes out when something an operator acts on changes, in full at a long interval, and
 * when asked (issue 24): the clock, the uptime and a byte of disk are not news.
 */
/** A healthy probe's state, half its disk free (the bands below are fractions of it). */
const state = (over: Partial<ProbeState> = {}): ProbeState => probeState('p-1', { disk: { freeBytes: 50_000, totalBytes: 100_000 }, ...over });

function harness(fullMs = 3_600_000) {
  let now = 0;
  let current = state();
  let linkUp = true;
  const sent: ProbeState[] = [];
  const cadence = new StateCadence({
    checkMs: 15_000,
    fullMs,
    now: () => now,
    build: async () => current,
    publish: async (s) => {
      if (!linkUp) return false;
      sent.push(s);
      return true;
    },
  });
  return {
    cadence,
    sent,
    set: (over: Partial<ProbeState>) => (current = state(over)),
    advance: (ms: number) => (now += ms),
    link: (up: boolean) => (linkUp = up),
  };
}

describe('the state cadence', () => {
  it('publishes the first state, then nothing while only the clock, the uptime and a few bytes of disk move', async () => {
    const h = harness();
    await h.cadence.check();
    expect(h.sent).toHaveLength(1);
    for (let i = 1; i <= 200; i++) {
      h.advance(15_000);
      h.set({ at: new Date(i * 15_000).toISOString(), uptimeSeconds: 10 + i * 15, disk: { freeBytes: 50_000 - i * 10, totalBytes: 100_000 } });
      await h.cadence.check();
    }
    expect(h.sent).toHaveLength(1);
  });

  it('publishes at once what an operator acts on: health, version, slot, a deployment outcome, the inbox, busy', async () => {
    const h = harness();
    await h.cadence.check();
    const changes: Partial<ProbeState>[] = [
      { health: 'degraded' },
      { health: 'degraded', appRunning: false },
      { version: '1.1.0', appVersion: '1.1.0', slot: 'b', dbVersion: 2, configVersion: 2 },
      { version: '1.1.0', appVersion: '1.1.0', slot: 'b', dbVersion: 2, configVersion: 2, lastDeployment: { id: 'd-1', outcome: 'committed', errorCode: null, version: '1.1.0', at: '2026-12-06T10:00:00Z' } },
      { inbox: { waiting: 1, incomplete: 0 } },
      { busy: true },
    ];
    for (const c of changes) {
      h.advance(15_000);
      h.set(c);
      await h.cadence.check();
    }
    expect(h.sent).toHaveLength(1 + changes.length);
    expect(h.sent[3]!.slot).toBe('b');
  });

  it('publishes when the disk crosses 20 %, 10 % or 5 % free, not within a band', async () => {
    expect([0.5, 0.2, 0.19, 0.1, 0.09, 0.05, 0.049, 0].map((f) => diskBand({ freeBytes: f * 1000, totalBytes: 1000 }))).toEqual([0, 0, 1, 1, 2, 2, 3, 3]);
    const h = harness();
    await h.cadence.check();
    for (const free of [30_000, 21_000, 19_000, 15_000, 9_000, 4_000]) {
      h.advance(15_000);
      h.set({ disk: { freeBytes: free, totalBytes: 100_000 } });
      await h.cadence.check();
    }
    expect(h.sent.map((s) => s.disk.freeBytes)).toEqual([50_000, 19_000, 9_000, 4_000]);
  });

  it('publishes a full state once the last is stateInterval old, and when asked', async () => {
    const h = harness(3_600_000);
    await h.cadence.check();
    h.advance(3_599_000);
    await h.cadence.check();
    expect(h.sent).toHaveLength(1);
    h.advance(1000);
    await h.cadence.check();
    expect(h.sent).toHaveLength(2);
    await h.cadence.publishNow();
    expect(h.sent).toHaveLength(3);
  });

  it('keeps a change the link could not carry and sends it at the next check', async () => {
    const h = harness();
    await h.cadence.check();
    h.link(false);
    h.set({ health: 'down' });
    await h.cadence.check();
    expect(h.sent).toHaveLength(1);
    h.link(true);
    h.advance(15_000);
    await h.cadence.check();
    expect(h.sent.map((s) => s.health)).toEqual(['ok', 'down']);
  });
});
