import { fileURLToPath } from 'node:url';
import { isSondeError } from '../../../base/src/errors/sonde-error.js';
import { exists } from '../../../base/src/fs/exists.js';
import { loadKeyring } from '../../../pack/src/index.js';
import type { EngineContext } from './context.js';
import { activeRelease, probeFacts } from './facts.js';
import { runnerOf, type RunnerType } from './release-info.js';
import type { Deployment } from './journal.js';
import { shownOutcome } from './receipts.js';
import type { SlotInfo } from './slots/backend.js';
import { agentHome, agentSlotStatus, type AgentSlotStatus } from './self-update.js';

/** The packaged agent's folder (/usr/lib/sonde): this program's own, the build's parent of dist/. */
const PACKAGED_AGENT = fileURLToPath(new URL('../../../..', import.meta.url));

/** `sonde agent status`: what the probe runs, read from the disk and the journal. No secrets. */
export interface AgentStatus {
  readonly root: string;
  readonly product: string | null;
  readonly version: string | null;
  readonly appVersion: string | null;
  readonly slot: string | null;
  readonly dbVersion: number | null;
  readonly configVersion: number | null;
  readonly securityFloor: number;
  readonly app: { readonly running: boolean; readonly pid: number | null };
  /** How the active release runs (its release.json `runner`: process, exec or systemd); null without one. */
  readonly runner: RunnerType | null;
  readonly slots: readonly SlotInfo[];
  /** Block slots (docs/slots.md): the slot booted now and the one the bootloader boots next, as `rauc status`. */
  readonly boot: { readonly type: 'dir' | 'block'; readonly booted: string | null; readonly primary: string | null };
  readonly lastOutcome: { readonly id: string; readonly outcome: string; readonly errorCode: string | null; readonly reason: string | null; readonly version: string | null; readonly endedAt: string | null } | null;
  readonly unfinished: { readonly id: string; readonly state: string } | null;
  /** The agent's own A/B (docs/self-update.md): which agent runs, a trial, the last fallback. */
  readonly agent: AgentSlotStatus;
}

/** What the probe trusts: `sonde agent status` shows it (the daemon's state report does not load the keyring). */
export interface TrustStatus {
  /** Roots in the probe's keyring; 0 before the keyring is seeded. */
  readonly roots: number;
  /** The last root rotation the keyring followed (pack/src/root-rotation.ts); 0 when none. */
  readonly rootRotation: number;
  /** The sequence of the revocation list the probe holds (a list never goes back), or null. */
  readonly revocationSequence: number | null;
  /** The newest signed createdAt the probe has accepted: certificates that expired before it are refused. */
  readonly timeFloor: string | null;
  /** Why the keyring could not be read, when it could not (its code). */
  readonly keyringError: string | null;
}

export async function readTrust(ctx: EngineContext): Promise<TrustStatus> {
  const timeFloor = ctx.journal.timeFloor()?.toISOString() ?? null;
  if (!(await exists(ctx.layout.keyring))) return { roots: 0, rootRotation: 0, revocationSequence: null, timeFloor, keyringError: null };
  try {
    const k = await loadKeyring(ctx.layout.keyring);
    return { roots: k.roots.length, rootRotation: k.rotationSequence, revocationSequence: k.revocations?.sequence ?? null, timeFloor, keyringError: null };
  } catch (e) {
    return { roots: 0, rootRotation: 0, revocationSequence: null, timeFloor, keyringError: isSondeError(e) ? e.code : 'KEYRING_INVALID' };
  }
}

export function outcomeOf(d: Deployment): AgentStatus['lastOutcome'] {
  return { id: d.id, outcome: shownOutcome(d), errorCode: d.errorCode, reason: d.errorMessage, version: d.toVersion, endedAt: d.endedAt };
}

export async function readStatus(ctx: EngineContext): Promise<AgentStatus> {
  const facts = await probeFacts(ctx);
  const active = await activeRelease(ctx, facts.slot);
  const release = ctx.journal.releases()[0] ?? null;
  const pid = await ctx.runner.running();
  const last = ctx.journal.history(1)[0] ?? null;
  const unfinished = ctx.journal.unfinished();
  return {
    root: ctx.layout.root,
    product: release?.product ?? null,
    version: facts.version,
    appVersion: active?.version ?? null,
    slot: facts.slot,
    dbVersion: facts.dbVersion,
    configVersion: facts.configVersion,
    securityFloor: ctx.journal.securityFloor(),
    app: { running: pid !== null, pid },
    runner: active ? runnerOf(active).type : null,
    slots: [await ctx.slots.info('a'), await ctx.slots.info('b')],
    boot: { type: ctx.slots.kind, booted: await ctx.slots.active(), primary: await ctx.slots.primary().catch(() => null) },
    lastOutcome: last && last.endedAt ? outcomeOf(last) : null,
    unfinished: unfinished ? { id: unfinished.id, state: unfinished.state } : null,
    agent: await agentSlotStatus(agentHome(ctx.layout), process.env.SONDE_AGENT_PACKAGED ?? PACKAGED_AGENT),
  };
}
