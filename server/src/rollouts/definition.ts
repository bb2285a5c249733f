import { z } from 'zod';
import { downloadLimitsSchema } from '../../../base/src/protocol/download-limits.js';
import { PROBE_ID } from '../../../base/src/protocol/topics.js';
import { CHANNELS } from '../store/types.js';
import { ENVIRONMENTS } from './environments.js';
import { windowSchema } from './windows.js';

/**
 * What a rollout is (issue 5): a pack × a target × a strategy, with maintenance windows and an
 * optional environment. Parsed strictly where it enters (the HTTP body, an import) and stored as
 * parsed, so the engine trusts it (STYLE.md rule 4).
 */
const label = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/, 'must be 1 to 64 letters, digits, ".", "_", ":" or "-"');
const probeIds = z.array(z.string().regex(PROBE_ID, 'not a probe id')).min(1).max(1000);
const fraction = z.number().min(0).max(1);

/** Which probes: every field given must match (as in `GET /api/v1/probes`); at least one field. */
export const targetSchema = z
  .object({
    channel: z.enum(CHANNELS).optional(),
    group: label.optional(),
    tag: label.optional(),
    probeIds: probeIds.optional(),
    /** Probes whose agent (its last state's agentVersion) is older than this version: an agent update's audience. */
    agentBelow: z.string().regex(/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/, 'a version, e.g. 0.2.0').optional(),
  })
  .strict()
  .refine(
    (t) => t.channel !== undefined || t.group !== undefined || t.tag !== undefined || t.probeIds !== undefined || t.agentBelow !== undefined,
    'name a channel, group, tag, probeIds or agentBelow',
  );
export type RolloutTarget = z.output<typeof targetSchema>;

/** The first wave: a number of probes, a percentage of the target, or named probes. */
export const canarySchema = z.union([
  z.object({ probes: z.number().int().min(1).max(10_000) }).strict(),
  z.object({ percent: z.number().gt(0).max(100) }).strict(),
  z.object({ probeIds }).strict(),
]);
export type Canary = z.output<typeof canarySchema>;

/** Between one wave passing and the next starting: a wait, or a person's approval. */
export const advanceSchema = z.discriminatedUnion('mode', [
  z.object({ mode: z.literal('wait'), seconds: z.number().min(0).max(30 * 86_400) }).strict(),
  z.object({ mode: z.literal('approval') }).strict(),
]);
export type Advance = z.output<typeof advanceSchema>;

export const strategySchema = z
  .object({
    canary: canarySchema.optional(),
    /**
     * Cumulative percentages of the target reached by the end of each wave, the canary counted:
     * [10, 50, 100] covers 10 %, then 50 %, then everyone. Strictly increasing, ending at 100.
     */
    waves: z
      .array(z.number().gt(0).max(100))
      .min(1)
      .max(20)
      .default([100])
      .refine((w) => w.every((p, i) => i === 0 || p > w[i - 1]!), 'wave percentages must increase')
      .refine((w) => w[w.length - 1] === 100, 'the last wave must reach 100 percent'),
    /** A wave passes when at least this fraction of its probes committed. */
    successThreshold: fraction.default(0.9),
    /** The rollout pauses itself when more than this fraction of a started wave failed or rolled back. */
    errorThreshold: fraction.default(0.1),
    advance: advanceSchema.default({ mode: 'wait', seconds: 600 }),
    /** Leave out probes whose state already reports the pack's version (they are `skipped`). */
    skipCurrent: z.boolean().default(true),
  })
  .strict();
export type Strategy = z.output<typeof strategySchema>;

export const rolloutCreateBody = z
  .object({
    name: z.string().min(1).max(100).regex(/^[^\u0000-\u001f\u007f]+$/, 'no control characters').optional(),
    packSha256: z.string().regex(/^[0-9a-f]{64}$/, 'a sha256: 64 lower-case hex characters'),
    /** The promotion gate (environments.ts); without one, no gate applies. */
    environment: z.enum(ENVIRONMENTS).optional(),
    target: targetSchema,
    strategy: strategySchema.default({ waves: [100], successThreshold: 0.9, errorThreshold: 0.1, advance: { mode: 'wait', seconds: 600 }, skipCurrent: true }),
    /** When commands may be sent; none means at any time. */
    windows: z.array(windowSchema).max(16).default([]),
    /** Limits on each probe's download of the pack: a bandwidth cap and a window of local time (a probe's own config may be stricter). */
    download: downloadLimitsSchema.optional(),
    /**
     * An agent pack (kind `agent`) that a probe whose agent is older than this pack's
     * minAgentVersion installs first (docs/self-update.md); it must be at least that version.
     */
    agentPackSha256: z.string().regex(/^[0-9a-f]{64}$/, 'a sha256: 64 lower-case hex characters').optional(),
    /** Create without starting (`POST …/start` starts it). */
    draft: z.boolean().default(false),
  })
  .strict();
export type RolloutDefinition = z.output<typeof rolloutCreateBody>;
