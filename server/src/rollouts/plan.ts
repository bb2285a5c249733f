import { createHash } from 'node:crypto';
import type { PlanningProbe } from '../store/types.js';
import type { Canary, Strategy } from './definition.js';

/**
 * The plan of a rollout: which probe goes in which wave, decided once at creation and stored (a
 * probe that joins the channel later is not added). A pure function, so it is tested on its own.
 *
 * Order: the canary first (the named probes, or probes online now, so that the canary answers
 * quickly), then everyone else in an order shuffled by hash(rollout id, probe id): waves spread
 * over the fleet instead of following the id order (ids often encode sites), and the same rollout
 * always plans the same way. Wave boundaries are the cumulative percentages of the strategy over
 * the probes that will be commanded; a wave that would add nobody is dropped.
 */
export interface PlannedTarget {
  readonly probeId: string;
  /** 0 is the canary when there is one; -1 for a probe left out (skipped) at planning. */
  readonly wave: number;
  readonly position: number;
  readonly skipReason: string | null;
}

export interface Plan {
  readonly targets: readonly PlannedTarget[];
  /** Probes per wave (skipped ones left out). */
  readonly waveSizes: readonly number[];
  readonly hasCanary: boolean;
}

export interface PlanInput {
  readonly rolloutId: string;
  readonly probes: readonly PlanningProbe[];
  readonly strategy: Strategy;
  /** The pack's product and version: probes already running it are skipped (strategy.skipCurrent). */
  readonly pack: { readonly product: string; readonly version: string };
}

export function planRollout(i: PlanInput): Plan {
  const isCurrent = (p: PlanInput['probes'][number]): boolean =>
    i.strategy.skipCurrent && p.state !== null && p.state.version === i.pack.version && (p.state.product === null || p.state.product === i.pack.product);
  const current = i.probes.filter(isCurrent);
  const eligible = i.probes.filter((p) => !isCurrent(p));
  const ranked = eligible.map((p) => ({ p, rank: createHash('sha256').update(`${i.rolloutId}\n${p.id}`).digest('hex') }));
  ranked.sort((a, b) => (a.rank < b.rank ? -1 : a.rank > b.rank ? 1 : 0));
  const shuffled = ranked.map((r) => r.p);

  const canaryIds = chooseCanary(i.strategy.canary, shuffled);
  const ordered = [...shuffled.filter((p) => canaryIds.has(p.id)), ...shuffled.filter((p) => !canaryIds.has(p.id))];
  const n = ordered.length;

  // Cumulative ends of each wave; the canary's end first.
  const ends: number[] = [];
  if (canaryIds.size > 0) ends.push(canaryIds.size);
  for (const pct of i.strategy.waves) {
    const end = Math.min(n, Math.max(Math.ceil((n * pct) / 100 - 1e-9), ends.at(-1) ?? 0));
    if (end > (ends.at(-1) ?? 0)) ends.push(end);
  }
  if (n > 0 && (ends.at(-1) ?? 0) < n) ends.push(n);

  const targets: PlannedTarget[] = [];
  let wave = 0;
  ordered.forEach((p, position) => {
    while (position >= ends[wave]!) wave++;
    targets.push({ probeId: p.id, wave, position, skipReason: null });
  });
  current.forEach((p, k) => targets.push({ probeId: p.id, wave: -1, position: n + k, skipReason: 'already-current' }));
  const waveSizes = ends.map((end, k) => end - (k === 0 ? 0 : ends[k - 1]!));
  return { targets, waveSizes, hasCanary: canaryIds.size > 0 };
}

function chooseCanary(c: Canary | undefined, ordered: readonly PlanInput['probes'][number][]): Set<string> {
  if (!c || ordered.length === 0) return new Set();
  if ('probeIds' in c) {
    const present = new Set(ordered.map((p) => p.id));
    return new Set(c.probeIds.filter((id) => present.has(id)));
  }
  const count = 'probes' in c ? Math.min(c.probes, ordered.length) : Math.max(1, Math.ceil((ordered.length * c.percent) / 100 - 1e-9));
  // Online probes first (stable sort keeps the hash order within each half).
  const byOnline = [...ordered].sort((a, b) => Number(b.online) - Number(a.online));
  return new Set(byOnline.slice(0, count).map((p) => p.id));
}
