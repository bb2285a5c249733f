import { describe, expect, it } from 'vitest';
import { insideWindow } from '../../agent/src/update/policy.js';
import { CREATED, facts, manifest, MiB, product, refusal } from '../helpers/policy-facts.js';

/**
 * The install policy at its edges (agent/src/update/policy.ts), found by a mutation run
 * (docs/testing.md): each boundary and each half of a condition decides one way in a test.
 */
describe('the install policy at its edges', () => {
  it('installs on a disk exactly as free as the install needs, and refuses one byte less', () => {
    expect(refusal(facts({ freeBytes: 100 * MiB, requiredBytes: 100 * MiB }))).toBeNull();
    expect(refusal(facts({ freeBytes: 100 * MiB - 1, requiredBytes: 100 * MiB }))?.code).toBe('POLICY_DISK_SPACE');
  });

  it('counts a pre-release of the installed line as inside `requires`', () => {
    expect(refusal(facts({ installed: { product: 'probe-app', version: '1.0.5-rc.1', securityVersion: 1 } }))).toBeNull();
  });

  it('needs both the signed allowance and the named release for a downgrade', () => {
    const older = { installed: { product: 'probe-app', version: '1.2.0', securityVersion: 1 } };
    const flagOnly = refusal(facts({ ...older, manifest: manifest({ requires: '>=1.0.0', allowDowngrade: true }) }));
    expect(flagOnly?.message).toContain('names no release');
    const releaseOnly = refusal(facts({ ...older, manifest: manifest({ requires: '>=1.0.0', downgradeFrom: '1.2.0' }) }));
    expect(releaseOnly?.code).toBe('POLICY_DOWNGRADE');
    expect(releaseOnly?.message).toContain('carries no signed downgrade allowance');
    expect(refusal(facts({ ...older, manifest: manifest({ requires: '>=1.0.0', allowDowngrade: true, downgradeFrom: '1.2.0' }) }))).toBeNull();
  });

  it('judges anti-replay of licence and trust packs by their kind only, and lets the same createdAt through', () => {
    const licence = manifest({ kind: 'license', createdAt: CREATED });
    expect(refusal(facts({ manifest: licence, newestAppliedSameKind: CREATED }))).toBeNull();
    expect(refusal(facts({ manifest: licence, newestAppliedSameKind: '2025-03-01T10:00:00.001Z' }))?.code).toBe('POLICY_STALE_PACK');
    const trust = manifest({ kind: 'trust', createdAt: CREATED });
    expect(refusal(facts({ manifest: trust, newestAppliedSameKind: '2025-03-02T00:00:00.000Z' }))?.message).toContain('the trust pack was created');
    // A release is judged by its securityVersion's newest createdAt, never by the licence/trust rule.
    expect(refusal(facts({ newestAppliedSameKind: '2030-01-01T00:00:00.000Z' }))).toBeNull();
    expect(refusal(facts({ manifest: product({ version: '1.1.0' }), installed: null, newestAppliedSameKind: '2030-01-01T00:00:00.000Z' }))).toBeNull();
  });

  it('names the probe model and the pack models, and quotes at most 200 characters of a busy reason', () => {
    expect(refusal(facts({ model: 'probe-z9', manifest: manifest({ compatible: ['probe-x1', 'probe-x2'] }) }))?.message).toBe('this probe is a probe-z9; the pack is for probe-x1, probe-x2');
    const busy = refusal(facts({ busyReason: `measuring ${'x'.repeat(500)}` }));
    expect(busy?.code).toBe('POLICY_BUSY');
    expect(busy?.message.length).toBe('the app asked not to be interrupted: '.length + 200);
  });
});

describe('maintenance windows', () => {
  const at = (h: number, m: number): Date => new Date(2025, 2, 1, h, m);

  it('refuses a time that is not exactly HH:MM, naming it', () => {
    for (const bad of ['x12:00', '12:00x', '1200', '12:0']) {
      expect(() => insideWindow({ start: bad, end: '13:00' }, at(12, 30)), bad).toThrow(`maintenance window time ${bad} is not HH:MM`);
    }
  });

  it('reads a window from a time to the same time as empty, never as the whole day', () => {
    for (const [h, m] of [[0, 0], [11, 59], [12, 0], [12, 1], [23, 59]] as const) expect(insideWindow({ start: '12:00', end: '12:00' }, at(h, m))).toBe(false);
  });
});
