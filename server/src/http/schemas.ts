import { z } from 'zod';
import { PROBE_ID } from '../../../base/src/protocol/topics.js';
import { CHANNELS, PROBE_SORTS, ROLES } from '../store/types.js';

/**
 * Request bodies and query strings of the HTTP API, parsed strictly at the edge (STYLE.md rule
 * 4): an unknown key is a 400 BODY_INVALID naming it. The OpenAPI document is generated from the
 * same schemas (openapi.ts).
 */
const label = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/, 'must be 1 to 64 letters, digits, ".", "_", ":" or "-"');
const labels = z.array(label).max(32);

export const sha256Param = z.object({ sha256: z.string() }).strict();
export const probeParam = z.object({ id: z.string() }).strict();
/** A POST that takes no body: `{}` or none, anything else refused. */
export const noBody = z.object({}).strict();
export const commandParam = z.object({ commandId: z.string() }).strict();
export const tokenParam = z.object({ tokenId: z.string() }).strict();

export const probeListQuery = z
  .object({
    channel: z.enum(CHANNELS).optional(),
    group: label.optional(),
    tag: label.optional(),
    online: z.enum(['true', 'false']).optional(),
    /** Part of the id, a group or a tag (case-insensitive). */
    q: z.string().max(100).optional(),
    version: z.string().max(64).optional().describe('the version the probe last reported; none: no state yet'),
    agentBelow: z.string().regex(/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/, 'a version, e.g. 0.2.0').optional().describe('probes whose agent is older than this version'),
    health: z.enum(['ok', 'degraded', 'down', 'unknown', 'none']).optional(),
    outcome: z.enum(['committed', 'rolled-back', 'failed', 'duplicate', 'none']).optional().describe('of the last deployment the probe reported'),
    sort: z.enum(PROBE_SORTS).default('id'),
    order: z.enum(['asc', 'desc']).default('asc'),
    limit: z.coerce.number().int().min(1).max(10_000).default(1000),
    offset: z.coerce.number().int().min(0).default(0),
  })
  .strict();

/** `PATCH /api/v1/probes`: the same label change to many probes at once (the dashboard's bulk edit). */
export const probeBulkPatchBody = z
  .object({
    probeIds: z.array(z.string().regex(PROBE_ID, 'must be a probe id')).min(1).max(10_000),
    channel: z.enum(CHANNELS).optional(),
    addGroups: labels.optional(),
    removeGroups: labels.optional(),
    addTags: labels.optional(),
    removeTags: labels.optional(),
  })
  .strict()
  .refine((b) => b.channel !== undefined || [b.addGroups, b.removeGroups, b.addTags, b.removeTags].some((l) => l !== undefined && l.length > 0), 'changes nothing: give a channel, or groups or tags to add or remove');

export const deploymentParam = z.object({ id: z.string(), deploymentId: z.string().max(128) }).strict();

export const fleetQuery = z.object({ limit: z.coerce.number().int().min(0).max(500).default(50) }).strict();

export const probePatchBody = z
  .object({
    channel: z.enum(CHANNELS).optional(),
    addGroups: labels.optional(),
    removeGroups: labels.optional(),
    addTags: labels.optional(),
    removeTags: labels.optional(),
  })
  .strict();

export const enrollBody = z
  .object({
    /** The server URL the probe will use (default: the first --listen address, else loopback). */
    serverUrl: z.string().url().max(2048).optional(),
    mqttUrl: z.string().url().max(2048).optional(),
  })
  .strict();

export const commandBody = z.discriminatedUnion('type', [
  z.object({ type: z.literal('install'), packSha256: z.string().regex(/^[0-9a-f]{64}$/) }).strict(),
  z.object({ type: z.literal('report-now') }).strict(),
  z.object({ type: z.literal('rollback') }).strict(),
]);

/** `POST /api/v1/rollbacks`: the probes to return to their previous committed release, by id or by group. */
export const rollbackBody = z.union([
  z.object({ probeIds: z.array(z.string().regex(PROBE_ID, 'must be a probe id')).min(1).max(10_000) }).strict(),
  z.object({ group: label }).strict(),
]);

export const tokenCreateBody = z
  .object({
    name: z.string().min(1).max(100).regex(/^[^\u0000-\u001f\u007f]+$/, 'no control characters'),
    role: z.enum(ROLES),
  })
  .strict();

export const auditQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(1000).default(100),
    before: z.coerce.number().int().positive().optional(),
    actor: z.string().max(200).optional(),
    action: z.string().max(200).optional(),
    since: z.string().datetime().optional(),
  })
  .strict();

export const settingsBody = z
  .object({
    webhookUrl: z
      .string()
      .url()
      .max(2048)
      .refine((u) => /^https?:$/.test(new URL(u).protocol), 'must be http: or https:')
      .nullable(),
  })
  .strict();

export const gcBody = z
  .object({
    olderThanSeconds: z.number().int().min(0).default(86_400),
    dryRun: z.boolean().default(false),
  })
  .strict();

export const emptyQuery = z.object({}).strict();

export { PROBE_ID };
