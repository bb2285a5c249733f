import type { Logger } from 'pino';
import type { ProbeEvent, ProbeState } from '../../../base/src/protocol/messages.js';
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
 *
 * While a fan-out publishes (`hold()`), batches write the states and leave the events queued:
 * the acknowledgements of 10,000 commands would otherwise take turns with their own publishing
 * and double its time (bench/fleet). The events follow, in order and in batches short enough
 * not to stall the states arriving meanwhile, as soon as the last hold is released, or once
 * `MAX_HELD` of them wait. A hold only delays their commit: the broker acknowledged them on
 * arrival either way.
 *
 * A backlog drains one batch per turn of the event loop, never several in one: between two
 * batches the sockets are read, so the states that arrive meanwhile ride in the next batch. Each
 * message that arrived while a backlog waited used to queue a write of its own for the next turn,
 * and all of them then ran back to back: after a 10,000-probe fan-out the server read no socket
 * for 0.6-0.9 s while it drained the acknowledgements (bench/fleet, 2026-11-23), and every state
 * published meanwhile waited that long.
 */
/** How many messages may wait while the database refuses writes. */
const MAX_KEPT = 200_000;
/** Events per batch while more than maxBatch wait (500 take about 40 ms to apply). */
const BACKLOG_BATCH = 500;
/** How many events may wait for a hold to end before they are written regardless. */
const MAX_HELD = 50_000;

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
  /** The one write queued for the next turn of the event loop (writeSoon). */
  private soon: NodeJS.Immediate | null = null;
  private flushing: Promise<void> | null = null;
  private notifying: Promise<void> = Promise.resolve();
  /** After a failed write, the next waits a second. */
  private retryAt = 0;
  private readonly listeners = new Set<IngestListener>();
  private holds = 0;

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
    if (!this.started || this.timer || this.soon || this.flushing) return;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        void this.writeBatch();
      },
      Math.max(this.lingerMs, this.retryAt - Date.now()),
    );
  }

  /** The next batch, on the next turn of the event loop; at most one such write is ever queued. */
  private writeSoon(): void {
    if (!this.started || this.soon) return;
    this.soon = setImmediate(() => {
      this.soon = null;
      void this.writeBatch();
    });
  }

  get depth(): number {
    return this.states.size + this.events.length;
  }

  /** What the next batch would write now. */
  private get writable(): number {
    return this.states.size + (this.eventsHeld ? 0 : this.events.length);
  }

  private get eventsHeld(): boolean {
    return this.holds > 0 && this.events.length < MAX_HELD;
  }

  /**
   * Holds the events back (states still go through) until the returned function is called; holds
   * nest. For fan-outs: see above.
   */
  hold(): () => void {
    this.holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds--;
      if (this.holds === 0 && this.events.length > 0) this.schedule();
    };
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
    if (this.writable >= this.maxBatch && !this.flushing) this.writeSoon();
    else this.schedule();
  }

  /**
   * Writes everything queued now (events held back included, batch after batch); resolves once it
   * is committed and the listeners have heard of it.
   */
  async flush(): Promise<void> {
    while (this.flushing) await this.flushing;
    while (this.depth > 0) {
      const before = this.depth;
      await this.writeBatch(true);
      if (this.depth >= before) break; // a failed write keeps them for the retry
    }
    await this.notifying;
  }

  /** One batch: the queued states and up to maxBatch events, BACKLOG_BATCH from a larger backlog (none while held). */
  private async writeBatch(all = false): Promise<void> {
    while (this.flushing) await this.flushing;
    const held = this.eventsHeld && !all;
    if (this.states.size === 0 && (held || this.events.length === 0)) return;
    const states = [...this.states.values()];
    const events = held ? [] : this.events.splice(0, this.events.length > this.maxBatch ? BACKLOG_BATCH : this.maxBatch);
    this.states = new Map();
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.flushing = this.write(states, events).finally(() => {
      this.flushing = null;
      // What arrived during the write goes next; a backlog of events right after this turn,
      // unless the write failed (then the retry waits).
      if (this.writable >= this.maxBatch && Date.now() >= this.retryAt) this.writeSoon();
      else if (this.writable > 0) this.schedule();
    });
    await this.flushing;
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
    for (const { event: e } of result.applied) {
      if (e.type !== 'install-outcome') continue;
      this.metrics.installOutcome(e.outcome ?? 'failed', e.code ?? null);
    }
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
    if (this.soon) clearImmediate(this.soon);
    this.soon = null;
  }
}
