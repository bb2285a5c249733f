import type Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import type { EventType, ProbeEvent } from '../../../base/src/protocol/messages.js';

/**
 * The durable outbox (issue 4): every event for the server is written to agent.db before it is
 * sent, and removed only once the broker acknowledged it (QoS 1 PUBACK). Delivery is in `seq`
 * order, one at a time, so the server sees a probe's events in order; an event whose PUBACK was
 * lost is sent again with the same id, and the server drops the duplicate. Nothing is lost across
 * a restart or a power cut (WAL, synchronous=FULL).
 *
 * Bounded: past `maxMessages`, the oldest progress events are folded away (deleted); outcomes are
 * never dropped.
 */
export const PROGRESS_TYPES: ReadonlySet<EventType> = new Set<EventType>(['download-progress', 'install-state', 'download-started', 'online']);

export interface OutboxRow {
  readonly seq: number;
  readonly event: ProbeEvent;
}

export type NewEvent = Omit<ProbeEvent, 'v' | 'id' | 'seq' | 'probeId' | 'at'> & { id?: string; at?: string };

export class Outbox {
  /** Events folded away because the outbox was full, since it was opened. */
  folded = 0;

  /** On agent.db's connection (agent/src/store/agent-db.ts made the table); its owner closes it. */
  constructor(
    private readonly db: Database.Database,
    private readonly probeId: string,
    private readonly maxMessages = 10_000,
  ) {}

  /** Persists an event; returns it with its id and seq. */
  add(e: NewEvent): ProbeEvent {
    const id = e.id ?? `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
    const at = e.at ?? new Date().toISOString();
    const progress = PROGRESS_TYPES.has(e.type) ? 1 : 0;
    return this.db.transaction(() => {
      const existing = this.db.prepare('SELECT event FROM outbox WHERE id = ?').get(id) as { event: string } | undefined;
      if (existing) return JSON.parse(existing.event) as ProbeEvent;
      const info = this.db.prepare('INSERT INTO outbox (id, progress, event) VALUES (?, ?, ?)').run(id, progress, '{}');
      const seq = Number(info.lastInsertRowid);
      const { id: _id, at: _at, ...rest } = e;
      const event = { v: 1 as const, id, seq, probeId: this.probeId, at, ...rest } as ProbeEvent;
      this.db.prepare('UPDATE outbox SET event = ? WHERE seq = ?').run(JSON.stringify(event), seq);
      this.fold();
      return event;
      // IMMEDIATE: agent.db has writers in two processes (the daemon, its installer), and a
      // deferred transaction that reads first cannot wait for the write lock: it fails at once.
    }).immediate();
  }

  private fold(): void {
    const n = (this.db.prepare('SELECT COUNT(*) AS n FROM outbox').get() as { n: number }).n;
    const over = n - this.maxMessages;
    if (over <= 0) return;
    const r = this.db.prepare('DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE progress = 1 ORDER BY seq LIMIT ?)').run(over);
    this.folded += r.changes;
  }

  /** The oldest undelivered events, in order. */
  peek(limit = 100): OutboxRow[] {
    return (this.db.prepare('SELECT seq, event FROM outbox ORDER BY seq LIMIT ?').all(limit) as { seq: number; event: string }[]).map((r) => ({
      seq: r.seq,
      event: JSON.parse(r.event) as ProbeEvent,
    }));
  }

  /** Called after the broker acknowledged the event. */
  delivered(seq: number): void {
    this.db.prepare('DELETE FROM outbox WHERE seq = ?').run(seq);
  }

  size(): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM outbox').get() as { n: number }).n;
  }

  /** The highest seq ever assigned (for the last-will event). */
  lastSeq(): number {
    const r = this.db.prepare(`SELECT seq FROM sqlite_sequence WHERE name = 'outbox'`).get() as { seq: number } | undefined;
    return r?.seq ?? 0;
  }
}
