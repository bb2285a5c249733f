import { rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { VmBootloader } from '../../../images/src/vm/data-tree.js';
import { serverCheck, type HarnessServer } from './power-cut-net.js';
import { judge, NEW_PACK, phaseOf, verdictOf, type CutPack, type Verdict } from './power-cut-judge.js';
import { pointsOf, type PointPlan } from './power-cut-points.js';
import { VmProbe, type VmImages } from './vm-probe.js';

/**
 * The power-cut harness (docs/slots.md, "Power cuts"): a QEMU probe installs a system image from
 * its FTP drop; QEMU is killed at a chosen moment (the guest's page cache is lost, what its kernel
 * wrote to the virtual disk stays); the probe boots again and settles; then every check says
 * which release the probe is on, and all must say the same (power-cut-judge.ts).
 *
 * A cut lands either at a moment (a delay after the install started, seeded) or right after a
 * persistence point the agent passes (SONDE_CRASH_AT; the agent prints where and stops dead, and
 * the harness cuts when it reads that; power-cut-points.ts).
 *
 * The pack installed is 1.1.0 (old or new are both whole endings), or one that must end on the old
 * release whatever the cut: 1.2.0-bad (its app fails the health gate: the agent rolls back with a
 * reboot, so cuts land in the rollback too) or broken-init (the new slot never comes up: the
 * bootloader's counter alone gives up on it). The fleet server of the run and its check are in
 * power-cut-net.ts.
 */
export type CutPlan = { readonly kind: 'moment'; readonly delayMs: number } | PointPlan;

export interface CutResult {
  readonly plan: CutPlan;
  readonly phase: string;
  readonly verdict: Verdict;
  /** Each check's answer ("old", "new", or what was wrong). */
  readonly checks: Readonly<Record<string, string>>;
  readonly seconds: number;
}

export interface RunOptions {
  readonly dir: string;
  readonly images: VmImages;
  readonly expectedSchemaV2: string;
  readonly log?: (l: string) => void;
  /**
   * How long the probe has to boot and settle after the cut: a reinstall, a reboot and a commit
   * under TCG; with three QEMU probes on two cores that took over 8 minutes once.
   */
  readonly settleMs?: number;
  /** Keep the probe's folder (disk, consoles) for a look, instead of removing it. */
  readonly keep?: boolean;
  /** A fleet server the probe reports to: its view becomes the `server` check. */
  readonly server?: HarnessServer;
  /** This probe's number among those of the run (its address and tap on the server's network). */
  readonly index?: number;
  /** What boots the probe (the same disk boots through either). */
  readonly bootloader?: VmBootloader;
  /** The pack the probe installs (1.1.0 unless said). */
  readonly pack?: CutPack;
}

/** A cut-here line (its point in group 1), or a status line at rest (see VmProbe.settled). */
export const AT_POINT_OR_REST = /sonde-cut-here: (\S+)|sonde-status: \{"inbox":0,"status":\{[^\n]*"boot":\{"type":"block","booted":"(\w+)","primary":"\2"\}[^\n]*"unfinished":null/;

/** One cut: a fresh probe, the install, the cut, the boot after it, the checks. */
export async function cutOnce(plan: CutPlan, o: RunOptions): Promise<CutResult> {
  const t0 = Date.now();
  const probe = new VmProbe(o.dir, o.images, o.bootloader);
  const probeId = `power-cut-${basename(o.dir)}`;
  const index = o.index ?? 1;
  const pack = o.pack ?? NEW_PACK;
  const tap = o.server ? await o.server.network.tap(index) : null;
  const net = tap ? { tap } : {};
  await probe.create();
  try {
    await probe.prepare({
      inbox: [o.images.packs[pack].path],
      agentEnv: plan.kind === 'point' ? crashEnv(plan) : null,
      ...(o.server ? { enrollment: await o.server.enroll(probeId), address: o.server.network.address(index) } : {}),
    });
    const vm = probe.boot(net);
    // A point may come before the install starts (the agent marking its slot good at its start).
    const started = await vm.waitFor(plan.kind === 'point' ? /install started|sonde-cut-here: / : /install started/, 180_000);
    let phase: string;
    if (plan.kind === 'moment') {
      await new Promise((r) => setTimeout(r, plan.delayMs));
      phase = phaseOf(await vm.console());
    } else {
      // The point, or the probe at rest without it: nothing open, the drop empty, and running the
      // slot the bootloader boots next (not the seconds between a rollback's end and its reboot).
      const hit = await vm.waitFor(AT_POINT_OR_REST, 600_000, started.end - started.match[0].length);
      phase = hit.match[1] ? `after ${hit.match[1]}` : 'not reached';
    }
    await probe.cut();
    await probe.prepare({ agentEnv: null });
    probe.boot(net);
    const st = await probe.settled(o.settleMs ?? 900_000);
    const server = o.server ? await serverCheck(o.server, probeId, st, 120_000, o.images.packs[pack].version) : null;
    await probe.cut();
    const checks = await judge(probe, o.images, st, join(o.dir, 'read'), o.expectedSchemaV2, pack);
    if (server !== null) checks.server = server;
    return { plan, phase, verdict: verdictOf(checks, pack), checks, seconds: Math.round((Date.now() - t0) / 1000) };
  } finally {
    await probe.cut().catch(() => undefined);
    if (tap) o.server!.network.removeTap(tap);
    if (!o.keep) await rm(o.dir, { recursive: true, force: true });
  }
}

function crashEnv(p: PointPlan): Record<string, string> {
  return {
    SONDE_CRASH_AT: p.at,
    SONDE_CRASH_CONSOLE: '/dev/console',
    ...(p.role ? { SONDE_CRASH_ROLE: p.role } : {}),
    ...(p.boot !== undefined ? { SONDE_CRASH_BOOT: String(p.boot) } : {}),
  };
}

/** A small seeded generator (mulberry32): the same seed cuts at the same moments. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The persistence points of a system update, recorded in one run (SONDE_FAULT_TRACE): every point
 * the agent passes from its first start to the commit after the reboot (pointsOf), or, for a pack
 * that must fail, to the rollback's end in the old slot. The run without a cut must itself end as
 * the pack should (1.1.0 committed in B; any other pack rolled back, A running): else no point list.
 */
export async function recordPoints(o: RunOptions): Promise<PointPlan[]> {
  const probe = new VmProbe(o.dir, o.images, o.bootloader);
  const pack = o.pack ?? NEW_PACK;
  await probe.create();
  try {
    await probe.prepare({ inbox: [o.images.packs[pack].path], agentEnv: { SONDE_FAULT_TRACE: '/dev/console' } });
    probe.boot();
    const st = await probe.settled(o.settleMs ?? 900_000);
    const want = pack === NEW_PACK ? { slot: 'b', version: o.images.packs[pack].version } : { slot: 'a', version: null };
    if (st.status!.slot !== want.slot || st.status!.version !== want.version) {
      throw new Error(`the recording run of ${pack} ended in slot ${st.status!.slot} on ${st.status!.version}, not in slot ${want.slot} on ${want.version}`);
    }
    const text = await probe.vm.console();
    await probe.cut();
    return pointsOf(text);
  } finally {
    await probe.cut().catch(() => undefined);
    await rm(o.dir, { recursive: true, force: true });
  }
}
