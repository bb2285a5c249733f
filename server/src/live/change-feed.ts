import type { IngestQueue } from '../inventory/ingest-queue.js';
import type { CommandService } from '../commands/command-service.js';

/**
 * What changed in the fleet, as it happens (issue 22, "live without reload"): probes (a state, an
 * online or offline, a label), their events, commands, rollouts and packs. The ingest and the
 * command service feed it on their own; the rollouts module and the routes that change labels or
 * packs publish here. The dashboard's live stream (live-stream.ts) is its reader. A listener that
 * throws is cut off from nothing: the feed catches and goes on.
 */
export interface LiveEvent {
  readonly probeId: string;
  readonly type: string;
  readonly at: string;
  readonly deploymentId?: string | undefined;
  readonly outcome?: string | undefined;
  readonly code?: string | undefined;
}

export type Change =
  | { readonly kind: 'probes'; readonly ids: readonly string[] }
  | { readonly kind: 'events'; readonly events: readonly LiveEvent[] }
  | { readonly kind: 'commands'; readonly commands: readonly { readonly commandId: string; readonly probeId: string; readonly rolloutId: string | null; readonly status: string }[] }
  | { readonly kind: 'rollout'; readonly id: string }
  | { readonly kind: 'packs' };

export type ChangeListener = (c: Change) => void;

export class ChangeFeed {
  private readonly listeners = new Set<ChangeListener>();

  publish(c: Change): void {
    for (const l of this.listeners) {
      try {
        l(c);
      } catch {
        // A reader's failure is its own (a closed socket); the others still hear.
      }
    }
  }

  subscribe(l: ChangeListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  get readers(): number {
    return this.listeners.size;
  }

  /** Feeds the ingest's committed batches and the commands' status changes into this feed. */
  follow(ingest: IngestQueue, commands: CommandService): void {
    ingest.onApplied((r) => {
      const ids = new Set<string>([...r.stated, ...r.connected, ...r.wentOffline]);
      if (ids.size > 0) this.publish({ kind: 'probes', ids: [...ids] });
      const events = r.applied.filter((e) => e.event.type !== 'download-progress' || e.event.bytes === e.event.totalBytes);
      if (events.length > 0) {
        this.publish({
          kind: 'events',
          events: events.map((e) => ({ probeId: e.probeId, type: e.event.type, at: e.event.at, deploymentId: e.event.deploymentId, outcome: e.event.outcome, code: e.event.code })),
        });
      }
    });
    commands.onChange((changes) => {
      this.publish({ kind: 'commands', commands: changes.map((c) => ({ commandId: c.commandId, probeId: c.probeId, rolloutId: c.rolloutId, status: c.status })) });
      for (const id of new Set(changes.map((c) => c.rolloutId).filter((r): r is string => r !== null))) this.publish({ kind: 'rollout', id });
    });
  }
}
