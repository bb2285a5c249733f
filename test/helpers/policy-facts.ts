import type { Manifest } from '../../pack/src/manifest.js';
import { UpdateError } from '../../agent/src/update/errors.js';
import { checkPolicy, type PolicyFacts } from '../../agent/src/update/policy.js';

/** Builders of the facts the install policy judges (agent/src/update/policy.ts), for its tests. */
export const MiB = 1024 * 1024;
export const CREATED = '2025-03-01T10:00:00.000Z';

export function manifest(over: Partial<Manifest> = {}): Manifest {
  return {
    kind: 'servicepack',
    product: 'probe-app',
    version: '1.1.0',
    compatible: ['probe-x1'],
    requires: '>=1.0.0 <1.1.0',
    minAgentVersion: '0.1.0',
    securityVersion: 1,
    createdAt: CREATED,
    payloads: [],
    ...over,
  };
}

/** A product manifest: no `requires`. */
export function product(over: Partial<Manifest> = {}): Manifest {
  const { requires: _dropped, ...m } = manifest({ kind: 'product', ...over });
  return m;
}

/** A probe running probe-app 1.0.0 at noon, idle, with room, that would take `manifest()`. */
export function facts(over: Partial<PolicyFacts> = {}): PolicyFacts {
  return {
    manifest: manifest(),
    model: 'probe-x1',
    installed: { product: 'probe-app', version: '1.0.0', securityVersion: 1 },
    securityFloor: 1,
    newestCreatedAtSameSecurity: '2025-02-01T00:00:00.000Z',
    newestAppliedSameKind: null,
    agentVersion: '0.1.0',
    freeBytes: 10_000 * MiB,
    requiredBytes: 100 * MiB,
    busyReason: null,
    maintenanceWindow: null,
    now: new Date(2025, 2, 1, 12, 0),
    ...over,
  };
}

export function refusal(f: PolicyFacts): UpdateError | null {
  try {
    checkPolicy(f);
    return null;
  } catch (e) {
    if (e instanceof UpdateError) return e;
    throw e;
  }
}
