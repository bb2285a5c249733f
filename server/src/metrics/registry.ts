import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/**
 * Prometheus metrics (text exposition format 0.0.4) at `/metrics`, without a client library:
 * counters and histograms the code updates, and gauges read when scraped.
 */
type Labels = Readonly<Record<string, string>>;

function key(labels: Labels): string {
  return Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]!.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`)
    .join(',');
}

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge' | 'histogram';
  render(): Promise<string[]> | string[];
}

export class Counter implements Family {
  readonly type = 'counter';
  private readonly values = new Map<string, number>();
  constructor(
    readonly name: string,
    readonly help: string,
  ) {}
  inc(labels: Labels = {}, by = 1): void {
    const k = key(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  get(labels: Labels = {}): number {
    return this.values.get(key(labels)) ?? 0;
  }
  render(): string[] {
    if (this.values.size === 0) return [`${this.name} 0`];
    return [...this.values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ''} ${v}`);
  }
}

export class Histogram implements Family {
  readonly type = 'histogram';
  private readonly counts: number[];
  private sum = 0;
  private count = 0;
  constructor(
    readonly name: string,
    readonly help: string,
    readonly buckets: readonly number[],
  ) {
    this.counts = buckets.map(() => 0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]!) this.counts[i]!++;
  }
  render(): string[] {
    return [
      ...this.buckets.map((b, i) => `${this.name}_bucket{le="${b}"} ${this.counts[i]}`),
      `${this.name}_bucket{le="+Inf"} ${this.count}`,
      `${this.name}_sum ${this.sum}`,
      `${this.name}_count ${this.count}`,
    ];
  }
}

export class Gauge implements Family {
  readonly type = 'gauge';
  constructor(
    readonly name: string,
    readonly help: string,
    private readonly read: () => Promise<Record<string, number> | number> | Record<string, number> | number,
    /** The label that the keys of a record value go into. */
    private readonly label = 'status',
  ) {}
  async render(): Promise<string[]> {
    const v = await this.read();
    if (typeof v === 'number') return [`${this.name} ${v}`];
    return Object.entries(v).map(([k, n]) => `${this.name}{${key({ [this.label]: k })}} ${n}`);
  }
}

export class Metrics {
  private readonly families: Family[] = [];
  private readonly loop: IntervalHistogram;

  readonly httpRequests = this.add(new Counter('sonde_http_requests_total', 'HTTP requests answered, by method, route and status'));
  readonly mqttMessages = this.add(new Counter('sonde_mqtt_messages_total', 'MQTT messages from probes, by topic kind and result'));
  readonly mqttDenied = this.add(new Counter('sonde_mqtt_denied_total', 'Connects, publishes and subscribes the embedded broker refused'));
  readonly ingestBatches = this.add(new Counter('sonde_ingest_batches_total', 'Ingest transactions committed'));
  readonly ingestLatency = this.add(
    new Histogram('sonde_ingest_latency_seconds', 'From a message reaching the server to its transaction committing', [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]),
  );
  readonly commandsSent = this.add(new Counter('sonde_commands_published_total', 'Commands published to probes, by type'));
  readonly uploads = this.add(new Counter('sonde_pack_uploads_total', 'Pack uploads, by result code'));
  readonly webhooks = this.add(new Counter('sonde_webhook_deliveries_total', 'Webhook deliveries, by result'));

  constructor() {
    this.loop = monitorEventLoopDelay({ resolution: 10 });
    this.loop.enable();
    this.add(new Gauge('sonde_event_loop_delay_p99_seconds', 'Event-loop delay, 99th percentile since the last scrape', () => {
      const v = this.loop.percentile(99) / 1e9;
      this.loop.reset();
      return Number.isFinite(v) ? v : 0;
    }));
    this.add(new Gauge('process_resident_memory_bytes', 'Resident memory', () => process.memoryUsage.rss()));
    this.add(new Gauge('process_cpu_seconds_total', 'User and system CPU time', () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1e6;
    }));
  }

  add<F extends Family>(f: F): F {
    this.families.push(f);
    return f;
  }

  gauge(name: string, help: string, read: () => Promise<Record<string, number> | number> | Record<string, number> | number, label?: string): void {
    this.add(new Gauge(name, help, read, label));
  }

  async render(): Promise<string> {
    const lines: string[] = [];
    for (const f of this.families) {
      lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
      lines.push(...(await f.render()));
    }
    return `${lines.join('\n')}\n`;
  }

  close(): void {
    this.loop.disable();
  }
}
