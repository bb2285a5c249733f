import { describe, expect, it } from 'vitest';
import { strategySchema } from '../../server/src/rollouts/definition.js';
import { nextEnvironment, previousEnvironment } from '../../server/src/rollouts/environments.js';
import {
  isFinal,
  nextRollout,
  nextTarget,
  ROLLOUT_EVENTS,
  ROLLOUT_STATES,
  ROLLOUT_TRANSITIONS,
  TARGET_EVENTS,
  TARGET_STATES,
  TARGET_TRANSITIONS,
} from '../../server/src/rollouts/machine.js';
import { planRollout, type PlanInput } from '../../server/src/rollouts/plan.js';
import { errorsExceeded, waveProgress, wavePassed } from '../../server/src/rollouts/progress.js';
import type { TargetCount } from '../../server/src/rollouts/rollout-repository.js';

/** The pure parts of rollouts: the two transition tables, the wave planner, the thresholds. */
describe('the rollout transition table', () => {
  it('lets every state that is not final be aborted, and nothing leave completed or aborted', () => {
    for (const s of ROLLOUT_STATES) {
      if (isFinal(s)) expect(ROLLOUT_TRANSITIONS[s], s).toEqual({});
      else expect(nextRollout(s, 'abort')?.to, s).toBe('aborted');
    }
  });

  it.each([
    { from: 'draft', event: 'start', to: 'running', wave: 'first' },
    { from: 'running', event: 'wave-passed', to: 'waiting', wave: 'same' },
    { from: 'running', event: 'wave-passed-gated', to: 'awaiting-approval', wave: 'same' },
    { from: 'running', event: 'last-wave-passed', to: 'completed', wave: 'same' },
    { from: 'running', event: 'errors-exceeded', to: 'paused', wave: 'same' },
    { from: 'waiting', event: 'wait-elapsed', to: 'running', wave: 'next' },
    { from: 'waiting', event: 'errors-exceeded', to: 'paused', wave: 'same' },
    { from: 'awaiting-approval', event: 'approve', to: 'running', wave: 'next' },
    { from: 'awaiting-approval', event: 'errors-exceeded', to: 'paused', wave: 'same' },
    { from: 'paused', event: 'resume', to: 'running', wave: 'same' },
    { from: 'paused', event: 'retry', to: 'paused', wave: 'same' },
  ] as const)('moves $from on $event to $to ($wave wave)', ({ from, event, to, wave }) => {
    expect(nextRollout(from, event)).toEqual({ to, wave });
  });

  it.each([
    { from: 'paused', event: 'approve' },
    { from: 'running', event: 'approve' },
    { from: 'running', event: 'resume' },
    { from: 'draft', event: 'pause' },
    { from: 'completed', event: 'retry' },
    { from: 'aborted', event: 'resume' },
    { from: 'paused', event: 'wave-passed' },
  ] as const)('has no edge from $from on $event', ({ from, event }) => {
    expect(nextRollout(from, event)).toBeNull();
  });

  it('names only known states and events', () => {
    for (const s of ROLLOUT_STATES) for (const [ev, edge] of Object.entries(ROLLOUT_TRANSITIONS[s])) {
      expect(ROLLOUT_EVENTS).toContain(ev);
      expect(ROLLOUT_STATES).toContain(edge!.to);
    }
    for (const s of TARGET_STATES) for (const [ev, to] of Object.entries(TARGET_TRANSITIONS[s])) {
      expect(TARGET_EVENTS).toContain(ev);
      expect(TARGET_STATES).toContain(to);
    }
  });
});

describe('the target transition table', () => {
  it('reaches committed only on a committed outcome', () => {
    for (const s of TARGET_STATES) for (const [ev, to] of Object.entries(TARGET_TRANSITIONS[s])) if (to === 'committed') expect(ev).toBe('committed');
  });

  it('ignores a late report once committed, and retries only failures', () => {
    for (const ev of TARGET_EVENTS) expect(nextTarget('committed', ev)).toBeNull();
    expect(nextTarget('failed', 'retry')).toBe('pending');
    expect(nextTarget('rolled-back', 'retry')).toBe('pending');
    expect(nextTarget('installing', 'retry')).toBeNull();
    expect(nextTarget('skipped', 'committed')).toBe('committed'); // the probe's own outcome wins over a cancel
  });
});

describe('planRollout', () => {
  const probes = (n: number, online = true): PlanInput['probes'] => Array.from({ length: n }, (_, i) => ({ id: `p-${String(i).padStart(3, '0')}`, online, state: null }));
  const strategy = (o: Record<string, unknown>) => strategySchema.parse(o);
  const pack = { product: 'probe-app', version: '2.0.0' };

  it.each([
    { what: 'a canary of 2, then 20/50/100 % of 50', n: 50, s: { canary: { probes: 2 }, waves: [20, 50, 100] }, sizes: [2, 8, 15, 25] },
    { what: 'a 10 % canary of 50', n: 50, s: { canary: { percent: 10 }, waves: [100] }, sizes: [5, 45] },
    { what: 'no canary, one wave', n: 7, s: {}, sizes: [7] },
    { what: 'waves that add nobody are dropped', n: 3, s: { canary: { probes: 1 }, waves: [10, 20, 100] }, sizes: [1, 2] },
    { what: 'a canary as large as the fleet', n: 3, s: { canary: { probes: 5 }, waves: [50, 100] }, sizes: [3] },
    { what: 'one probe', n: 1, s: { canary: { percent: 1 }, waves: [50, 100] }, sizes: [1] },
    { what: 'percentages rounded up', n: 10, s: { waves: [15, 100] }, sizes: [2, 8] },
  ])('plans $what: $sizes', ({ n, s, sizes }) => {
    const plan = planRollout({ rolloutId: 'ro-1', probes: probes(n), strategy: strategy(s), pack });
    expect(plan.waveSizes).toEqual(sizes);
    expect(plan.targets).toHaveLength(n);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(n);
  });

  it('plans the same rollout the same way, and another rollout another way', () => {
    const s = strategy({ waves: [10, 100] });
    const a = planRollout({ rolloutId: 'ro-a', probes: probes(100), strategy: s, pack });
    const again = planRollout({ rolloutId: 'ro-a', probes: probes(100), strategy: s, pack });
    const b = planRollout({ rolloutId: 'ro-b', probes: probes(100), strategy: s, pack });
    expect(again.targets).toEqual(a.targets);
    const first = (p: typeof a) => p.targets.filter((t) => t.wave === 0).map((t) => t.probeId);
    expect(first(b)).not.toEqual(first(a));
    expect(first(a)).not.toEqual(probes(10).map((p) => p.id)); // not simply the first ids
  });

  it('takes the canary from probes online now, or the probes named', () => {
    const mixed = probes(20).map((p, i) => ({ ...p, online: i >= 17 }));
    const online = planRollout({ rolloutId: 'ro-c', probes: mixed, strategy: strategy({ canary: { probes: 3 } }), pack });
    expect(online.targets.filter((t) => t.wave === 0).map((t) => t.probeId).sort()).toEqual(['p-017', 'p-018', 'p-019']);
    const named = planRollout({ rolloutId: 'ro-c', probes: mixed, strategy: strategy({ canary: { probeIds: ['p-003', 'p-004'] } }), pack });
    expect(named.targets.filter((t) => t.wave === 0).map((t) => t.probeId).sort()).toEqual(['p-003', 'p-004']);
  });

  it('skips probes whose state already reports the version, unless told not to', () => {
    const current = probes(4).map((p, i) => ({ ...p, state: i < 2 ? ({ version: '2.0.0', product: 'probe-app' } as never) : null }));
    const plan = planRollout({ rolloutId: 'ro-d', probes: current, strategy: strategy({}), pack });
    expect(plan.waveSizes).toEqual([2]);
    expect(plan.targets.filter((t) => t.skipReason === 'already-current').map((t) => [t.probeId, t.wave])).toEqual([
      ['p-000', -1],
      ['p-001', -1],
    ]);
    expect(planRollout({ rolloutId: 'ro-d', probes: current, strategy: strategy({ skipCurrent: false }), pack }).waveSizes).toEqual([4]);
  });
});

describe('the thresholds', () => {
  const counts = (c: Partial<Record<'committed' | 'failed' | 'rolled-back' | 'sent' | 'skipped', number>>, acknowledged = 0): TargetCount[] => [
    ...Object.entries(c).map(([state, count]) => ({ wave: 1, state: state as TargetCount['state'], acknowledged: false, count: count! })),
    ...(acknowledged ? [{ wave: 1, state: 'failed' as const, acknowledged: true, count: acknowledged }] : []),
  ];
  const s = (successThreshold: number, errorThreshold: number) => strategySchema.parse({ successThreshold, errorThreshold });

  it.each([
    { what: '9 of 10 committed at 0.9', c: { committed: 9, sent: 1 }, st: s(0.9, 0.1), passed: true, exceeded: false },
    { what: '8 of 10 committed at 0.9', c: { committed: 8, sent: 2 }, st: s(0.9, 0.1), passed: false, exceeded: false },
    { what: '1 failure of 10 at an error threshold of 0.1 (not more than)', c: { committed: 9, failed: 1 }, st: s(0.9, 0.1), passed: true, exceeded: false },
    { what: '2 failures of 10 at 0.1', c: { committed: 8, failed: 1, 'rolled-back': 1 }, st: s(0.9, 0.1), passed: false, exceeded: true },
    { what: 'any failure at 0', c: { committed: 9, failed: 1 }, st: s(0.5, 0), passed: true, exceeded: true },
    { what: 'skipped probes left out of both fractions', c: { committed: 5, skipped: 5 }, st: s(1, 0), passed: true, exceeded: false },
  ])('$what: passed $passed, exceeded $exceeded', ({ c, st, passed, exceeded }) => {
    const p = waveProgress(counts(c), 1);
    expect(wavePassed(p, st)).toBe(passed);
    expect(errorsExceeded(p, st)).toBe(exceeded);
  });

  it('does not count failures an operator resumed past', () => {
    const p = waveProgress(counts({ committed: 5 }, 3), 1);
    expect(p.openFailures).toBe(0);
    expect(errorsExceeded(p, s(0.5, 0))).toBe(false);
  });
});

describe('environments', () => {
  it('go integration → qa → uat → production', () => {
    expect(previousEnvironment('integration')).toBeNull();
    expect(previousEnvironment('production')).toBe('uat');
    expect(nextEnvironment('qa')).toBe('uat');
    expect(nextEnvironment('production')).toBeNull();
  });
});
