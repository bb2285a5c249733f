import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from 'pino';
import { assertNever } from '../../../base/src/errors/sonde-error.js';
import type { ServerContext } from '../context.js';
import { ServerError } from '../errors.js';
import { PAGE, type EngineDeps } from './engine-deps.js';
import { isFinal, nextRollout, sends, type RolloutEvent } from './machine.js';
import { errorsExceeded, waveProgress, wavePassed, type WaveProgress } from './progress.js';
import { TargetReports } from './reports.js';
import type { RolloutPatch, RolloutRecord, RolloutRepository } from './rollout-repository.js';
import { RolloutSender } from './sending.js';
import { windowOpen } from './windows.js';
import { heard } from './heard-repository.js';

/**
 * The rollout engine: a tick that re-derives from the store what each active rollout should do
 * next, and applies it through the transition tables (machine.ts). Everything that changes a
 * rollout (the tick, the probes' reports, the operators' actions) runs through one queue, so two
 * of them never interleave.
 *
 * Persist, then act: a transition is written before its effects run; a target is marked `sent`
 * before its command goes out (sending.ts). After a restart the engine sends exactly the commands
 * promised but never stored, with the same ids, and catches up on the command statuses the probes
 * reported while nobody listened (reports.ts).
 *
 * This file is the queue, the tick (errors, sends, waves, waits) and the transitions; sending.ts
 * turns targets into commands; reports.ts turns the probes' reports into target states.
 */
export interface EngineOptions {
  /** How often the tick runs (besides after every report and action). */
  readonly tickMs?: number;
  /** Targets handed to the command service per chunk. */
  readonly chunkSize?: number;
  /** How often commands and targets are compared in full (a report missed across a crash). */
  readonly reconcileEveryMs?: number;
  /** The clock for waits and maintenance windows (tests move it). */
  readonly now?: () => Date;
}

export const ENGINE_ACTOR = { actor: 'server:rollouts', actorName: 'rollout engine' } as const;

export interface Actor {
  readonly actor: string;
  readonly actorName: string;
}

const ACTIVE = ['running', 'waiting', 'awaiting-approval'] as const;

export class RolloutEngine {
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private offChange: (() => void) | null = null;
  private tickQueued = false;
  private stopped = false;
  private lastReconcile = 0;
  readonly now: () => Date;
  private readonly tickMs: number;
  private readonly chunkSize: number;
  private readonly reconcileEveryMs: number;
  private readonly repo: RolloutRepository;
  private readonly log: Logger;
  private readonly sender: RolloutSender;
  private readonly reports: TargetReports;

  constructor(
    private readonly ctx: ServerContext,
    o: EngineOptions = {},
  ) {
    this.now = o.now ?? (() => new Date());
    this.tickMs = o.tickMs ?? 1000;
    this.chunkSize = o.chunkSize ?? 1000;
    this.reconcileEveryMs = o.reconcileEveryMs ?? 30_000;
    this.repo = heard(ctx.store.rollouts, (id) => ctx.changes.publish({ kind: 'rollout', id }));
    this.log = ctx.log.child({ component: 'rollouts' });
    const deps: EngineDeps = { ctx, repo: this.repo, log: this.log, now: this.now, chunkSize: this.chunkSize, stopped: () => this.stopped };
    this.sender = new RolloutSender(deps);
    this.reports = new TargetReports(deps);
  }

  /** Runs `fn` after everything queued before it; the one way into rollout state. */
  run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.chain.then(fn);
    this.chain = p.catch(() => undefined);
    return p;
  }

  async start(): Promise<void> {
    // Reports are applied in the queue, not awaited here: the ingest must not wait for a fan-out.
    this.offChange = this.ctx.commands.onChange((changes) => {
      const mine = changes.filter((c) => c.rolloutId !== null);
      if (mine.length === 0 || this.stopped) return;
      void this.run(() => this.reports.apply(mine))
        .then(() => this.poke())
        .catch((e: unknown) => this.log.error({ err: (e as Error).message }, 'rollout report not applied'));
    });
    await this.run(() => this.recover());
    this.timer = setInterval(() => this.poke(), this.tickMs);
    this.timer.unref();
    this.poke();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.offChange?.();
    await this.chain;
  }

  /** Asks for a tick soon; several asks before it runs make one tick. */
  poke(): void {
    if (this.tickQueued || this.stopped) return;
    this.tickQueued = true;
    void this.run(async () => {
      this.tickQueued = false;
      if (!this.stopped) await this.tick();
    }).catch((e: unknown) => this.log.error({ err: (e as Error).stack ?? String(e) }, 'rollout tick failed'));
  }

  /** Resolves once everything queued so far has run (tests, shutdown). */
  async idle(): Promise<void> {
    await this.run(async () => undefined);
  }

  // -------------------------------------------------------------------------------------------
  // The tick

  private async tick(): Promise<void> {
    const due = this.now().getTime() - this.lastReconcile >= this.reconcileEveryMs;
    for (const r of await this.repo.list({ states: ACTIVE, limit: PAGE })) {
      if (this.stopped) return;
      // One rollout's failure (a store error) must not hold up the others; the next tick retries.
      try {
        if (due) await this.reports.reconcile(r);
        await this.step(r);
      } catch (e) {
        this.log.error({ rolloutId: r.id, err: (e as Error).stack ?? String(e) }, 'rollout step failed');
      }
    }
    if (due) this.lastReconcile = this.now().getTime();
  }

  /** One rollout: the error threshold first, then the sends, then whether to move on. */
  private async step(r0: RolloutRecord): Promise<void> {
    let r = r0;
    const counts = await this.repo.counts(r.id);
    for (let w = 0; w <= r.wave; w++) {
      const p = waveProgress(counts, w);
      if (errorsExceeded(p, r.strategy)) {
        await this.pauseForErrors(r, p);
        return;
      }
    }
    const now = this.now();
    if (sends(r.state) && windowOpen(r.windows, now)) await this.sender.issue(r);
    const current = waveProgress(counts, r.wave);
    switch (r.state) {
      case 'running': {
        if (!wavePassed(current, r.strategy)) return;
        const event: RolloutEvent = r.wave >= r.waveCount - 1 ? 'last-wave-passed' : r.strategy.advance.mode === 'approval' ? 'wave-passed-gated' : 'wave-passed';
        r = await this.fire(r, event, ENGINE_ACTOR, { committed: current.committed, eligible: current.eligible });
        if (r.state === 'waiting' && r.waitUntil !== null && Date.parse(r.waitUntil) <= now.getTime()) this.poke();
        return;
      }
      case 'waiting':
        if (r.waitUntil === null || Date.parse(r.waitUntil) <= now.getTime()) {
          await this.fire(r, 'wait-elapsed', ENGINE_ACTOR, null);
          this.poke();
        }
        return;
      case 'awaiting-approval':
      case 'draft':
      case 'paused':
      case 'completed':
      case 'aborted':
        return;
      default:
        assertNever(r.state, 'rollout state');
    }
  }

  private async pauseForErrors(r: RolloutRecord, p: WaveProgress): Promise<void> {
    const detail = { wave: p.wave, failed: p.openFailures, eligible: p.eligible, errorThreshold: r.strategy.errorThreshold };
    const paused = await this.fire(r, 'errors-exceeded', ENGINE_ACTOR, detail);
    this.log.warn({ rolloutId: r.id, ...detail }, 'rollout paused itself: error threshold exceeded');
    this.ctx.webhooks.notify('rollout.paused', {
      rolloutId: r.id,
      name: r.name,
      reason: 'error-threshold',
      packSha256: r.packSha256,
      version: r.packVersion,
      environment: r.environment,
      state: paused.state,
      ...detail,
    });
  }

  // -------------------------------------------------------------------------------------------
  // Transitions

  /**
   * Posts an event to a rollout: the table decides the edge (none: ROLLOUT_STATE_CONFLICT), the
   * new state is written with its history row, and only then do its effects run.
   */
  async fire(r: RolloutRecord, event: RolloutEvent, who: Actor, detail: Record<string, unknown> | null): Promise<RolloutRecord> {
    const edge = nextRollout(r.state, event);
    if (!edge) throw new ServerError('ROLLOUT_STATE_CONFLICT', `rollout ${r.id} is ${r.state}: it cannot ${event}`);
    const now = this.now();
    const at = now.toISOString();
    const wave = edge.wave === 'first' ? 0 : edge.wave === 'next' ? r.wave + 1 : r.wave;
    const patch: RolloutPatch = {
      wave,
      ...(edge.to === 'waiting' ? { waitUntil: new Date(now.getTime() + (r.strategy.advance.mode === 'wait' ? r.strategy.advance.seconds * 1000 : 0)).toISOString() } : {}),
      ...(edge.to !== 'waiting' && r.waitUntil !== null ? { waitUntil: null } : {}),
      ...(edge.to === 'paused' ? { pausedReason: event === 'errors-exceeded' ? 'error-threshold' : 'operator' } : {}),
      ...(edge.to !== 'paused' && r.pausedReason !== null ? { pausedReason: null } : {}),
      ...(event === 'start' ? { startedAt: at } : {}),
      ...(isFinal(edge.to) ? { finishedAt: at } : {}),
    };
    const written = await this.repo.transition(r.id, r.state, { at, from: r.state, event, to: edge.to, wave, actor: who.actor, detail }, patch);
    if (!written) throw new ServerError('ROLLOUT_STATE_CONFLICT', `rollout ${r.id} changed while ${event} was applied; try again`);
    const after = (await this.repo.get(r.id))!;
    this.log.info({ rolloutId: r.id, from: r.state, event, state: after.state, wave: after.wave }, 'rollout transition');
    if (who.actor === ENGINE_ACTOR.actor) {
      await this.ctx.audit({ ...who, action: `rollout ${event}`, target: r.id, status: 200, detail: { from: r.state, to: after.state, wave: after.wave, ...(detail ?? {}) } });
    }
    if (isFinal(after.state)) await this.finish(after);
    if (sends(after.state)) this.poke();
    return after;
  }

  /** Effects of reaching completed or aborted. */
  private async finish(r: RolloutRecord): Promise<void> {
    if (r.state === 'aborted') {
      const at = this.now().toISOString();
      for (;;) {
        const pending = await this.repo.targets(r.id, { states: ['pending'], limit: this.chunkSize, offset: 0 });
        if (pending.length === 0) break;
        await this.repo.updateTargets(r.id, pending.map((t) => ({ probeId: t.probeId, from: 'pending', state: 'skipped', skipReason: 'aborted', finishedAt: at })), at);
      }
      // Commands no probe has acknowledged are cancelled; a probe that already started its install
      // finishes it (an A/B install is not cut half-way) and its outcome is still recorded.
      const sent = await this.repo.targets(r.id, { states: ['sent'], limit: PAGE, offset: 0 });
      for (const [i, t] of sent.entries()) {
        if (t.commandId === null) continue;
        const c = await this.ctx.commands.cancel(t.commandId).catch(() => null);
        if (c?.status === 'cancelled') {
          await this.repo.updateTargets(r.id, [{ probeId: t.probeId, from: 'sent', state: 'skipped', skipReason: 'aborted', finishedAt: at }], at);
        }
        if (i % 100 === 99) await nextTurn();
      }
    }
    await this.ctx.store.packs.unpin(r.packSha256, `rollout:${r.id}`);
    if (r.agentFirst) await this.ctx.store.packs.unpin(r.agentFirst.packSha256, `rollout:${r.id}`);
  }

  // -------------------------------------------------------------------------------------------
  // Restart

  /** After a restart: commands promised but never stored are sent; missed reports are applied. */
  private async recover(): Promise<void> {
    const all = await this.repo.list({ limit: PAGE });
    for (const r of all) {
      if (r.state === 'draft') continue;
      const sent = await this.repo.targets(r.id, { states: ['sent'], limit: PAGE * 10, offset: 0 });
      if (sent.length > 0 && !isFinal(r.state)) {
        await this.sender.ensureCommands(
          r,
          sent.filter((t) => t.commandId !== null).map((t) => ({ probeId: t.probeId, commandId: t.commandId! })),
        );
      }
      await this.reports.reconcile(r);
    }
    this.lastReconcile = this.now().getTime();
    this.log.info({ rollouts: all.filter((r) => !isFinal(r.state)).length }, 'rollouts resumed from the store');
  }
}

