import { z } from 'zod';
import { commandSchema, eventSchema, stateSchema } from '../../../base/src/protocol/messages.js';
import { downloadLimitsSchema } from '../../../base/src/protocol/download-limits.js';
import { PACK_KINDS } from '../../../pack/src/index.js';
import { strategySchema, targetSchema } from '../rollouts/definition.js';
import { ENVIRONMENTS } from '../rollouts/environments.js';
import { ROLLOUT_STATES } from '../rollouts/machine.js';
import { windowSchema } from '../rollouts/windows.js';
import { CHANNELS, COMMAND_STATUSES } from '../store/types.js';

/**
 * What the API answers on success, as zod schemas (issue 23: "response schemas for every route").
 * The views (views.ts, rollouts/views.ts) are typed by these schemas, so a view that drifts from
 * its schema does not compile; the OpenAPI document (openapi.ts) is generated from them; and a
 * test parses real answers of every route with them.
 */
const iso = z.string().describe('ISO 8601 time, UTC');
const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const nullableIso = iso.nullable();

export const probeViewSchema = z.object({
  id: z.string(),
  channel: z.enum(CHANNELS),
  groups: z.array(z.string()).readonly(),
  tags: z.array(z.string()).readonly(),
  online: z.boolean(),
  lastSeen: nullableIso,
  version: z.string().nullable(),
  appVersion: z.string().nullable(),
  slot: z.enum(['a', 'b']).nullable(),
  health: stateSchema.shape.health.nullable(),
  agentVersion: z.string().nullable(),
  busy: z.boolean().nullable(),
  lastDeployment: stateSchema.shape.lastDeployment,
  lastCommitted: z.object({ deploymentId: z.string(), version: z.string().nullable(), at: iso }).nullable(),
  stateAt: nullableIso,
  enrolledAt: iso,
});
export type ProbeView = z.infer<typeof probeViewSchema>;

export const commandViewSchema = z.object({
  commandId: z.string(),
  probeId: z.string(),
  type: z.enum(['install', 'rollback', 'diagnose', 'cancel', 'report-now']),
  rolloutId: z.string().nullable(),
  packSha256: sha256.nullable(),
  status: z.enum(COMMAND_STATUSES),
  errorCode: z.string().nullable(),
  deploymentId: z.string().nullable(),
  createdAt: iso,
  sentAt: nullableIso,
  updatedAt: iso,
  finishedAt: nullableIso,
});
export type CommandView = z.infer<typeof commandViewSchema>;

export const deploymentViewSchema = z.object({
  probeId: z.string(),
  deploymentId: z.string(),
  commandId: z.string().nullable(),
  packSha256: sha256.nullable(),
  version: z.string().nullable(),
  state: z.string().nullable(),
  outcome: z.enum(['committed', 'rolled-back', 'failed', 'duplicate']).nullable(),
  errorCode: z.string().nullable(),
  startedAt: iso,
  updatedAt: iso,
  finishedAt: nullableIso,
});

export const probeDetailSchema = probeViewSchema.extend({
  state: stateSchema.nullable(),
  deployments: z.array(deploymentViewSchema),
  commands: z.array(commandViewSchema),
  events: z.array(z.intersection(eventSchema, z.object({ receivedAt: iso }))),
});

export const packViewSchema = z.object({
  sha256,
  size: z.number().int(),
  kind: z.enum(PACK_KINDS),
  product: z.string(),
  version: z.string(),
  compatible: z.array(z.string()).readonly(),
  requires: z.string().nullable(),
  securityVersion: z.number().int(),
  createdAt: iso,
  encrypted: z.boolean(),
  payloads: z.array(z.object({ name: z.string(), type: z.string(), size: z.number().int() })).readonly(),
  signer: z.string(),
  uploadedAt: iso,
  uploadedBy: z.string(),
  hasReleaseNotes: z.boolean(),
});
export type PackView = z.infer<typeof packViewSchema>;

export const packUploadSchema = packViewSchema.extend({ created: z.boolean() });
const certificateSchema = z.object({ subject: z.string(), issuer: z.string(), serialNumber: z.string(), validFrom: iso, validTo: iso, fingerprint256: z.string() });
export const signerChainSchema = z
  .object({ trusted: z.boolean(), code: z.string().nullable(), message: z.string().nullable(), chain: z.array(certificateSchema).readonly().describe('signer first, root last') })
  .describe("the signer's chain as the keyring judges it now (a signer revoked since upload shows its code)");
export const packDetailSchema = packViewSchema.extend({
  manifest: z.record(z.string(), z.unknown()).describe('the signed manifest.json'),
  releaseNotes: z.string().nullable(),
  signerChain: signerChainSchema,
});
export const gcResultSchema = z.object({ deleted: z.array(sha256), orphans: z.array(z.string()), dryRun: z.boolean() });

export const tokenViewSchema = z.object({
  id: z.string(),
  kind: z.enum(['staff', 'probe']),
  name: z.string(),
  role: z.enum(['viewer', 'operator', 'admin']).nullable(),
  probeId: z.string().nullable(),
  createdAt: iso,
  revokedAt: nullableIso,
});
export const tokenCreatedSchema = z.object({ id: z.string(), name: z.string(), role: z.enum(['viewer', 'operator', 'admin']), createdAt: iso, token: z.string().describe('the secret, shown once') });

export const auditEntrySchema = z.object({
  id: z.number().int(),
  at: iso,
  actor: z.string(),
  actorName: z.string(),
  action: z.string(),
  target: z.string().nullable(),
  status: z.number().int(),
  detail: z.record(z.string(), z.unknown()).nullable(),
});
export const settingsSchema = z.object({ webhookUrl: z.string().nullable() });

export const enrollmentSchema = z.object({
  format: z.literal('sonde-enrollment-1'),
  probeId: z.string(),
  token: z.string(),
  server: z.object({ http: z.string(), mqtt: z.string() }),
  ca: z.string().optional(),
});

export const commandsSchema = z.object({ commands: z.array(commandViewSchema) });
export const okSchema = z.object({ ok: z.literal(true) });
export const openApiSchema = z.object({ openapi: z.string(), info: z.record(z.string(), z.unknown()), paths: z.record(z.string(), z.unknown()) }).describe('this document');
export const nextCommandSchema = commandSchema;

export const diagnosticsEntrySchema = z.object({ commandId: z.string(), probeId: z.string(), size: z.number().int(), sha256, requestedAt: iso, receivedAt: iso });
export const uploadProgressSchema = z.object({ receivedBytes: z.number().int(), complete: z.boolean() });

// Rollouts

export const rolloutViewSchema = z.object({
  id: z.string(),
  name: z.string().nullable(),
  state: z.enum(ROLLOUT_STATES),
  packSha256: sha256,
  product: z.string(),
  version: z.string(),
  environment: z.enum(ENVIRONMENTS).nullable(),
  target: z.lazy(() => targetSchema),
  strategy: z.lazy(() => strategySchema),
  windows: z.array(windowSchema).readonly(),
  download: downloadLimitsSchema.nullable(),
  agentFirst: z
    .object({ packSha256: sha256, version: z.string(), minAgentVersion: z.string() })
    .nullable()
    .describe('the agent update sent first to probes whose agent is older than the pack needs'),
  wave: z.number().int().describe('the current wave, 0-based; -1 before the start'),
  waveCount: z.number().int(),
  hasCanary: z.boolean(),
  waitUntil: nullableIso,
  pausedReason: z.string().nullable(),
  createdBy: z.string(),
  createdByName: z.string(),
  createdAt: iso,
  startedAt: nullableIso,
  updatedAt: iso,
  finishedAt: nullableIso,
});
export type RolloutView = z.infer<typeof rolloutViewSchema>;

export const approvalViewSchema = z.object({
  kind: z.enum(['wave', 'promotion']),
  wave: z.number().int().nullable(),
  environment: z.enum(ENVIRONMENTS).nullable(),
  packSha256: sha256,
  approvedBy: z.string(),
  approvedByName: z.string(),
  approvedAt: iso,
});
export type ApprovalView = z.infer<typeof approvalViewSchema>;

const counts = {
  size: z.number().int(),
  pending: z.number().int(),
  sent: z.number().int(),
  accepted: z.number().int(),
  installing: z.number().int(),
  committed: z.number().int(),
  failed: z.number().int(),
  rolledBack: z.number().int(),
  skipped: z.number().int(),
  openFailures: z.number().int(),
  eligible: z.number().int(),
};

export const rolloutStatusSchema = rolloutViewSchema.extend({
  progress: z.object({ ...counts, updated: z.number().int().describe('probes whose install-outcome committed') }),
  waves: z.array(z.object({ wave: z.number().int(), ...counts, kind: z.enum(['canary', 'wave']), started: z.boolean() })).readonly(),
  window: z.object({ open: z.boolean(), nextOpening: nullableIso }),
  approvals: z.array(approvalViewSchema),
  history: z.array(z.object({ at: iso, from: z.enum(ROLLOUT_STATES), event: z.string(), to: z.enum(ROLLOUT_STATES), wave: z.number().int(), actor: z.string(), detail: z.record(z.string(), z.unknown()).nullable() })).readonly(),
});

export const targetViewSchema = z.object({
  probeId: z.string(),
  wave: z.number().int(),
  state: z.string(),
  attempt: z.number().int(),
  commandId: z.string().nullable(),
  errorCode: z.string().nullable(),
  deploymentId: z.string().nullable(),
  skipReason: z.string().nullable(),
  acknowledged: z.boolean(),
  sentAt: nullableIso,
  updatedAt: iso,
  finishedAt: nullableIso,
});
export type TargetView = z.infer<typeof targetViewSchema>;

export const rolloutApprovedSchema = z.object({ rollout: rolloutViewSchema, approval: approvalViewSchema });
export const rolloutRetriedSchema = z.object({ rollout: rolloutViewSchema, retried: z.number().int() });
export const rolloutRollbackSchema = z.object({ rollout: rolloutViewSchema, commands: z.array(z.object({ probeId: z.string(), commandId: z.string() }).passthrough()) });

// The dashboard's reads (issue 22)

export const sessionViewSchema = z.object({
  tokenId: z.string(),
  name: z.string(),
  role: z.enum(['viewer', 'operator', 'admin']),
  csrfToken: z.string().nullable().describe('send it as X-CSRF-Token with every mutating call made with the session cookie; null for a bearer caller'),
  expiresAt: nullableIso,
});
export type SessionView = z.infer<typeof sessionViewSchema>;

const problemSchema = z.enum(['offline', 'down', 'degraded', 'failed-deployment', 'stuck']);
export const fleetSummarySchema = z.object({
  total: z.number().int(),
  online: z.number().int(),
  offline: z.number().int(),
  byHealth: z.record(z.string(), z.number().int()).describe('probes by the health they last reported; none: no state yet'),
  byVersion: z.record(z.string(), z.number().int()),
  byChannel: z.record(z.string(), z.number().int()),
  problems: z.object({
    counts: z.record(problemSchema, z.number().int()),
    probes: z.array(probeViewSchema.extend({ problems: z.array(problemSchema) })).describe('worst first, at most `limit`'),
  }),
  at: iso,
});
export type FleetSummary = z.infer<typeof fleetSummarySchema>;

export const receiptSchema = z.object({
  deployment: deploymentViewSchema,
  steps: z.array(z.object({ state: z.string(), at: iso, seconds: z.number().nullable().describe('until the next step; null for the last') })),
  outcome: z.object({ outcome: z.string(), code: z.string().nullable(), message: z.string().nullable().describe("the reason, with the app's last words when it died"), at: iso }).nullable(),
  events: z.array(z.intersection(eventSchema, z.object({ receivedAt: iso }))),
});
export type ReceiptView = z.infer<typeof receiptSchema>;

export const labelsResultSchema = z.object({ updated: z.array(z.string()), missing: z.array(z.string()) });
