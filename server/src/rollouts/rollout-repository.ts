import type { DownloadLimits } from '../../../base/src/protocol/download-limits.js';

export interface AgentFirst {
  readonly packSha256: string;
  readonly version: string;
  readonly minAgentVersion: string;
}
import type { RolloutTarget, Strategy } from './definition.js';
import type { Environment } from './environments.js';
import type { RolloutEvent, RolloutState, TargetState } from './machine.js';
import type { MaintenanceWindow } from './windows.js';

/**
 * The rollouts' part of the repository interface (store/types.ts `Store.rollouts`): every
 * rollout, its planned targets, its transitions and approvals. Like the rest of the store it is
 * async so that a PostgreSQL store can implement it; the SQLite one is sqlite-rollouts.ts.
 */
export interface RolloutRecord {
  readonly id: string;
  readonly name: string | null;
  readonly packSha256: string;
  readonly packVersion: string;
  readonly packProduct: string;
  readonly environment: Environment | null;
  readonly target: RolloutTarget;
  readonly strategy: Strategy;
  readonly windows: readonly MaintenanceWindow[];
  /** Limits on each probe's download of the pack (bandwidth cap, window of local time); null: none. */
  readonly download: DownloadLimits | null;
  /** The agent update sent first to a probe whose agent is older than the pack's minAgentVersion; null: none. */
  readonly agentFirst: AgentFirst | null;
  readonly state: RolloutState;
  /** The current wave: -1 before the start, then 0 … waveCount - 1. */
  readonly wave: number;
  readonly waveCount: number;
  readonly hasCanary: boolean;
  /** In `waiting`: when the next wave may start. */
  readonly waitUntil: string | null;
  /** In `paused`: `operator` or `error-threshold`. */
  readonly pausedReason: string | null;
  readonly createdBy: string;
  readonly createdByName: string;
  readonly createdAt: string;
  readonly startedAt: string | null;
  readonly updatedAt: string;
  readonly finishedAt: string | null;
}

export interface TargetRecord {
  readonly rolloutId: string;
  readonly probeId: string;
  readonly wave: number;
  readonly position: number;
  readonly state: TargetState;
  /** 1 for the first command; each retry adds one (and so makes a new command id). */
  readonly attempt: number;
  readonly commandId: string | null;
  readonly errorCode: string | null;
  readonly deploymentId: string | null;
  readonly skipReason: string | null;
  /** A failure an operator resumed past: it no longer counts against the error threshold. */
  readonly acknowledged: boolean;
  readonly sentAt: string | null;
  readonly updatedAt: string;
  readonly finishedAt: string | null;
}

export interface TransitionRecord {
  readonly at: string;
  readonly from: RolloutState;
  readonly event: RolloutEvent;
  readonly to: RolloutState;
  readonly wave: number;
  readonly actor: string;
  readonly detail: Record<string, unknown> | null;
}

export interface ApprovalRecord {
  readonly rolloutId: string;
  /** `wave`: the next wave may start. `promotion`: the pack may be rolled out in `environment`. */
  readonly kind: 'wave' | 'promotion';
  readonly wave: number | null;
  readonly environment: Environment | null;
  readonly packSha256: string;
  readonly approvedBy: string;
  readonly approvedByName: string;
  readonly approvedAt: string;
}

/** Per wave and state: how many targets (acknowledged failures counted apart). */
export interface TargetCount {
  readonly wave: number;
  readonly state: TargetState;
  readonly acknowledged: boolean;
  readonly count: number;
}

export interface RolloutPatch {
  readonly wave?: number;
  readonly waitUntil?: string | null;
  readonly pausedReason?: string | null;
  readonly startedAt?: string;
  readonly finishedAt?: string;
}

/** A target's change: to `state`, with what the probe or the engine said. */
export interface TargetChange {
  readonly probeId: string;
  readonly from: TargetState;
  readonly state: TargetState;
  readonly commandId?: string | null;
  readonly attempt?: number;
  readonly errorCode?: string | null;
  readonly deploymentId?: string | null;
  readonly skipReason?: string | null;
  readonly acknowledged?: boolean;
  readonly sentAt?: string | null;
  readonly finishedAt?: string | null;
}

export interface RolloutQuery {
  readonly states?: readonly RolloutState[] | undefined;
  readonly packSha256?: string | undefined;
  readonly environment?: Environment | undefined;
  readonly limit: number;
}

export interface RolloutRepository {
  /** The rollout and its planned targets, in one transaction. */
  create(r: RolloutRecord, targets: readonly TargetRecord[]): Promise<void>;
  get(id: string): Promise<RolloutRecord | null>;
  /** How many rollouts are in each state (the `sonde_rollouts` gauge). */
  countByState(): Promise<Record<string, number>>;
  list(q: RolloutQuery): Promise<RolloutRecord[]>;
  /**
   * Moves the rollout from `from` to `to` and records the transition, in one transaction; false
   * (and nothing written) when the rollout is no longer in `from`.
   */
  transition(id: string, from: RolloutState, t: TransitionRecord, patch: RolloutPatch): Promise<boolean>;
  history(id: string, limit: number): Promise<TransitionRecord[]>;
  targets(id: string, q: { states?: readonly TargetState[] | undefined; wave?: number | undefined; maxWave?: number | undefined; limit: number; offset: number }): Promise<TargetRecord[]>;
  /** The targets holding any of these command ids, by command id (one query per few hundred ids). */
  targetsByCommands(commandIds: readonly string[]): Promise<Map<string, TargetRecord>>;
  counts(id: string): Promise<TargetCount[]>;
  /**
   * Applies target changes in one transaction, each only if the target is still in its `from`
   * state; returns those applied.
   */
  updateTargets(rolloutId: string, changes: readonly TargetChange[], at: string): Promise<TargetChange[]>;
  addApproval(a: ApprovalRecord): Promise<void>;
  approvals(id: string): Promise<ApprovalRecord[]>;
  /** Was `packSha256` approved for `environment` (a promotion approval)? */
  promotionApproval(packSha256: string, environment: Environment): Promise<ApprovalRecord | null>;
  /** A rollout of this pack in this environment that completed. */
  completedIn(packSha256: string, environment: Environment): Promise<RolloutRecord | null>;
}
