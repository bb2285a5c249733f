import { isIP } from 'node:net';
import { resolve } from 'node:path';
import { z } from 'zod';
import { ServerError } from './errors.js';
import { DEFAULT_RETENTION } from './store/retention.js';

/**
 * `sonde server` options, parsed strictly (an unknown key is refused and named) and frozen
 * (STYLE.md, after fastify). Defaults: HTTP on 127.0.0.1:8440, the embedded MQTT broker on the
 * next port (8441; with --port 0, an ephemeral one too).
 */
export const DEFAULT_PORT = 8440;

const port = z.number().int().min(0).max(65535);

export const serverOptionsSchema = z
  .object({
    dataDir: z.string().min(1),
    port: port.default(DEFAULT_PORT),
    /** The embedded broker's port; default port + 1 (0 with port 0). */
    mqttPort: port.optional(),
    /** Vendor roots to trust for uploads, added to <data>/keyring. */
    keyring: z.string().min(1).optional(),
    /** Extra addresses served as HTTPS and MQTTS under the server CA. IP literals only. */
    listen: z.array(z.string()).default([]),
    /** An external broker instead of the embedded one. */
    mqttUrl: z.string().url().optional(),
    /** The loopback address of plain HTTP and MQTT. */
    host: z.string().default('127.0.0.1'),
    webhookUrl: z.string().url().optional(),
    /** A command accepted but silent this long makes a probe.stuck webhook. */
    stuckAfterMs: z.number().int().positive().default(30 * 60_000),
    stuckCheckEveryMs: z.number().int().positive().optional(),
    maxPackBytes: z.number().int().positive().default(4 * 1024 ** 3),
    /** JSON request bodies. */
    maxBodyBytes: z.number().int().positive().default(64 * 1024),
    /** The longest a probe message waits before its transaction (a group commit: ingest-queue.ts). */
    ingestIntervalMs: z.number().int().positive().default(10),
    /** How often the probes' keepalives seen since the last time are written as their last seen. */
    seenFlushMs: z.number().int().positive().default(30_000),
    fanoutChunk: z.number().int().positive().default(200),
    /**
     * Messages the embedded broker delivers at once (aedes' `concurrency`, whose own default is 100).
     * A fan-out is bounded by it: at 100, 10,000 commands need at least 100 turns of an event loop
     * that the ingest keeps busy (bench/fleet: sendMany 3.75-4.52 s at 100, 2.33-3.11 s at 1000).
     */
    mqttConcurrency: z.number().int().positive().default(1000),
    pollRepeatMs: z.number().int().positive().default(60_000),
    /** Retention (store/retention.ts): how long events, the audit log and finished history are kept. */
    keepEventsMs: z.number().int().positive().default(DEFAULT_RETENTION.eventsMaxAgeMs),
    keepAuditMs: z.number().int().positive().default(DEFAULT_RETENTION.auditMaxAgeMs),
    keepHistoryMs: z.number().int().positive().default(DEFAULT_RETENTION.historyMaxAgeMs),
    /** How often the retention pass runs (and once at start). */
    retentionEveryMs: z.number().int().positive().default(3_600_000),
    /** The dashboard's live stream (live/live-stream.ts): how changes are gathered, the heartbeat, the most streams open at once. */
    live: z
      .object({
        flushMs: z.number().int().positive().optional(),
        heartbeatMs: z.number().int().positive().optional(),
        maxStreams: z.number().int().positive().optional(),
      })
      .strict()
      .default({}),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .strict();

export type ServerOptionsInput = z.input<typeof serverOptionsSchema>;
export type ServerOptions = Readonly<z.output<typeof serverOptionsSchema> & { mqttPort: number }>;

export function parseServerOptions(input: ServerOptionsInput): ServerOptions {
  const r = serverOptionsSchema.safeParse(input);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new ServerError('SERVER_OPTIONS_INVALID', i ? `${i.path.join('.') || '(root)'}: ${i.message}` : 'invalid server options');
  }
  const o = r.data;
  for (const a of o.listen) {
    if (isIP(a) === 0) throw new ServerError('LISTEN_ADDRESS_INVALID', `--listen takes an IP address, not ${JSON.stringify(a)}`);
    if (a === '0.0.0.0' || a === '::') throw new ServerError('LISTEN_ADDRESS_INVALID', `--listen ${a}: name each address (the certificate lists them)`);
    if (a === o.host) throw new ServerError('LISTEN_ADDRESS_INVALID', `${a} already serves plain HTTP and MQTT`);
  }
  if (o.mqttUrl !== undefined && !/^mqtts?:$/.test(new URL(o.mqttUrl).protocol)) {
    throw new ServerError('SERVER_OPTIONS_INVALID', `--mqtt-url must be mqtt: or mqtts:, not ${new URL(o.mqttUrl).protocol}`);
  }
  const mqttPort = o.mqttPort ?? (o.port === 0 ? 0 : o.port + 1);
  if (mqttPort !== 0 && mqttPort === o.port) throw new ServerError('SERVER_OPTIONS_INVALID', 'HTTP and MQTT need different ports');
  if (mqttPort > 65535) throw new ServerError('SERVER_OPTIONS_INVALID', `--port ${o.port} leaves no room for MQTT on the next port: give --mqtt-port`);
  return Object.freeze({ ...o, listen: Object.freeze([...new Set(o.listen)]) as string[], dataDir: resolve(o.dataDir), mqttPort });
}
