import { setImmediate as nextTurn } from 'node:timers/promises';
import type { ServerContext } from '../context.js';
import { ServerError } from '../errors.js';
import type { RolloutDefinition } from './definition.js';
import { draftRollout } from './draft.js';
import { RolloutEngine, type Actor } from './engine.js';
import { nextEnvironment, type Environment } from './environments.js';
import { isFailure, nextRollout, type RolloutState, type TargetState } from './machine.js';
import { waveProgress, type WaveProgress } from './progress.js';
import type { ApprovalRecord, RolloutRecord, TargetChange, TargetRecord, TransitionRecord } from './rollout-repository.js';
import { nextOpening, windowOpen } from './windows.js';

/**
 * What operators do to rollouts (the HTTP routes and, through them, `sonde rollout`): create one
 * (checking the pack, the target and the promotion gate), start, pause, resume, abort, approve
 * the next wave, retry the failed probes, approve a promotion; and read a rollout's status. Every
 * change goes through the engine's queue and its transition table.
 */
export const ROLLOUT_ID = /^ro-[0-9a-f]{12}$/;

export interface RolloutStatus {
  readonly rollout: RolloutRecord;
  readonly waves: readonly (WaveProgress & { readonly kind: 'canary' | 'wave'; readonly started: boolean })[];
  readonly totals: Omit<WaveProgress, 'wave'>;
  readonly window: { readonly open: boolean; readonly nextOpening: string | null };
  readonly approvals: readonly ApprovalRecord[];
  readonly history: readonly TransitionRecord[];
}

export class RolloutService {
  constructor(
    private readonly ctx: ServerContext,
    readonly engine: RolloutEngine,
  ) {}

  private get repo() {
    return this.ctx.store.rollouts;
  }

  async create(d: RolloutDefinition, who: Actor): Promise<RolloutRecord> {
    const { record, probes, waveSizes } = await draftRollout(this.ctx.store, d, who, this.engine.now().toISOString());
    this.ctx.changes.publish({ kind: 'rollout', id: record.id });
    if (d.draft) return record;
    await nextTurn();
    return this.act(record.id, 'start', who, { probes, waves: waveSizes });
  }

  async get(id: string): Promise<RolloutRecord> {
    const r = ROLLOUT_ID.test(id) ? await this.repo.get(id) : null;
    if (!r) throw new ServerError('ROLLOUT_NOT_FOUND', `no rollout ${JSON.stringify(id.slice(0, 80))}`);
    return r;
  }

  /** An operator's event (start, pause, abort), through the queue and the table. */
  act(id: string, event: 'start' | 'pause' | 'abort', who: Actor, detail: Record<string, unknown> | null = null): Promise<RolloutRecord> {
    return this.engine.run(async () => this.engine.fire(await this.get(id), event, who, detail));
  }

  /** Resume; after a pause for errors, the failures seen so far stop counting against the threshold. */
  resume(id: string, who: Actor): Promise<RolloutRecord> {
    return this.engine.run(async () => {
      const r = await this.get(id);
      this.allowed(r, 'resume');
      let acknowledged = 0;
      if (r.pausedReason === 'error-threshold') {
        const at = this.engine.now().toISOString();
        const failed = (await this.repo.targets(r.id, { states: ['failed', 'rolled-back'], maxWave: r.wave, limit: 1_000_000, offset: 0 })).filter((t) => !t.acknowledged);
        acknowledged = (await this.repo.updateTargets(r.id, failed.map((t): TargetChange => ({ probeId: t.probeId, from: t.state, state: t.state, acknowledged: true })), at)).length;
      }
      return this.engine.fire(r, 'resume', who, acknowledged ? { acknowledgedFailures: acknowledged } : null);
    });
  }

  /** Approve the next wave of a rollout awaiting approval. */
  approve(id: string, who: Actor): Promise<{ rollout: RolloutRecord; approval: ApprovalRecord }> {
    return this.engine.run(async () => {
      const r = await this.get(id);
      this.allowed(r, 'approve');
      const approval: ApprovalRecord = {
        rolloutId: r.id,
        kind: 'wave',
        wave: r.wave + 1,
        environment: r.environment,
        packSha256: r.packSha256,
        approvedBy: who.actor,
        approvedByName: who.actorName,
        approvedAt: this.engine.now().toISOString(),
      };
      await this.repo.addApproval(approval);
      const rollout = await this.engine.fire(r, 'approve', who, { wave: approval.wave });
      return { rollout, approval };
    });
  }

  /** Send the failed and rolled-back probes of the started waves a new command (a new attempt). */
  retry(id: string, who: Actor, probeIds?: readonly string[]): Promise<{ rollout: RolloutRecord; retried: string[] }> {
    return this.engine.run(async () => {
      const r = await this.get(id);
      this.allowed(r, 'retry');
      const wanted = probeIds ? new Set(probeIds) : null;
      const failed = (await this.repo.targets(r.id, { states: ['failed', 'rolled-back'], maxWave: r.wave, limit: 1_000_000, offset: 0 })).filter(
        (t) => isFailure(t.state) && (!wanted || wanted.has(t.probeId)),
      );
      const at = this.engine.now().toISOString();
      const changes = failed.map(
        (t): TargetChange => ({
          probeId: t.probeId,
          from: t.state,
          state: 'pending',
          attempt: t.attempt + 1,
          commandId: null,
          errorCode: null,
          deploymentId: null,
          acknowledged: false,
          sentAt: null,
          finishedAt: null,
        }),
      );
      const retried = (await this.repo.updateTargets(r.id, changes, at)).map((c) => c.probeId);
      const rollout = await this.engine.fire(r, 'retry', who, { probes: retried.length });
      this.engine.poke();
      return { rollout, retried };
    });
  }

  /**
   * Take a rollout back: a rollout still under way is aborted first (no further installs go
   * out, unacknowledged ones are cancelled), then every probe the rollout committed is sent a
   * rollback command (the agent's own rollback, with its refusals). Probes the rollout did not
   * commit are left as they are. The commands carry no rolloutId: they are not the rollout's
   * installs, and their outcomes must not count as its progress.
   */
  rollback(id: string, who: Actor): Promise<{ rollout: RolloutRecord; commands: { probeId: string; commandId: string }[] }> {
    return this.engine.run(async () => {
      let r = await this.get(id);
      if (nextRollout(r.state, 'abort')) r = await this.engine.fire(r, 'abort', who, { reason: 'rollback' });
      const committed = (await this.repo.targets(r.id, { states: ['committed'], limit: 1_000_000, offset: 0 })).map((t) => t.probeId);
      const sent = committed.length === 0 ? [] : await this.ctx.commands.sendMany(committed, { type: 'rollback' });
      return { rollout: r, commands: sent.map((c) => ({ probeId: c.probeId, commandId: c.commandId })) };
    });
  }

  /** Approve the promotion of a completed rollout's pack to the next environment. */
  promote(id: string, who: Actor): Promise<ApprovalRecord> {
    return this.engine.run(async () => {
      const r = await this.get(id);
      if (r.environment === null) throw new ServerError('ROLLOUT_STATE_CONFLICT', `rollout ${r.id} names no environment: there is nothing to promote it to`);
      const to = nextEnvironment(r.environment);
      if (to === null) throw new ServerError('ROLLOUT_STATE_CONFLICT', `rollout ${r.id} is in ${r.environment}, the last environment`);
      if (r.state !== 'completed') throw new ServerError('ROLLOUT_STATE_CONFLICT', `rollout ${r.id} is ${r.state}: only a completed rollout can be promoted`);
      const existing = await this.repo.promotionApproval(r.packSha256, to);
      if (existing) return existing;
      const approval: ApprovalRecord = {
        rolloutId: r.id,
        kind: 'promotion',
        wave: null,
        environment: to,
        packSha256: r.packSha256,
        approvedBy: who.actor,
        approvedByName: who.actorName,
        approvedAt: this.engine.now().toISOString(),
      };
      await this.repo.addApproval(approval);
      return approval;
    });
  }

  private allowed(r: RolloutRecord, event: 'resume' | 'approve' | 'retry'): void {
    if (!nextRollout(r.state, event)) throw new ServerError('ROLLOUT_STATE_CONFLICT', `rollout ${r.id} is ${r.state}: it cannot ${event}`);
  }

  async status(id: string): Promise<RolloutStatus> {
    const rollout = await this.get(id);
    const counts = await this.repo.counts(id);
    const waves = Array.from({ length: rollout.waveCount }, (_, w) => ({
      ...waveProgress(counts, w),
      kind: rollout.hasCanary && w === 0 ? ('canary' as const) : ('wave' as const),
      started: w <= rollout.wave,
    }));
    const all = [...waves.map((w) => w as WaveProgress), waveProgress(counts, -1)];
    const sum = (k: keyof Omit<WaveProgress, 'wave'>): number => all.reduce((n, w) => n + w[k], 0);
    const totals = {
      size: sum('size'),
      pending: sum('pending'),
      sent: sum('sent'),
      accepted: sum('accepted'),
      installing: sum('installing'),
      committed: sum('committed'),
      failed: sum('failed'),
      rolledBack: sum('rolledBack'),
      skipped: sum('skipped'),
      openFailures: sum('openFailures'),
      eligible: sum('eligible'),
    };
    const now = this.engine.now();
    return {
      rollout,
      waves,
      totals,
      window: { open: windowOpen(rollout.windows, now), nextOpening: nextOpening(rollout.windows, now)?.toISOString() ?? null },
      approvals: await this.repo.approvals(id),
      history: await this.repo.history(id, 100),
    };
  }

  list(q: { states?: readonly RolloutState[] | undefined; packSha256?: string | undefined; environment?: Environment | undefined; limit: number }): Promise<RolloutRecord[]> {
    return this.repo.list(q);
  }

  async targets(id: string, q: { states?: readonly TargetState[] | undefined; wave?: number | undefined; limit: number; offset: number }): Promise<TargetRecord[]> {
    await this.get(id);
    return this.repo.targets(id, q);
  }
}
