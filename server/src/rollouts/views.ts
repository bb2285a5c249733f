import type { ApprovalRecord, RolloutRecord, TargetRecord } from './rollout-repository.js';
import type { RolloutStatus } from './rollout-service.js';
import type { ApprovalView, RolloutView, TargetView, rolloutStatusSchema } from '../http/response-schemas.js';
import type { z } from 'zod';

/** What the API and `sonde rollout` show of a rollout: the same shape everywhere. */
export function rolloutView(r: RolloutRecord): RolloutView {
  return {
    id: r.id,
    name: r.name,
    state: r.state,
    packSha256: r.packSha256,
    product: r.packProduct,
    version: r.packVersion,
    environment: r.environment,
    target: r.target,
    strategy: r.strategy,
    windows: r.windows,
    download: r.download,
    agentFirst: r.agentFirst,
    wave: r.wave,
    waveCount: r.waveCount,
    hasCanary: r.hasCanary,
    waitUntil: r.waitUntil,
    pausedReason: r.pausedReason,
    createdBy: r.createdBy,
    createdByName: r.createdByName,
    createdAt: r.createdAt,
    startedAt: r.startedAt,
    updatedAt: r.updatedAt,
    finishedAt: r.finishedAt,
  };
}

export function approvalView(a: ApprovalRecord): ApprovalView {
  return { kind: a.kind, wave: a.wave, environment: a.environment, packSha256: a.packSha256, approvedBy: a.approvedBy, approvedByName: a.approvedByName, approvedAt: a.approvedAt };
}

export function statusView(s: RolloutStatus): z.infer<typeof rolloutStatusSchema> {
  return {
    ...rolloutView(s.rollout),
    // `updated` counts install-outcome `committed` reports only (notes/field.md)
    progress: { ...s.totals, updated: s.totals.committed },
    waves: s.waves,
    window: s.window,
    approvals: s.approvals.map(approvalView),
    history: s.history,
  };
}

export function targetView(t: TargetRecord): TargetView {
  return {
    probeId: t.probeId,
    wave: t.wave,
    state: t.state,
    attempt: t.attempt,
    commandId: t.commandId,
    errorCode: t.errorCode,
    deploymentId: t.deploymentId,
    skipReason: t.skipReason,
    acknowledged: t.acknowledged,
    sentAt: t.sentAt,
    updatedAt: t.updatedAt,
    finishedAt: t.finishedAt,
  };
}
