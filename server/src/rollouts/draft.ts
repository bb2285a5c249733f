import { setImmediate as nextTurn } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { ServerError } from '../errors.js';
import semver from 'semver';
import type { PackRecord, Store } from '../store/types.js';
import type { RolloutDefinition } from './definition.js';
import type { Actor } from './engine.js';
import { previousEnvironment, type Environment } from './environments.js';
import { planRollout } from './plan.js';
import type { AgentFirst, RolloutRecord, TargetRecord } from './rollout-repository.js';

/**
 * A rollout written as a draft: the pack, the promotion gate, the target's probes and the plan
 * checked against this server's store, then the pack pinned and the rollout and its targets
 * stored. `POST /api/v1/rollouts` goes through here (and starts it unless asked for a draft), and
 * so does `sonde server import` for the rollout definitions an export carries: one door.
 */
export interface Draft {
  readonly record: RolloutRecord;
  /** How many probes the target addresses, and the planned wave sizes (the start's detail). */
  readonly probes: number;
  readonly waveSizes: readonly number[];
}

export async function draftRollout(store: Store, d: RolloutDefinition, who: Actor, at: string): Promise<Draft> {
  const pack = await store.packs.get(d.packSha256);
  if (!pack) throw new ServerError('PACK_NOT_FOUND', `no pack ${d.packSha256}`);
  if (d.environment) await checkPromotion(store, d.packSha256, d.environment);
  const agentFirst = d.agentPackSha256 === undefined ? null : await agentFirstOf(store, pack, d.agentPackSha256);
  if (d.target.probeIds) {
    const known = new Set(await store.probes.match({ probeIds: d.target.probeIds }));
    const missing = d.target.probeIds.filter((id) => !known.has(id));
    if (missing.length) throw new ServerError('PROBE_NOT_FOUND', `no probe ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`);
  }
  const ids = await store.probes.match(d.target);
  if (ids.length === 0) throw new ServerError('ROLLOUT_TARGET_EMPTY', `the target ${JSON.stringify(d.target)} addresses no probe`);
  const canary = d.strategy.canary;
  if (canary && 'probeIds' in canary) {
    const inTarget = new Set(ids);
    const outside = canary.probeIds.filter((id) => !inTarget.has(id));
    if (outside.length) throw new ServerError('BODY_INVALID', `body.strategy.canary.probeIds: ${outside.slice(0, 5).join(', ')} not in the target`);
  }
  // Creating a rollout of 10,000 probes takes a few hundred milliseconds: the event loop gets
  // a turn between its steps, so that the probes' states keep being ingested meanwhile.
  await nextTurn();
  const probes = await store.probes.planning(ids, pack.summary.version);
  await nextTurn();
  const id = `ro-${randomBytes(6).toString('hex')}`;
  const plan = planRollout({ rolloutId: id, probes, strategy: d.strategy, pack: { product: pack.summary.product, version: pack.summary.version } });
  if (plan.waveSizes.length === 0) {
    throw new ServerError('ROLLOUT_TARGET_EMPTY', `every probe the target addresses (${ids.length}) already runs ${pack.summary.product} ${pack.summary.version}`);
  }
  const record: RolloutRecord = {
    id,
    name: d.name ?? null,
    packSha256: pack.sha256,
    packVersion: pack.summary.version,
    packProduct: pack.summary.product,
    environment: d.environment ?? null,
    target: d.target,
    strategy: d.strategy,
    windows: d.windows,
    download: d.download ?? null,
    agentFirst,
    state: 'draft',
    wave: -1,
    waveCount: plan.waveSizes.length,
    hasCanary: plan.hasCanary,
    waitUntil: null,
    pausedReason: null,
    createdBy: who.actor,
    createdByName: who.actorName,
    createdAt: at,
    startedAt: null,
    updatedAt: at,
    finishedAt: null,
  };
  const targets: TargetRecord[] = plan.targets.map((t) => ({
    rolloutId: id,
    probeId: t.probeId,
    wave: t.wave,
    position: t.position,
    state: t.skipReason ? 'skipped' : 'pending',
    attempt: 1,
    commandId: null,
    errorCode: null,
    deploymentId: null,
    skipReason: t.skipReason,
    acknowledged: false,
    sentAt: null,
    updatedAt: at,
    finishedAt: t.skipReason ? at : null,
  }));
  // The pin first: a crash before the rollout row leaves a pin too many, never a rollout whose
  // pack was collected.
  await store.packs.pin(pack.sha256, `rollout:${id}`);
  if (agentFirst) await store.packs.pin(agentFirst.packSha256, `rollout:${id}`);
  await nextTurn();
  await store.rollouts.create(record, targets);
  return { record, probes: ids.length, waveSizes: plan.waveSizes };
}

/** The agent update a rollout names: an agent pack, new enough for the pack's minAgentVersion. */
async function agentFirstOf(store: Store, pack: PackRecord, sha256: string): Promise<AgentFirst> {
  const agent = await store.packs.get(sha256);
  if (!agent) throw new ServerError('PACK_NOT_FOUND', `no pack ${sha256} (agentPackSha256)`);
  if (agent.summary.kind !== 'agent') throw new ServerError('BODY_INVALID', `body.agentPackSha256: pack ${sha256.slice(0, 12)}… is a ${agent.summary.kind} pack, not an agent pack`);
  const min = pack.manifest.minAgentVersion;
  if (min === undefined) throw new ServerError('BODY_INVALID', 'body.agentPackSha256: the pack names no minAgentVersion, so no probe needs an agent update first');
  if (semver.lt(agent.summary.version, min)) throw new ServerError('BODY_INVALID', `body.agentPackSha256: agent ${agent.summary.version} is older than the pack's minAgentVersion ${min}`);
  return { packSha256: agent.sha256, version: agent.summary.version, minAgentVersion: min };
}

/** The gate: the environment before completed this pack, and someone approved the promotion. */
async function checkPromotion(store: Store, sha256: string, env: Environment): Promise<void> {
  const prev = previousEnvironment(env);
  if (!prev) return;
  const done = await store.rollouts.completedIn(sha256, prev);
  const approved = await store.rollouts.promotionApproval(sha256, env);
  if (done && approved) return;
  const missing = [...(done ? [] : [`no rollout of this pack completed in ${prev}`]), ...(approved ? [] : [`no approval to promote it to ${env}`])];
  throw new ServerError('PROMOTION_REQUIRED', `pack ${sha256.slice(0, 12)}… cannot be rolled out in ${env}: ${missing.join('; ')}`);
}
