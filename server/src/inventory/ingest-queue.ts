import type { Logger } from 'pino';
import type { ProbeEvent, ProbeState } from '../../../agent/src/protocol/messages.js';
import type { Metrics } from '../metrics/registry.js';
import type { IngestResult, Store, StoredEvent } from '../store/types.js';

/**
 * Probe messages on their way into the database, written in batches, one transaction each
 * (notes/fleet-facts.md: a 100-row batch commits in under 1 ms; a transaction per message would
 * not keep up with 10,000 probes). A group commit: the first message into an empty queue
 * schedules a write `lingerMs` (10 ms) later, and whatever arrives while a write runs goes into
 * the next one, so batches grow with the load while a quiet fleet's messages wait 10 ms at most.
 * Of several states from one probe in a batch only the newest is written. Listeners (the
 * commands service, the rollouts module) hear what each batch changed once it is committed.
 */
/** How many messages may wait while the database refuses writes. */
const MAX_KEPT = 200_000;

export type IngestListener = (result: IngestResult) => void | Promise<void>;

interface Queued<T> {
  readonly probeId: string;
  readonly value: T;
  readonly receivedAt: string;
  readonly mark: number;
}

export class IngestQueue {
  private states = new Map<string, Queued<ProbeState>>();
  private events: Queued<ProbeEvent>[] = [];
  private timer: NodeJS.Timeout | null = null;
  private flushing: Promise<void> | null = null;
  private notifying: Promise<void> = Promise.resolve();
  /** After a failed write, the next waits a second. */
  private retryAt = 0;
  private readonly listeners = new Set<IngestListener>();

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly lingerMs = 10,
    private readonly maxBatch = 2000,
  ) {}

  private started = false;

  start(): void {
    this.started = true;
    if (this.depth > 0) this.schedule();
  }

  private schedule(): void {
    if (!this.started || this.timer || this.flushing) return;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        void this.flush();
      },
      Math.max(this.lingerMs, this.retryAt - Date.now()),
    );
  }

  get depth(): number {
    return this.states.size + this.events.length;
  }

  addState(probeId: string, state: ProbeState, mark: number): void {
    const old = this.states.get(probeId);
    if (old && old.value.at > state.at) return;
    this.states.set(probeId, { probeId, value: state, receivedAt: new Date().toISOString(), mark: old?.mark ?? mark });
    this.pressure();
  }

  addEvent(probeId: string, event: ProbeEvent, mark: number): void {
    this.events.push({ probeId, value: event, receivedAt: new Date().toISOString(), mark });
    this.pressure();
  }

  onApplied(listener: IngestListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private pressure(): void {
    if (this.depth >= this.maxBatch && this.started && !this.flushing) setImmediate(() => void this.flush());
    else this.schedule();
  }

  /** Writes what is queued now; resolves once it is committed and the listeners have heard of it. */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    if (this.depth === 0) return this.notifying;
    const states = [...this.states.values()];
    const events = this.events;
    this.states = new Map();
    this.events = [];
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.flushing = this.write(states, events).finally(() => {
      this.flushing = null;
      // What arrived during the write goes next.
      if (this.depth > 0) this.schedule();
    });
    await this.flushing;
    await this.notifying;
  }

  private async write(states: Queued<ProbeState>[], events: Queued<ProbeEvent>[]): Promise<void> {
    let result: IngestResult;
    try {
      result = await this.store.ingest({
        states: states.map((s) => ({ probeId: s.probeId, state: s.value, receivedAt: s.receivedAt })),
        events: events.map((e): StoredEvent => ({ probeId: e.probeId, event: e.value, receivedAt: e.receivedAt })),
      });
    } catch (e) {
      // The broker has acknowledged these messages already, so they are kept and tried again
      // with the next batch (a full disk, a locked database), up to a bound.
      this.requeue(states, events);
      this.retryAt = Date.now() + 1000;
      this.log.error({ err: (e as Error).message, states: states.length, events: events.length }, 'ingest batch failed; kept for the next one');
      return;
    }
    const now = performance.now();
    for (const q of [...states, ...events]) this.metrics.ingestLatency.observe((now - q.mark) / 1000);
    this.metrics.ingestBatches.inc();
    if (result.duplicates > 0) this.metrics.mqttMessages.inc({ kind: 'events', result: 'duplicate' }, result.duplicates);
    if (result.unknown > 0) {
      this.metrics.mqttMessages.inc({ kind: 'any', result: 'unknown_probe' }, result.unknown);
      this.log.warn({ code: 'PROBE_UNKNOWN', messages: result.unknown }, 'messages from probes that are not enrolled were dropped');
    }
    // Listeners run after the commit, in batch order, without holding up the next batch.
    this.notifying = this.notifying.then(() => this.notify(result));
  }

  private async notify(result: IngestResult): Promise<void> {
    for (const l of this.listeners) {
      try {
        await l(result);
      } catch (e) {
        this.log.error({ err: (e as Error).message }, 'ingest listener failed');
      }
    }
  }

  private requeue(states: Queued<ProbeState>[], events: Queued<ProbeEvent>[]): void {
    if (this.depth + states.length + events.length > MAX_KEPT) {
      this.log.error({ dropped: states.length + events.length }, 'ingest backlog full; messages dropped');
      return;
    }
    for (const s of states) {
      const newer = this.states.get(s.probeId);
      if (!newer || newer.value.at < s.value.at) this.states.set(s.probeId, s);
    }
    this.events = [...events, ...this.events];
  }

  async stop(): Promise<void> {
    await this.flush();
    this.started = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}
