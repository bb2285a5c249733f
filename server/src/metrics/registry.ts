import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Prometheus metrics at `/metrics`, through prom-client (docs/metrics.md): counters and
 * histograms the code updates, gauges read from the store when scraped, the process and Node.js
 * metrics prom-client collects, and `sonde_build_info`.
 *
 * No series appears and vanishes with its value: a counter with a small known set of labels
 * starts every series at 0, and a scraped gauge keeps reporting 0 for a label value it has
 * reported before (a version no probe runs any more reads 0 until the server restarts).
 */
type Read = () => Promise<Record<string, number> | number> | Record<string, number> | number;

/** Label values known before anything happens: their series exist from the first scrape. */
export const MQTT_DENIED_ACTIONS = ['connect', 'connect-rate', 'oversize', 'publish', 'subscribe'] as const;
export const INSTALL_OUTCOMES = ['committed', 'rolled-back', 'failed', 'duplicate'] as const;
/** Distinct install failure codes kept as their own series (Sonde documents fewer than 100). */
const MAX_FAILURE_CODES = 200;
/** Label values a scraped gauge keeps at 0 after they are gone, at most. */
const MAX_KEPT_LABELS = 1000;
const HTTP_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60];

export class Metrics {
  readonly registry = new Registry();

  readonly httpRequests = new Counter({
    name: 'sonde_http_requests_total',
    help: 'HTTP requests answered, by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  });
  readonly httpDuration = new Histogram({
    name: 'sonde_http_request_duration_seconds',
    help: 'Time from a request arriving to its response being sent, by method and route',
    labelNames: ['method', 'route'] as const,
    buckets: HTTP_BUCKETS,
    registers: [this.registry],
  });
  readonly mqttMessages = new Counter({
    name: 'sonde_mqtt_messages_total',
    help: 'MQTT messages from probes, by topic kind and result',
    labelNames: ['kind', 'result'] as const,
    registers: [this.registry],
  });
  readonly mqttConnections = new Counter({
    name: 'sonde_mqtt_connections_total',
    help: 'Probe logins the embedded broker accepted',
    registers: [this.registry],
  });
  readonly mqttDenied = new Counter({
    name: 'sonde_mqtt_denied_total',
    help: 'Connects, publishes and subscribes the embedded broker refused, by action',
    labelNames: ['action'] as const,
    registers: [this.registry],
  });
  readonly ingestBatches = new Counter({ name: 'sonde_ingest_batches_total', help: 'Ingest transactions committed', registers: [this.registry] });
  readonly ingestLatency = new Histogram({
    name: 'sonde_ingest_latency_seconds',
    help: 'From a message reaching the server to its transaction committing',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });
  readonly installOutcomes = new Counter({
    name: 'sonde_install_outcomes_total',
    help: 'Install outcomes the probes reported (each install-outcome event once), by outcome',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly installFailures = new Counter({
    name: 'sonde_install_failures_total',
    help: 'Installs that did not commit, by the error code the probe reported',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly commandsSent = new Counter({
    name: 'sonde_commands_published_total',
    help: 'Commands published to probes, by type',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly uploads = new Counter({
    name: 'sonde_pack_uploads_total',
    help: 'Pack uploads, by result code',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly webhooks = new Counter({
    name: 'sonde_webhook_deliveries_total',
    help: 'Webhook deliveries, by result',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  constructor(build: { readonly version: string } = { version: 'unknown' }) {
    collectDefaultMetrics({ register: this.registry });
    // Three of prom-client's defaults are gauges named *_total, which Prometheus's own linter
    // (promtool check metrics) refuses: a name ending in _total says "counter" to every query.
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) this.registry.removeSingleMetric(name);
    new Gauge({
      name: 'sonde_build_info',
      help: 'The running server: always 1, with its version and the Node.js version as labels',
      labelNames: ['version', 'node'] as const,
      registers: [this.registry],
    }).set({ version: build.version, node: process.versions.node }, 1);
    for (const action of MQTT_DENIED_ACTIONS) this.mqttDenied.inc({ action }, 0);
    for (const outcome of INSTALL_OUTCOMES) this.installOutcomes.inc({ outcome }, 0);
    for (const result of ['accepted', 'refused']) for (const kind of ['state', 'events']) this.mqttMessages.inc({ kind, result }, 0);
    this.uploads.inc({ result: 'stored' }, 0);
    for (const result of ['delivered', 'failed', 'unconfigured']) this.webhooks.inc({ result }, 0);
  }

  private readonly failureCodes = new Set<string>();

  /**
   * One install-outcome event. The code comes from a probe, which may be compromised: only a
   * code-shaped label is kept, and past MAX_FAILURE_CODES distinct codes the rest count as
   * `other`, so no probe can grow the series without bound.
   */
  installOutcome(outcome: (typeof INSTALL_OUTCOMES)[number], code: string | null): void {
    this.installOutcomes.inc({ outcome });
    if (outcome === 'committed' || outcome === 'duplicate') return;
    let label = code !== null && /^[A-Z][A-Z0-9_]{0,63}$/.test(code) ? code : 'other';
    if (!this.failureCodes.has(label) && this.failureCodes.size >= MAX_FAILURE_CODES) label = 'other';
    this.failureCodes.add(label);
    this.installFailures.inc({ code: label });
  }

  /**
   * A gauge read when scraped: a number, or counts by one label (`label`). Every value in `known`,
   * and every label value reported once, stays in the output, at 0 when the read leaves it out.
   */
  gauge(name: string, help: string, read: Read, label = 'status', known: readonly string[] = []): void {
    const seen = new Set<string>(known);
    new Gauge({
      name,
      help,
      labelNames: [label],
      registers: [this.registry],
      async collect() {
        const v = await read();
        if (typeof v === 'number') {
          this.set(v);
          return;
        }
        for (const k of Object.keys(v)) seen.add(k);
        // A label value reported once stays at 0, up to a bound: a probe reporting a new version
        // every minute must not grow the output for ever (then only the current values stay).
        if (seen.size > MAX_KEPT_LABELS) {
          seen.clear();
          for (const k of [...known, ...Object.keys(v)]) seen.add(k);
          this.reset();
        }
        for (const k of seen) this.set({ [label]: k }, v[k] ?? 0);
      },
    });
  }

  /** The current value of a counter series (tests and the CLI's summaries). */
  async value(counter: Counter<string>, labels: Readonly<Record<string, string>> = {}): Promise<number> {
    const { values } = await counter.get();
    const want = Object.entries(labels);
    return values.find((s) => want.every(([k, v]) => s.labels[k] === v) && Object.keys(s.labels).length === want.length)?.value ?? 0;
  }

  /** The exposition text (format 0.0.4) and its content type. */
  async render(): Promise<{ text: string; contentType: string }> {
    return { text: await this.registry.metrics(), contentType: this.registry.contentType };
  }

  close(): void {
    this.registry.clear();
  }
}
