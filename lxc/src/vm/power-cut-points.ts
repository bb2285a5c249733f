/**
 * Persistence points for the power-cut harness (docs/slots.md, "Power cuts"): read from a console
 * recorded with SONDE_FAULT_TRACE, one plan per point, boot of the disk and process; named as the
 * bench prints them and read back from that name (a test's SONDE_VM_POINTS).
 */

/**
 * Right after a persistence point: `at` is a SONDE_CRASH_AT spec (`point[:file]#n`, n counting
 * within one process), `role` the process that passes it (the agent, or the installer it forks),
 * `boot` which boot of the disk (1: the install; 2: the first boot of the new slot).
 */
export interface PointPlan {
  readonly kind: 'point';
  readonly at: string;
  readonly role?: 'agent' | 'installer';
  readonly boot?: number;
}

/** How a point plan reads in a report: `boot 2 agent commit:persisted#1`. */
export function pointName(p: PointPlan): string {
  return [p.boot !== undefined ? `boot ${p.boot}` : null, p.role ?? null, p.at].filter(Boolean).join(' ');
}

/** pointName read back (a test's SONDE_VM_POINTS takes what the bench prints): `[boot N] [agent|installer] spec`. */
export function parsePointName(text: string): PointPlan {
  const m = /^\s*(?:boot (\d+) )?(?:(agent|installer) )?(\S+)\s*$/.exec(text);
  if (!m) throw new Error(`not a persistence point: "${text}" (expected "[boot N] [agent|installer] point[:file]#n")`);
  return { kind: 'point', at: m[3]!, ...(m[2] ? { role: m[2] as 'agent' | 'installer' } : {}), ...(m[1] ? { boot: Number(m[1]) } : {}) };
}

/**
 * A file name known only at run time (a deployment id, a timestamp, a key id) as a pattern that
 * matches it in another run: each run of 6 or more hex digits becomes `*`.
 */
export function stableName(detail: string): string {
  return detail.replace(/[0-9a-f]{6,}/g, '*');
}

/**
 * The persistence points in a recorded console (SONDE_FAULT_TRACE lines), in the order passed:
 * for each boot of the disk and each process role, every point as a SONDE_CRASH_AT spec whose
 * `#n` counts it within its process. A point passed again by a later process of the same role in
 * the same boot (an agent restarted) is the same plan: cutting at its first pass is enough.
 */
export function pointsOf(console: string): PointPlan[] {
  const plans: PointPlan[] = [];
  const seen = new Map<string, number>();
  let boot = 0;
  for (const m of console.matchAll(/sonde-vm: booted slot \S+ \(\S+\) boot (\d+)|sonde-point: (\d+) (agent|installer) (\S+)/g)) {
    if (m[1] !== undefined) {
      boot = Number(m[1]);
      continue;
    }
    const [, , pid, role, raw] = m;
    const c = raw!.indexOf(':', raw!.indexOf(':') + 1);
    const at0 = c > 0 && raw!.startsWith('write:') ? `${raw!.slice(0, c)}:${stableName(raw!.slice(c + 1))}` : raw!;
    // Keyed by boot too: a process of a later boot can get the same pid (the guest boots alike).
    const key = `${boot} ${pid} ${at0}`;
    const n = (seen.get(key) ?? 0) + 1;
    seen.set(key, n);
    const plan: PointPlan = { kind: 'point', at: `${at0}#${n}`, role: role as 'agent' | 'installer', boot };
    if (!plans.some((p) => pointName(p) === pointName(plan))) plans.push(plan);
  }
  return plans;
}
