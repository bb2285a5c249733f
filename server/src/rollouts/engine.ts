import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from 'pino';
import { assertNever } from '../../../base/src/errors/sonde-error.js';
import type { ServerContext } from '../context.js';
import { ServerError } from '../errors.js';
import { TERMINAL_STATUSES, type CommandChange, type CommandRecord } from '../store/types.js';
import { inFlight, isFinal, nextRollout, nextTarget, sends, type RolloutEvent, type TargetEvent, type TargetState } from './machine.js';
import { errorsExceeded, targetEventFor, waveProgress, wavePassed, type WaveProgress } from './progress.js';
import type { RolloutPatch, RolloutRecord, RolloutRepository, TargetChange, TargetRecord } from './rollout-repository.js';
import { windowOpen } from './windows.js';
import { heard } from './heard-repository.js';

/**
 * The rollout engine: a tick that re-derives from the store what each active rollout should do
 * next, and applies it through the transition tables (machine.ts). Everything that changes a
 * rollout (the tick, the probes' reports, the operators' actions) runs through one queue, so two
 * of them never interleave.
 *
 * Persist, then act: a target is marked `sent`, with a command id derived from (rollout,
 * attempt, probe), before its command is handed to the command service; a transition is written
 * before its effects run. After a restart the engine finds `sent` targets whose command never
 * reached the commands table and sends exactly those, with the same ids, and catches up on command
 * statuses the probes reported while nobody listened. Commands go through the command service,
 * which keeps them for probes that are offline and hands them over when they return.
 *
 * Fan-outs go out in chunks with a turn of the event loop between them (notes/fleet-facts.md:
 * 10,000 QoS-1 commands at once stall the ingest of telemetry for a second).
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

/** Deterministic, so that sending again after a restart cannot make a second command. */
export function commandIdOf(rolloutId: string, attempt: number, probeId: string): string {
  return `${rolloutId}:${attempt}:${probeId}`;
}

const ACTIVE = ['running', 'waiting', 'awaiting-approval'] as const;
const PAGE = 10_000;

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
      void this.run(() => this.applyReports(mine))
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
        if (due) await this.reconcile(r);
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
    if (sends(r.state) && windowOpen(r.windows, now)) await this.issue(r);
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
  // Sending

  /** Commands the pending targets of the waves already started, a chunk at a time. */
  private async issue(r: RolloutRecord): Promise<void> {
    // The probes' acknowledgements wait until the whole wave is out, not only each chunk.
    const release = this.ctx.ingest.hold();
    try {
      await this.issueChunks(r);
    } finally {
      release();
    }
  }

  private async issueChunks(r: RolloutRecord): Promise<void> {
    for (;;) {
      if (this.stopped) return;
      const pending = await this.repo.targets(r.id, { states: ['pending'], maxWave: r.wave, limit: this.chunkSize, offset: 0 });
      if (pending.length === 0) return;
      const at = this.now().toISOString();
      // 1. Persist: these targets are commanded, under these ids.
      const applied = await this.repo.updateTargets(
        r.id,
        pending.map((t) => ({ probeId: t.probeId, from: 'pending', state: next(t.state, 'issue'), commandId: commandIdOf(r.id, t.attempt, t.probeId), sentAt: at })),
        at,
      );
      // A turn of the event loop between the two halves of a chunk: states keep being ingested.
      await nextTurn();
      // 2. Act: hand them to the command service. (Their ids are new: an id is only ever made
      // for a pending target, and a retry makes the next attempt's.)
      await this.sendCommands(
        r,
        applied.map((c) => ({ probeId: c.probeId, commandId: c.commandId! })),
      );
      if (pending.length < this.chunkSize) return;
      await nextTurn();
    }
  }

  /** Sends the commands among these that the commands table does not hold yet; idempotent. */
  private async ensureCommands(r: RolloutRecord, wanted: readonly { probeId: string; commandId: string }[]): Promise<void> {
    const missing: { probeId: string; commandId: string }[] = [];
    for (const w of wanted) if (!(await this.ctx.store.commands.get(w.commandId))) missing.push(w);
    for (let i = 0; i < missing.length; i += this.chunkSize) await this.sendCommands(r, missing.slice(i, i + this.chunkSize));
  }

  private async sendCommands(r: RolloutRecord, missing: readonly { probeId: string; commandId: string }[]): Promise<void> {
    if (missing.length === 0) return;
    const ids = new Map(missing.map((m) => [m.probeId, m.commandId]));
    try {
      await this.ctx.commands.sendMany([...ids.keys()], {
          type: 'install',
          packSha256: r.packSha256,
          ...(r.download ? { download: r.download } : {}),
          ...(r.agentFirst ? { agentFirst: { packSha256: r.agentFirst.packSha256, minAgentVersion: r.agentFirst.minAgentVersion } } : {}),
        }, { rolloutId: r.id, commandIdFor: (p) => ids.get(p)! });
    } catch (e) {
      // A probe removed or the pack gone: these targets fail with the code, and the rest go on.
      const code = e instanceof ServerError ? e.code : 'INTERNAL_ERROR';
      this.log.error({ rolloutId: r.id, code, err: (e as Error).message, probes: missing.length }, 'rollout commands not sent');
      const at = this.now().toISOString();
      await this.repo.updateTargets(r.id, missing.map((m) => ({ probeId: m.probeId, from: 'sent', state: 'failed', errorCode: code, finishedAt: at })), at);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Reports from the probes

  /** Command status changes (from the ingest of the probes' events) moved onto their targets. */
  private async applyReports(changes: readonly CommandChange[]): Promise<void> {
    const byRollout = new Map<string, TargetChange[]>();
    const state = new Map<string, TargetState>();
    const at = this.now().toISOString();
    const targets = await this.repo.targetsByCommands(changes.map((c) => c.commandId));
    for (const c of changes) {
      const t = targets.get(c.commandId);
      if (!t) continue;
      const key = `${t.rolloutId}\n${t.probeId}`;
      const from = state.get(key) ?? t.state;
      const change = await this.changeFor(t, from, c.status, c.errorCode, c.deploymentId, at);
      if (!change) continue;
      state.set(key, change.state);
      const list = byRollout.get(t.rolloutId);
      if (list) list.push(change);
      else byRollout.set(t.rolloutId, [change]);
    }
    for (const [id, list] of byRollout) await this.repo.updateTargets(id, list, at);
  }

  private async changeFor(t: TargetRecord, from: TargetState, status: CommandRecord['status'], errorCode: string | null, deploymentId: string | null, at: string): Promise<TargetChange | null> {
    let rolledBack = false;
    if (status === 'failed' && deploymentId !== null) {
      const d = (await this.ctx.store.probes.deployments(t.probeId, 20)).find((x) => x.deploymentId === deploymentId);
      rolledBack = d?.outcome === 'rolled-back';
    }
    const event = targetEventFor(status, rolledBack);
    if (!event) return null;
    const to = nextTarget(from, event);
    if (!to) return null;
    const final = !inFlight(to);
    return {
      probeId: t.probeId,
      from,
      state: to,
      ...(errorCode !== null || final ? { errorCode } : {}),
      ...(deploymentId !== null ? { deploymentId } : {}),
      ...(event === 'cancelled' ? { skipReason: 'cancelled' } : {}),
      ...(final ? { finishedAt: at } : {}),
    };
  }

  /**
   * The store as the truth: every target still in flight is compared with its command. Catches
   * reports applied by an ingest whose listeners never ran (a crash between the two), and a
   * probe that reported committing this pack's version with an install-outcome of its own (an
   * FTP drop) after its command was sent.
   */
  private async reconcile(r: RolloutRecord): Promise<void> {
    const live = await this.repo.targets(r.id, { states: ['sent', 'accepted', 'installing', 'skipped'], limit: PAGE * 10, offset: 0 });
    const watched = live.filter((t) => t.commandId !== null);
    // A chunk at a time with a turn of the event loop between (a rollout of 10,000 probes in one
    // go held the loop for about a second, stalling the ingest), reading only the commands'
    // statuses.
    for (let i = 0; i < watched.length; i += this.chunkSize) {
      if (this.stopped) return;
      if (i > 0) await nextTurn();
      const chunk = watched.slice(i, i + this.chunkSize);
      const commands = await this.ctx.store.commands.statuses(chunk.map((t) => t.commandId!));
      const at = this.now().toISOString();
      const changes: TargetChange[] = [];
      const outOfBand: TargetRecord[] = [];
      for (const t of chunk) {
        const c = commands.get(t.commandId!);
        if (!c) {
          if (t.state === 'sent') outOfBand.push(t);
          continue;
        }
        let from = t.state;
        // Replay the path to the command's status (sent → accepted → installing → outcome).
        for (const status of pathTo(c.status)) {
          const ch = await this.changeFor(t, from, status, status === c.status ? c.errorCode : null, c.deploymentId, at);
          if (!ch) continue;
          changes.push(ch);
          from = ch.state;
        }
        if (inFlight(from)) outOfBand.push({ ...t, state: from });
      }
      if (changes.length) await this.repo.updateTargets(r.id, changes, at);
      if (outOfBand.length) await this.committedOutOfBand(r, outOfBand, at);
    }
  }

  private async committedOutOfBand(r: RolloutRecord, targets: readonly TargetRecord[], at: string): Promise<void> {
    const ids = targets.map((t) => t.probeId);
    const { probes } = await this.ctx.store.probes.list({ probeIds: ids }, { limit: ids.length, offset: 0 });
    const byId = new Map(probes.map((p) => [p.id, p]));
    const changes: TargetChange[] = [];
    for (const t of targets) {
      const c = byId.get(t.probeId)?.lastCommitted;
      // lastCommitted is written by an install-outcome `committed` event only, never by a state.
      if (!c || c.version !== r.packVersion || t.sentAt === null || c.at < t.sentAt) continue;
      changes.push({ probeId: t.probeId, from: t.state, state: next(t.state, 'committed'), deploymentId: c.deploymentId, finishedAt: at });
    }
    if (changes.length) await this.repo.updateTargets(r.id, changes, at);
  }

  /** After a restart: commands promised but never stored are sent; missed reports are applied. */
  private async recover(): Promise<void> {
    const all = await this.repo.list({ limit: PAGE });
    for (const r of all) {
      if (r.state === 'draft') continue;
      const sent = await this.repo.targets(r.id, { states: ['sent'], limit: PAGE * 10, offset: 0 });
      if (sent.length > 0 && !isFinal(r.state)) {
        await this.ensureCommands(
          r,
          sent.filter((t) => t.commandId !== null).map((t) => ({ probeId: t.probeId, commandId: t.commandId! })),
        );
      }
      await this.reconcile(r);
    }
    this.lastReconcile = this.now().getTime();
    this.log.info({ rollouts: all.filter((r) => !isFinal(r.state)).length }, 'rollouts resumed from the store');
  }
}

function next(state: TargetState, event: TargetEvent): TargetState {
  const to = nextTarget(state, event);
  if (to === null) throw new Error(`no target transition from ${state} on ${event}`);
  return to;
}

/** The statuses a command passed through to reach `status`, in order. */
function pathTo(status: CommandRecord['status']): CommandRecord['status'][] {
  if (status === 'accepted') return ['accepted'];
  if (status === 'running') return ['accepted', 'running'];
  if (TERMINAL_STATUSES.has(status)) return status === 'cancelled' || status === 'delivered' ? [status] : ['accepted', 'running', status];
  return [];
}
