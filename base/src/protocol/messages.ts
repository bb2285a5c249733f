import { z } from 'zod';
import { downloadLimitsSchema } from './download-limits.js';
import { PROBE_ID } from './topics.js';

/**
 * The messages probes and the server exchange, defined once (issue 4) and imported by both. Every
 * message is JSON, parsed strictly at the edge: an unknown key, a wrong type or an oversize
 * payload is refused with a logged code and never acted on.
 */
export const MAX_MESSAGE_BYTES = 64 * 1024;

const id = z.string().regex(/^[A-Za-z0-9._:-]{1,100}$/);
const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const isoTime = z.string().datetime();
const probeId = z.string().regex(PROBE_ID);
const version = z.string().max(64);

/** sonde/v1/probes/{id}/state: QoS 1, not retained; the server keeps the last one. */
export const stateSchema = z
  .object({
    v: z.literal(1),
    probeId,
    at: isoTime,
    agentVersion: version,
    product: z.string().max(64).nullable(),
    version: version.nullable(),
    appVersion: version.nullable(),
    slot: z.enum(['a', 'b']).nullable(),
    dbVersion: z.number().int().nullable(),
    configVersion: z.number().int().nullable(),
    health: z.enum(['ok', 'degraded', 'down', 'unknown']),
    appRunning: z.boolean(),
    lastDeployment: z
      .object({ id, outcome: z.string().max(32), errorCode: z.string().max(64).nullable(), version: version.nullable(), at: isoTime.nullable() })
      .strict()
      .nullable(),
    busy: z.boolean(),
    disk: z.object({ freeBytes: z.number().int().nonnegative(), totalBytes: z.number().int().nonnegative() }).strict(),
    uptimeSeconds: z.number().nonnegative(),
    inbox: z.object({ waiting: z.number().int().nonnegative(), incomplete: z.number().int().nonnegative() }).strict(),
  })
  .strict();
export type ProbeState = z.infer<typeof stateSchema>;

export const EVENT_TYPES = [
  'command-accepted',
  'command-refused',
  'download-started',
  'download-progress',
  'download-complete',
  'download-failed',
  'install-state',
  'install-outcome',
  'drop-received',
  'drop-rejected',
  'drop-duplicate',
  'online',
  'offline',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

/**
 * sonde/v1/probes/{id}/events: QoS 1. `id` is unique per event, so the server drops duplicates
 * (the outbox redelivers after a lost PUBACK). `seq` orders a probe's events.
 */
export const eventSchema = z
  .object({
    v: z.literal(1),
    id,
    seq: z.number().int().nonnegative(),
    probeId,
    at: isoTime,
    type: z.enum(EVENT_TYPES),
    /** The deployment (install attempt) it belongs to, when there is one. */
    deploymentId: id.optional(),
    /** The server command that caused it, when there is one. */
    commandId: id.optional(),
    state: z.string().max(32).optional(),
    outcome: z.enum(['committed', 'rolled-back', 'failed', 'duplicate']).optional(),
    code: z.string().max(64).optional(),
    message: z.string().max(1000).optional(),
    version: version.optional(),
    packSha256: sha256.optional(),
    bytes: z.number().int().nonnegative().optional(),
    totalBytes: z.number().int().nonnegative().optional(),
  })
  .strict();
export type ProbeEvent = z.infer<typeof eventSchema>;

/** sonde/v1/probes/{id}/commands: QoS 1, from the server. */
export const packRefSchema = z
  .object({
    url: z.string().url().max(2048),
    sha256,
    size: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  })
  .strict();

/** The largest diagnostics bundle a server may ask for (it caps its own uploads at its setting). */
export const MAX_DIAGNOSTICS_BYTES = 64 * 1024 * 1024;

export const commandSchema = z.discriminatedUnion('type', [
  /** `download`: the rollout's limits on the pack's download (download-limits.ts); the probe's own config may be stricter. */
  /**
   * `agentFirst`: the pack needs agent `minAgentVersion` or newer; an older agent first installs
   * the agent pack named here (it restarts into it), then the command's pack (docs/self-update.md).
   */
  z
    .object({
      v: z.literal(1),
      type: z.literal('install'),
      commandId: id,
      probeId,
      issuedAt: isoTime,
      rolloutId: id.optional(),
      pack: packRefSchema,
      download: downloadLimitsSchema.optional(),
      agentFirst: z.object({ minAgentVersion: z.string().regex(/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/).max(64), pack: packRefSchema }).strict().optional(),
    })
    .strict(),
  z.object({ v: z.literal(1), type: z.literal('cancel'), commandId: id, probeId, issuedAt: isoTime, target: id }).strict(),
  z.object({ v: z.literal(1), type: z.literal('report-now'), commandId: id, probeId, issuedAt: isoTime }).strict(),
  /** Back to the previous committed release: the agent's own rollback, with its refusals. */
  z.object({ v: z.literal(1), type: z.literal('rollback'), commandId: id, probeId, issuedAt: isoTime, rolloutId: id.optional() }).strict(),
  /** Collect a diagnostics bundle and upload it (HTTP, resumable) to `upload.url`, at most `upload.maxBytes`. */
  z
    .object({
      v: z.literal(1),
      type: z.literal('diagnose'),
      commandId: id,
      probeId,
      issuedAt: isoTime,
      upload: z.object({ url: z.string().url().max(2048), maxBytes: z.number().int().positive().max(MAX_DIAGNOSTICS_BYTES) }).strict(),
    })
    .strict(),
]);
export type Command = z.infer<typeof commandSchema>;

export type ParseResult<T> = { ok: true; value: T } | { ok: false; code: 'MESSAGE_TOO_LARGE' | 'MESSAGE_NOT_JSON' | 'MESSAGE_INVALID'; message: string };

/** Parses one MQTT payload against a schema; never throws. */
export function parseMessage<T>(schema: z.ZodType<T>, payload: Buffer | string): ParseResult<T> {
  const bytes = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
  if (bytes > MAX_MESSAGE_BYTES) return { ok: false, code: 'MESSAGE_TOO_LARGE', message: `${bytes} bytes; at most ${MAX_MESSAGE_BYTES}` };
  let json: unknown;
  try {
    json = JSON.parse(payload.toString());
  } catch {
    return { ok: false, code: 'MESSAGE_NOT_JSON', message: 'payload is not JSON' };
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0];
    return { ok: false, code: 'MESSAGE_INVALID', message: i ? `${i.path.join('.') || '(root)'}: ${i.message}` : 'invalid' };
  }
  return { ok: true, value: r.data };
}
