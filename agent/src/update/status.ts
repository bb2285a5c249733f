import type { EngineContext } from './context.js';
import { activeAppVersion, probeFacts } from './facts.js';
import type { Deployment } from './journal.js';
import { shownOutcome } from './receipts.js';
import type { SlotInfo } from './slots/backend.js';

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
  readonly slots: readonly SlotInfo[];
  readonly lastOutcome: { readonly id: string; readonly outcome: string; readonly errorCode: string | null; readonly reason: string | null; readonly version: string | null; readonly endedAt: string | null } | null;
  readonly unfinished: { readonly id: string; readonly state: string } | null;
}

export function outcomeOf(d: Deployment): AgentStatus['lastOutcome'] {
  return { id: d.id, outcome: shownOutcome(d), errorCode: d.errorCode, reason: d.errorMessage, version: d.toVersion, endedAt: d.endedAt };
}

export async function readStatus(ctx: EngineContext): Promise<AgentStatus> {
  const facts = await probeFacts(ctx);
  const release = ctx.journal.releases()[0] ?? null;
  const pid = await ctx.runner.running();
  const last = ctx.journal.history(1)[0] ?? null;
  const unfinished = ctx.journal.unfinished();
  return {
    root: ctx.layout.root,
    product: release?.product ?? null,
    version: facts.version,
    appVersion: await activeAppVersion(ctx.layout, facts.slot),
    slot: facts.slot,
    dbVersion: facts.dbVersion,
    configVersion: facts.configVersion,
    securityFloor: ctx.journal.securityFloor(),
    app: { running: pid !== null, pid },
    slots: [await ctx.slots.info('a'), await ctx.slots.info('b')],
    lastOutcome: last && last.endedAt ? outcomeOf(last) : null,
    unfinished: unfinished ? { id: unfinished.id, state: unfinished.state } : null,
  };
}
