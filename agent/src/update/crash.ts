import { faultPoint, WRITE_FAULT_POINTS } from '../../../base/src/fault/fault-point.js';

/**
 * The install engine's fault points (DESIGN.md, "Fault injection"): `SONDE_CRASH_AT=<point>`
 * makes the agent die abruptly, as from a power cut, when it reaches that named point. Every
 * point the engine passes is listed here so the crash-matrix test can loop over all of them; the
 * mechanism (patterns, `#n`, the disk filler, the power cut) is base/src/fault/fault-point.ts.
 */
export const CRASH_POINTS = [
  'received:persisted',
  'verified:persisted',
  'stage:target-marked-bad',
  'stage:payloads-extracted',
  'stage:slot-written',
  'stage:app-stopped',
  'stage:db-snapshot',
  'stage:db-migrated',
  'stage:slot-synced',
  'stage:config-written',
  'staged:persisted',
  'switch:persisted',
  'switch:db-moved-aside',
  'switch:db-swapped',
  'switch:config-swapped',
  'switch:pointer-flipped',
  'trial:persisted',
  'trial:app-started',
  'trial:health-checked-once',
  'commit:persisted',
  'commit:slot-marked-good',
  'commit:receipt-written',
  'rollback:persisted',
  'rollback:app-stopped',
  'rollback:pointer-restored',
  'rollback:db-restored',
  'rollback:config-restored',
  'rollback:app-started',
  // Before each deployment hook starts (a crash here runs it after the resume, once) and after
  // it ended and its run was journaled (agent/src/update/hooks.ts).
  'hook:pre-install:before',
  'hook:pre-install:after',
  'hook:migrate:before',
  'hook:migrate:after',
  'hook:post-switch:before',
  'hook:post-switch:after',
  'hook:post-commit:before',
  'hook:post-commit:after',
  'hook:on-rollback:before',
  'hook:on-rollback:after',
  ...WRITE_FAULT_POINTS,
] as const;

export type CrashPoint = (typeof CRASH_POINTS)[number];

/**
 * The points of an agent updating itself (self-update.ts), only on the path of an `agent` pack:
 * the build synced into its slot, the launcher's trial file written, the new agent's `committed`
 * written before its trial file is removed. test/packaging/self-update.test.ts cuts the probe right after each.
 */
export const AGENT_UPDATE_CRASH_POINTS = ['agent:slot-written', 'agent:trial-written', 'agent:committed-written'] as const;
export type AgentUpdateCrashPoint = (typeof AGENT_UPDATE_CRASH_POINTS)[number];

export function agentUpdateCrashPoint(point: AgentUpdateCrashPoint): void {
  faultPoint(point);
}

/**
 * The points only a system install on block slots passes (system-install.ts, slots/boot-env.ts):
 * each write of the bootloader environment, and the reboot asked for. The power-cut harness cuts
 * right after each (docs/slots.md).
 */
export const SYSTEM_CRASH_POINTS = ['bootenv:written', 'trial:reboot-requested'] as const;
export type SystemCrashPoint = (typeof SYSTEM_CRASH_POINTS)[number];

export function systemCrashPoint(point: SystemCrashPoint): void {
  faultPoint(point);
}

/** Dies at `point` when SONDE_CRASH_AT names it (base/src/fault/fault-point.ts). */
export function crashPoint(point: CrashPoint, detail?: string): void {
  faultPoint(point, detail);
}
