import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { z } from 'zod';
import { downloadLimitsSchema } from '../../../base/src/protocol/download-limits.js';
import { LinkError } from '../link/errors.js';
import { defaultStateFor } from '../update/agent-paths.js';

/**
 * The daemon's config file (`sonde agent run --config FILE`, docs/agent-config.md). Parsed
 * strictly: an unknown key is an error that names the key, so a typo never silently falls back to
 * a default. Paths are relative to the file's folder. The result is frozen.
 */
const ms = z.number().int().positive();
const hhmm = z.string().regex(/^([01][0-9]|2[0-3]):[0-5][0-9]$/, 'must be HH:MM');
const configSchema = z
  .object({
    /** The probe root (/ on a real probe). */
    root: z.string().default('/'),
    /** The agent's state folder (agent.db, inbox, staging, receipts); default as every `sonde agent` command's (agent-paths.ts). */
    state: z.string().optional(),
    /** The enrollment credential file written by `sonde server enroll` (mode 0600). */
    credentials: z.string(),
    /** Vendor roots that seed <root>/keyring on first start (a root file or a folder). */
    keyring: z.string().optional(),
    /** A recipient private key to store on the probe on first start (fleet, group or probe key). */
    recipientKey: z.string().optional(),
    model: z.string().optional(),
    /** The FTP drop; default <state>/inbox. */
    inbox: z.string().optional(),
    /** Installs start only between these local times (HH:MM; end before start spans midnight). */
    maintenanceWindow: z.object({ start: hhmm, end: hhmm }).strict().optional(),
    health: z.object({ required: z.number().int().positive().optional(), intervalMs: ms.optional(), windowMs: ms.optional() }).strict().default({}),
    /** What the link costs (docs/traffic.md): `default`, or `metered` for thin or paid links. Sets the defaults below. */
    profile: z.enum(['default', 'metered']).default('default'),
    /** State: a full state every `stateIntervalMs`; a change is looked for every `checkIntervalMs` (locally) and published at once. */
    report: z.object({ stateIntervalMs: ms.optional(), checkIntervalMs: ms.optional() }).strict().default({}),
    /** The MQTT keepalive: how often an idle link says it is alive, and so how soon the server notices a dead probe (1.5 x). */
    mqtt: z.object({ keepaliveSeconds: z.number().int().min(5).max(65_535).optional() }).strict().default({}),
    reconnect: z.object({ minMs: ms.default(1000), maxMs: ms.default(60_000) }).strict().default({ minMs: 1000, maxMs: 60_000 }),
    poll: z.object({ intervalMs: ms.default(60_000), maxIntervalMs: ms.default(900_000), afterOfflineMs: ms.default(30_000) }).strict().default({ intervalMs: 60_000, maxIntervalMs: 900_000, afterOfflineMs: 30_000 }),
    drop: z
      .object({
        scanIntervalMs: ms.default(1000),
        stableMs: ms.default(2000),
        incompleteExpiryMs: ms.default(24 * 3600_000),
        /** Where answers to signed diagnostics requests go (an operator fetches them); default <state>/drop-outbox. */
        outbox: z.string().optional(),
      })
      .strict()
      .default({ scanIntervalMs: 1000, stableMs: 2000, incompleteExpiryMs: 24 * 3600_000 }),
    retention: z
      .object({ maxCount: z.number().int().positive().default(20), maxAgeDays: z.number().positive().default(30) })
      .strict()
      .default({ maxCount: 20, maxAgeDays: 30 }),
    outbox: z.object({ maxMessages: z.number().int().positive().default(10_000) }).strict().default({ maxMessages: 10_000 }),
    download: z
      .object({
        attempts: z.number().int().positive().default(50),
        maxDelayMs: ms.default(30_000),
        idleTimeoutMs: ms.default(30_000),
        /** A cap on pack downloads, and a window of local time for them (docs/traffic.md); a rollout's may be stricter. */
        maxBytesPerSecond: downloadLimitsSchema.shape.maxBytesPerSecond,
        window: downloadLimitsSchema.shape.window,
      })
      .strict()
      .default({ attempts: 50, maxDelayMs: 30_000, idleTimeoutMs: 30_000 }),
    /**
     * An agent updating itself (docs/self-update.md): the launcher takes the new agent back unless
     * it confirms itself within `windowSeconds`; offline, its self-check runs after `settleMs`.
     */
    selfUpdate: z
      .object({ windowSeconds: z.number().int().min(10).max(3600).default(300), settleMs: ms.default(30_000) })
      .strict()
      .default({ windowSeconds: 300, settleMs: 30_000 }),
    log: z.object({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info') }).strict().default({ level: 'info' }),
  })
  .strict();

/**
 * The two link profiles (docs/traffic.md, measured by bench/idle-traffic): what an idle probe
 * costs is the keepalive exchange (about 250 bytes on the wire over MQTTS) every keepalive, plus
 * a full state every stateInterval; a change is published when it happens either way.
 */
export const LINK_PROFILES = {
  default: { keepaliveSeconds: 300, stateIntervalMs: 3_600_000, checkIntervalMs: 15_000 },
  metered: { keepaliveSeconds: 1200, stateIntervalMs: 6 * 3_600_000, checkIntervalMs: 60_000 },
} as const;

type Parsed = z.infer<typeof configSchema>;

/** The parsed config: every path absolute, the state folder always decided, the profile's defaults filled in. */
export type AgentConfig = Readonly<
  Omit<Parsed, 'state' | 'report' | 'mqtt'> & {
    state: string;
    report: { readonly stateIntervalMs: number; readonly checkIntervalMs: number };
    mqtt: { readonly keepaliveSeconds: number };
  }
>;

export function parseAgentConfig(json: unknown, baseDir: string): AgentConfig {
  const r = configSchema.safeParse(json);
  if (!r.success) {
    const i = r.error.issues[0]!;
    const where = i.path.join('.') || '(root)';
    const message = i.code === 'unrecognized_keys' ? `unknown key ${(i as { keys: string[] }).keys.map((k) => (where === '(root)' ? k : `${where}.${k}`)).join(', ')}` : `${where}: ${i.message}`;
    throw new LinkError('AGENT_CONFIG_INVALID', `agent config: ${message}`);
  }
  const c = r.data;
  const abs = (p: string): string => resolve(baseDir, p);
  const profile = LINK_PROFILES[c.profile];
  return Object.freeze({
    ...c,
    report: { stateIntervalMs: c.report.stateIntervalMs ?? profile.stateIntervalMs, checkIntervalMs: c.report.checkIntervalMs ?? profile.checkIntervalMs },
    mqtt: { keepaliveSeconds: c.mqtt.keepaliveSeconds ?? profile.keepaliveSeconds },
    root: abs(c.root),
    state: c.state !== undefined ? abs(c.state) : defaultStateFor(abs(c.root)),
    credentials: abs(c.credentials),
    ...(c.keyring ? { keyring: abs(c.keyring) } : {}),
    ...(c.recipientKey ? { recipientKey: abs(c.recipientKey) } : {}),
    ...(c.inbox ? { inbox: abs(c.inbox) } : {}),
    drop: { ...c.drop, ...(c.drop.outbox !== undefined ? { outbox: abs(c.drop.outbox) } : {}) },
  });
}

export async function loadAgentConfig(path: string): Promise<AgentConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new LinkError('AGENT_CONFIG_INVALID', `agent config ${path} cannot be read`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new LinkError('AGENT_CONFIG_INVALID', `agent config ${path} is not JSON`, { cause: e });
  }
  return parseAgentConfig(json, dirname(resolve(path)));
}
