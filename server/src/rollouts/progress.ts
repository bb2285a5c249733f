import { assertNever } from '../../../base/src/errors/sonde-error.js';
import type { CommandStatus } from '../store/types.js';
import type { Strategy } from './definition.js';
import type { TargetEvent, TargetState } from './machine.js';
import type { TargetCount } from './rollout-repository.js';

/**
 * How far a wave has got, from the target counts in the store, and what that means against the
 * strategy's thresholds. Pure functions: the engine and the status view use the same ones.
 */
export interface WaveProgress {
  readonly wave: number;
  readonly size: number;
  readonly pending: number;
  readonly sent: number;
  readonly accepted: number;
  readonly installing: number;
  /** Updated: an install-outcome `committed` event, nothing less. */
  readonly committed: number;
  readonly failed: number;
  readonly rolledBack: number;
  readonly skipped: number;
  /** Failures an operator has not resumed past: what the error threshold counts. */
  readonly openFailures: number;
  /** size - skipped: what the thresholds are fractions of. */
  readonly eligible: number;
}

export function waveProgress(counts: readonly TargetCount[], wave: number): WaveProgress {
  const of = (s: TargetState, ack?: boolean): number =>
    counts.filter((c) => c.wave === wave && c.state === s && (ack === undefined || c.acknowledged === ack)).reduce((n, c) => n + c.count, 0);
  const size = counts.filter((c) => c.wave === wave).reduce((n, c) => n + c.count, 0);
  const skipped = of('skipped');
  return {
    wave,
    size,
    pending: of('pending'),
    sent: of('sent'),
    accepted: of('accepted'),
    installing: of('installing'),
    committed: of('committed'),
    failed: of('failed'),
    rolledBack: of('rolled-back'),
    skipped,
    openFailures: of('failed', false) + of('rolled-back', false),
    eligible: size - skipped,
  };
}

/** The wave passes when at least successThreshold of its eligible probes committed. */
export function wavePassed(p: WaveProgress, s: Strategy): boolean {
  return p.committed >= Math.ceil(s.successThreshold * p.eligible - 1e-9);
}

/** The rollout pauses itself when more than errorThreshold of a started wave failed. */
export function errorsExceeded(p: WaveProgress, s: Strategy): boolean {
  return p.openFailures > 0 && p.openFailures > s.errorThreshold * p.eligible + 1e-9;
}

/**
 * What a command's status (from the probe's events, store/sqlite-ingest.ts) means for its
 * target; null for statuses that say nothing new. A failed install is `rolled-back` when the
 * probe's install-outcome said so (the caller looks the deployment up).
 */
export function targetEventFor(status: CommandStatus, rolledBack: boolean): TargetEvent | null {
  switch (status) {
    case 'pending':
    case 'sent':
    case 'delivered':
      return null;
    case 'accepted':
      return 'accepted';
    case 'running':
      return 'running';
    case 'succeeded':
      return 'committed';
    case 'failed':
      return rolledBack ? 'rolled-back' : 'failed';
    case 'refused':
      return 'failed';
    case 'cancelled':
      return 'cancelled';
    default:
      return assertNever(status, 'command status');
  }
}
