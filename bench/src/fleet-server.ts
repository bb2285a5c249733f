#!/usr/bin/env node
/**
 * bench/fleet's server process: `startServer` in-process (the same code as `sonde server`), so
 * the bench can see when each state row is committed. Started by fleet.ts with an IPC channel.
 *
 * Ingest latency, "probe publish -> row committed": every simulated state carries its publish
 * time in `at` (wallMs() in the simulator, six fractional digits). The store's ingest() is wrapped
 * on the server's own store object, which its IngestQueue calls for every batch: once the batch's
 * transaction has committed (better-sqlite3 is synchronous, synchronous=FULL, so the commit is
 * durable when ingest() returns) the time is read once and each state of the batch yields
 * `commit time - publish time`. That covers the simulator's socket, the broker (aedes, or
 * Mosquitto plus the server's subscription), parsing, the ingest queue's group-commit wait and
 * the transaction. The wrapper costs a clock read per batch and a parse per state; its samples
 * (16 bytes each) stay in this process.
 */
import { openSync } from 'node:fs';
import { constants as perfConstants, monitorEventLoopDelay, PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { startServer } from '../../server/src/server.js';
import type { IngestBatch, IngestResult } from '../../server/src/store/types.js';
import { childConfig, eldSummary, ELD_RESOLUTION_MS, notify, parseIsoMicro, serve, summarise, wallMs, type Summary } from './fleet-common.js';

export interface FleetServerConfig {
  readonly dataDir: string;
  readonly mqttUrl?: string;
  readonly keyring: string;
  readonly logFile: string;
}

export interface FleetServerReady {
  readonly pid: number;
  readonly http: string;
  readonly mqtt: string;
  readonly adminToken: string;
}

/** Up to 8 M samples (128 MiB) at most; a 10,000-probe run makes about 200,000. */
const MAX_SAMPLES = 8_000_000;

class Samples {
  private at = new Float64Array(1 << 18);
  private lat = new Float64Array(1 << 18);
  n = 0;
  dropped = 0;

  add(publishedAt: number, latency: number): void {
    if (this.n === this.at.length) {
      if (this.n >= MAX_SAMPLES) {
        this.dropped++;
        return;
      }
      const grow = (a: Float64Array<ArrayBuffer>): Float64Array<ArrayBuffer> => {
        const b = new Float64Array(a.length * 2);
        b.set(a);
        return b;
      };
      this.at = grow(this.at);
      this.lat = grow(this.lat);
    }
    this.at[this.n] = publishedAt;
    this.lat[this.n] = latency;
    this.n++;
  }

  /** The latencies of the states published in [from, to]. */
  between(from: number, to: number): Summary {
    const out: number[] = [];
    for (let i = 0; i < this.n; i++) if (this.at[i]! >= from && this.at[i]! <= to) out.push(this.lat[i]!);
    return summarise(out);
  }
}

const GC_KINDS: Record<number, string> = {
  [perfConstants.NODE_PERFORMANCE_GC_MINOR]: 'scavenge',
  [perfConstants.NODE_PERFORMANCE_GC_MAJOR]: 'mark-compact',
  [perfConstants.NODE_PERFORMANCE_GC_INCREMENTAL]: 'incremental marking',
  [perfConstants.NODE_PERFORMANCE_GC_WEAKCB]: 'weak callbacks',
};

/**
 * The server's garbage-collection pauses (wall start in ms, duration, kind), from Node's `gc`
 * performance entries, so a stall of the event loop can be told apart from a collection.
 * Bounded like the latency samples; a 10,000-probe run makes a few thousand.
 */
class GcPauses {
  private readonly at: number[] = [];
  private readonly duration: number[] = [];
  private readonly kind: number[] = [];
  constructor() {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) this.add(e);
    }).observe({ entryTypes: ['gc'] });
  }

  private add(e: PerformanceEntry): void {
    if (this.at.length >= 1_000_000) return;
    this.at.push(performance.timeOrigin + e.startTime);
    this.duration.push(e.duration);
    this.kind.push((e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind ?? 0);
  }

  /** Pauses that started in [from, to]: their count, total, and the longest with its kind. */
  between(from: number, to: number): { count: number; totalMs: number; maxMs: number; maxKind: string; majorCount: number } {
    let count = 0;
    let totalMs = 0;
    let maxMs = 0;
    let maxKind = '-';
    let majorCount = 0;
    for (let i = 0; i < this.at.length; i++) {
      if (this.at[i]! < from || this.at[i]! > to) continue;
      count++;
      totalMs += this.duration[i]!;
      if (this.kind[i] === perfConstants.NODE_PERFORMANCE_GC_MAJOR) majorCount++;
      if (this.duration[i]! > maxMs) {
        maxMs = this.duration[i]!;
        maxKind = GC_KINDS[this.kind[i]!] ?? String(this.kind[i]);
      }
    }
    return { count, totalMs, maxMs, maxKind, majorCount };
  }
}

async function main(): Promise<void> {
  const c = childConfig<FleetServerConfig>();
  const log = openSync(c.logFile, 'a');
  const server = await startServer(
    {
      dataDir: c.dataDir,
      port: 0,
      logLevel: 'warn',
      keyring: c.keyring,
      ...(c.mqttUrl ? { mqttUrl: c.mqttUrl } : {}),
      // Server tuning to compare, e.g. FLEET_SERVER_OPTIONS='{"mqttConcurrency":1000,"fanoutChunk":1000}'.
      ...(process.env.FLEET_SERVER_OPTIONS ? (JSON.parse(process.env.FLEET_SERVER_OPTIONS) as object) : {}),
    },
    { logDestination: log },
  );
  const ctx = server.context;
  const samples = new Samples();
  /** Per probe, the publish time of its newest committed state. */
  const reported = new Map<string, number>();
  /** Events committed by type since the last eventsReset (the wills, online events, acks). */
  let events: Record<string, number> = {};
  const store = ctx.store;
  const ingest = store.ingest.bind(store);
  store.ingest = async (batch: IngestBatch): Promise<IngestResult> => {
    const result = await ingest(batch);
    const committed = wallMs();
    for (const s of batch.states) {
      const at = parseIsoMicro(s.state.at);
      if (Number.isNaN(at)) continue;
      samples.add(at, committed - at);
      if ((reported.get(s.probeId) ?? 0) < at) reported.set(s.probeId, at);
    }
    for (const e of batch.events) events[e.event.type] = (events[e.event.type] ?? 0) + 1;
    return result;
  };
  const gcPauses = new GcPauses();
  const eld = monitorEventLoopDelay({ resolution: ELD_RESOLUTION_MS });
  eld.enable();

  serve({
    latency: (a: { from: number; to: number }) => ({ ...samples.between(a.from, a.to), dropped: samples.dropped }),
    /** How many probes have a committed state published at or after `since`. */
    reporting: (a: { since: number }) => {
      let n = 0;
      for (const at of reported.values()) if (at >= a.since) n++;
      return n;
    },
    eventsReset: () => {
      events = {};
      return null;
    },
    events: () => events,
    eldReset: () => {
      eld.reset();
      return null;
    },
    eld: () => eldSummary(eld),
    gc: (a: { from: number; to: number }) => gcPauses.between(a.from, a.to),
    clients: () => ctx.bus.clients(),
    /** commands.sendMany to every enrolled probe, as a rollout's wave would. */
    sendMany: async (a: { packSha256: string }) => {
      const ids = await ctx.probes.match({ channel: 'stable' });
      const callAt = wallMs();
      await ctx.commands.sendMany(ids, { type: 'install', packSha256: a.packSha256 });
      return { probes: ids.length, callAt, returnedAt: wallMs() };
    },
    stop: async () => {
      await server.close();
      setImmediate(() => process.exit(0));
      return null;
    },
  });
  notify('ready', {
    pid: process.pid,
    http: server.httpUrls[0]!,
    mqtt: server.mqttUrls[0]!,
    adminToken: server.adminToken ?? '',
  } satisfies FleetServerReady);
}

main().catch((e: unknown) => {
  console.error(`fleet-server: ${(e as Error).stack ?? String(e)}`);
  process.exit(1);
});
