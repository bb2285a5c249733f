import { setImmediate as nextTurn } from 'node:timers/promises';
import { ServerError } from '../errors.js';
import type { EngineDeps } from './engine-deps.js';
import { targetAfter } from './machine.js';
import type { RolloutRecord } from './rollout-repository.js';

/** Deterministic, so that sending again after a restart cannot make a second command. */
export function commandIdOf(rolloutId: string, attempt: number, probeId: string): string {
  return `${rolloutId}:${attempt}:${probeId}`;
}

interface Wanted {
  readonly probeId: string;
  readonly commandId: string;
}

/**
 * The rollout engine's sending half (engine.ts runs it in its queue). Persist, then act: a target
 * is marked `sent`, with a command id derived from (rollout, attempt, probe), before its command
 * is handed to the command service, which keeps it for a probe that is offline. After a restart,
 * `ensureCommands` sends exactly the `sent` targets' commands the commands table never got, with
 * the same ids.
 *
 * Fan-outs go out in chunks with a turn of the event loop between them (notes/fleet-facts.md:
 * 10,000 QoS-1 commands at once stall the ingest of telemetry for a second).
 */
export class RolloutSender {
  constructor(private readonly d: EngineDeps) {}

  /** Commands the pending targets of the waves already started, a chunk at a time. */
  async issue(r: RolloutRecord): Promise<void> {
    // The probes' acknowledgements wait until the whole wave is out, not only each chunk.
    const release = this.d.ctx.ingest.hold();
    try {
      await this.issueChunks(r);
    } finally {
      release();
    }
  }

  /** Sends the commands among these that the commands table does not hold yet; idempotent. */
  async ensureCommands(r: RolloutRecord, wanted: readonly Wanted[]): Promise<void> {
    const missing: Wanted[] = [];
    for (const w of wanted) if (!(await this.d.ctx.store.commands.get(w.commandId))) missing.push(w);
    for (let i = 0; i < missing.length; i += this.d.chunkSize) await this.send(r, missing.slice(i, i + this.d.chunkSize));
  }

  private async issueChunks(r: RolloutRecord): Promise<void> {
    const { repo, chunkSize } = this.d;
    for (;;) {
      if (this.d.stopped()) return;
      const pending = await repo.targets(r.id, { states: ['pending'], maxWave: r.wave, limit: chunkSize, offset: 0 });
      if (pending.length === 0) return;
      const at = this.d.now().toISOString();
      // 1. Persist: these targets are commanded, under these ids.
      const applied = await repo.updateTargets(
        r.id,
        pending.map((t) => ({ probeId: t.probeId, from: 'pending', state: targetAfter(t.state, 'issue'), commandId: commandIdOf(r.id, t.attempt, t.probeId), sentAt: at })),
        at,
      );
      // A turn of the event loop between the two halves of a chunk: states keep being ingested.
      await nextTurn();
      // 2. Act: hand them to the command service. (Their ids are new: an id is only ever made
      // for a pending target, and a retry makes the next attempt's.)
      await this.send(
        r,
        applied.map((c) => ({ probeId: c.probeId, commandId: c.commandId! })),
      );
      if (pending.length < chunkSize) return;
      await nextTurn();
    }
  }

  private async send(r: RolloutRecord, missing: readonly Wanted[]): Promise<void> {
    if (missing.length === 0) return;
    const ids = new Map(missing.map((m) => [m.probeId, m.commandId]));
    try {
      await this.d.ctx.commands.sendMany([...ids.keys()], {
          type: 'install',
          packSha256: r.packSha256,
          ...(r.download ? { download: r.download } : {}),
          ...(r.agentFirst ? { agentFirst: { packSha256: r.agentFirst.packSha256, minAgentVersion: r.agentFirst.minAgentVersion } } : {}),
        }, { rolloutId: r.id, commandIdFor: (p) => ids.get(p)! });
    } catch (e) {
      // A probe removed or the pack gone: these targets fail with the code, and the rest go on.
      const code = e instanceof ServerError ? e.code : 'INTERNAL_ERROR';
      this.d.log.error({ rolloutId: r.id, code, err: (e as Error).message, probes: missing.length }, 'rollout commands not sent');
      const at = this.d.now().toISOString();
      await this.d.repo.updateTargets(r.id, missing.map((m) => ({ probeId: m.probeId, from: 'sent', state: 'failed', errorCode: code, finishedAt: at })), at);
    }
  }
}
