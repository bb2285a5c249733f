import { setImmediate as nextTurn } from 'node:timers/promises';
import { TERMINAL_STATUSES, type CommandChange, type CommandRecord } from '../store/types.js';
import { PAGE, type EngineDeps } from './engine-deps.js';
import { inFlight, nextTarget, targetAfter, type TargetState } from './machine.js';
import { targetEventFor } from './progress.js';
import type { RolloutRecord, TargetChange, TargetRecord } from './rollout-repository.js';

/**
 * The rollout engine's listening half (engine.ts runs it in its queue): what the probes report
 * about their commands, moved onto the rollouts' targets through the target table (machine.ts);
 * and, every so often and after a restart, the store as the truth (`reconcile`), which catches a
 * report the engine never heard and a probe that committed the pack's version on its own.
 */
export class TargetReports {
  constructor(private readonly d: EngineDeps) {}

  /** Command status changes (from the ingest of the probes' events) moved onto their targets. */
  async apply(changes: readonly CommandChange[]): Promise<void> {
    const byRollout = new Map<string, TargetChange[]>();
    const state = new Map<string, TargetState>();
    const at = this.d.now().toISOString();
    const targets = await this.d.repo.targetsByCommands(changes.map((c) => c.commandId));
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
    for (const [id, list] of byRollout) await this.d.repo.updateTargets(id, list, at);
  }

  /**
   * The store as the truth: every target still in flight is compared with its command. Catches
   * reports applied by an ingest whose listeners never ran (a crash between the two), and a
   * probe that reported committing this pack's version with an install-outcome of its own (an
   * FTP drop) after its command was sent.
   */
  async reconcile(r: RolloutRecord): Promise<void> {
    const { repo, chunkSize } = this.d;
    const live = await repo.targets(r.id, { states: ['sent', 'accepted', 'installing', 'skipped'], limit: PAGE * 10, offset: 0 });
    const watched = live.filter((t) => t.commandId !== null);
    // A chunk at a time with a turn of the event loop between (a rollout of 10,000 probes in one
    // go held the loop for about a second, stalling the ingest), reading only the commands'
    // statuses.
    for (let i = 0; i < watched.length; i += chunkSize) {
      if (this.d.stopped()) return;
      if (i > 0) await nextTurn();
      const chunk = watched.slice(i, i + chunkSize);
      const commands = await this.d.ctx.store.commands.statuses(chunk.map((t) => t.commandId!));
      const at = this.d.now().toISOString();
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
      if (changes.length) await repo.updateTargets(r.id, changes, at);
      if (outOfBand.length) await this.committedOutOfBand(r, outOfBand, at);
    }
  }

  private async changeFor(t: TargetRecord, from: TargetState, status: CommandRecord['status'], errorCode: string | null, deploymentId: string | null, at: string): Promise<TargetChange | null> {
    let rolledBack = false;
    if (status === 'failed' && deploymentId !== null) {
      const d = (await this.d.ctx.store.probes.deployments(t.probeId, 20)).find((x) => x.deploymentId === deploymentId);
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

  private async committedOutOfBand(r: RolloutRecord, targets: readonly TargetRecord[], at: string): Promise<void> {
    const ids = targets.map((t) => t.probeId);
    const { probes } = await this.d.ctx.store.probes.list({ probeIds: ids }, { limit: ids.length, offset: 0 });
    const byId = new Map(probes.map((p) => [p.id, p]));
    const changes: TargetChange[] = [];
    for (const t of targets) {
      const c = byId.get(t.probeId)?.lastCommitted;
      // lastCommitted is written by an install-outcome `committed` event only, never by a state.
      if (!c || c.version !== r.packVersion || t.sentAt === null || c.at < t.sentAt) continue;
      changes.push({ probeId: t.probeId, from: t.state, state: targetAfter(t.state, 'committed'), deploymentId: c.deploymentId, finishedAt: at });
    }
    if (changes.length) await this.d.repo.updateTargets(r.id, changes, at);
  }
}

/** The statuses a command passed through to reach `status`, in order. */
function pathTo(status: CommandRecord['status']): CommandRecord['status'][] {
  if (status === 'accepted') return ['accepted'];
  if (status === 'running') return ['accepted', 'running'];
  if (TERMINAL_STATUSES.has(status)) return status === 'cancelled' || status === 'delivered' ? [status] : ['accepted', 'running', status];
  return [];
}
