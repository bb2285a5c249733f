#!/usr/bin/env node
/**
 * bench/power-cut (issue 20): real power cuts of a QEMU probe (TCG, GRUB, the packaged agent)
 * while it installs a system image from its FTP drop: QEMU killed at seeded moments across the
 * whole install (or, with --points, right after each persistence point a recording run saw),
 * booted again, and judged (lxc/src/vm/power-cut.ts): booted slot, slot bytes against the signed
 * image hash, the probe database's integrity and schema, the config, the agent's journal, the
 * bootloader's environment. Every check must say "the whole old release" or "the whole new one".
 * Prints each cut, the cuts per phase, and last: "N cuts, M inconsistent". Target: 0 inconsistent.
 * Usage: node dist/bench/src/power-cut.js [--cuts 10] [--seed 1] [--points] [--window 120] [--jobs 1] [--from 1] [--bootloader grub|uboot] [--pack 1.1.0|1.2.0-bad|broken-init] [--no-server] [--dir .bench/power-cut]
 * (--jobs: probes cut at the same time, one QEMU each; --cuts with --points: the first N points;
 * --pack 1.2.0-bad: an image whose app fails its health gate, so cuts land in the rollback and
 * every probe must come back on the old release; broken-init: a new slot that never comes up)
 */
import { copyFile, mkdir, readdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import pino from 'pino';
import { labHome } from '../../lxc/src/lab-state.js';
import { startServer } from '../../server/src/server.js';
import { cutOnce, recordPoints, seeded, type CutPlan, type CutResult, type RunOptions } from '../../lxc/src/vm/power-cut.js';
import { CUT_PACKS, schemaOfRelease, type CutPack } from '../../lxc/src/vm/power-cut-judge.js';
import { CutNetwork, harnessServer } from '../../lxc/src/vm/power-cut-net.js';
import { pointName } from '../../lxc/src/vm/power-cut-points.js';
import { killAllQemu } from '../../lxc/src/vm/qemu.js';
import { ensureVmImages } from '../../lxc/src/vm/vm-probe.js';
import { benchArgs } from './bench-args.js';

const USAGE = `Usage: bench/power-cut [--cuts 10] [--seed 1] [--points] [--window 120] [--jobs 1] [--from 1]
                       [--bootloader grub|uboot] [--pack ${CUT_PACKS.join('|')}] [--no-server] [--dir .bench/power-cut]
Real power cuts of a QEMU probe during a system update (docs/slots.md, "Power cuts"); needs root.
The last line: "N cuts, M inconsistent".`;
const { arg, flag, num } = benchArgs(USAGE, { values: ['cuts', 'seed', 'window', 'jobs', 'from', 'bootloader', 'pack', 'dir'], flags: ['points', 'no-server'] });
const points = flag('points');
/** With --points and no --cuts: every point recorded. */
const cuts = num('cuts', points ? Infinity : 10);
const seed = num('seed', 1);
/** The first cut to run (1-based): a campaign split over several runs cuts the same moments (or points) as one. */
const from = Math.max(1, num('from', 1));
/** Seconds after "install started" a moment may fall in: past the commit after the reboot. */
const windowS = num('window', 120);
const work = resolve(arg('dir', '.bench/power-cut'));
const jobs = Math.max(1, num('jobs', 1));
/** What boots the probe: GRUB from the MBR, or Debian's U-Boot ROM (docs/slots.md, "U-Boot"). */
const bootloader = arg('bootloader', 'grub');
if (bootloader !== 'grub' && bootloader !== 'uboot') throw new Error(`--bootloader is grub or uboot, not ${bootloader}`);
/** The pack installed: 1.1.0 (ends old or new), or one that must always end on the old release. */
const pack = arg('pack', '1.1.0') as CutPack;
if (!CUT_PACKS.includes(pack)) throw new Error(`--pack is one of ${CUT_PACKS.join(', ')}, not ${pack}`);
/** Where the consoles of inconsistent probes are kept. */
const failures = `${work}-failures`;
const REPO = resolve(import.meta.dirname, '../../..');

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/power-cut needs root (loop devices for the disk image, QEMU)');
  await rm(work, { recursive: true, force: true });
  await rm(failures, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const log = (l: string): void => console.log(l);
  const images = await ensureVmImages(REPO, join(labHome(), 'images'), log);
  const expectedSchemaV2 = await schemaOfRelease('1.1.0', work);
  // The fleet server on an unrouted bridge of its own, the probes on taps there (power-cut-net.ts).
  const network = flag('no-server') ? null : await CutNetwork.create(join(work, 'net'));
  const server = network ? await startServer({ dataDir: join(work, 'server'), port: 0, listen: [network.net.hostIp], logLevel: 'warn', keyring: images.keys.rootCert }, { logger: pino({ level: 'warn' }) }) : null;
  const o = { images, expectedSchemaV2, pack, bootloader: bootloader as 'grub' | 'uboot', ...(server && network ? { server: harnessServer(server.httpUrls[0]!, server.adminToken!, server.httpUrls.find((u) => u.includes(network.net.hostIp))!, network) } : {}) };
  // Stopped by a signal: no QEMU, tap or bridge of this run is left behind.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      killAllQemu();
      void (network?.close() ?? Promise.resolve()).finally(() => process.exit(130));
    });
  }
  try {
    await campaign(o, log);
  } finally {
    await server?.close();
    await network?.close();
  }
}

async function campaign(o: Omit<RunOptions, 'dir'>, log: (l: string) => void): Promise<void> {
  let plans: CutPlan[];
  if (points) {
    log('recording the persistence points of a system update (one run, SONDE_FAULT_TRACE)');
    const specs = await recordPoints({ ...o, dir: join(work, 'record') });
    log(`${specs.length} persistence points: ${specs.map(pointName).join(', ')}`);
    plans = specs.slice(0, cuts);
  } else {
    const rnd = seeded(seed);
    plans = Array.from({ length: cuts }, () => ({ kind: 'moment', delayMs: Math.round(rnd() * windowS * 1000) }));
  }
  const first = from - 1;
  console.log(`# bench/power-cut ${new Date().toISOString()}: ${plans.length} cuts${first > 0 ? ` (running ${first + 1} to ${plans.length})` : ''}, ${points ? 'after persistence points' : `seed ${seed}, moments within ${windowS} s of the install's start`}, ${jobs} at a time, through ${bootloader}, installing ${pack}${pack === '1.1.0' ? '' : ' (must end on the old release)'}`);
  const results: CutResult[] = [];
  let next = first;
  const worker = async (): Promise<void> => {
    while (next < plans.length) {
      const i = next++;
      const plan = plans[i]!;
      const dir = join(work, `cut-${i + 1}`);
      const r = await cutOnce(plan, { ...o, dir, keep: true, index: i + 1 }).catch(
        (e: unknown): CutResult => ({ plan, phase: 'harness', verdict: 'inconsistent', checks: { error: (e as Error).message.split('\n')[0]! }, seconds: 0 }),
      );
      results.push(r);
      // An inconsistent probe's consoles are kept for a look; the rest of its folder (the disk) goes.
      if (r.verdict === 'inconsistent') {
        const kept = join(failures, `cut-${i + 1}`);
        await mkdir(kept, { recursive: true });
        for (const f of (await readdir(dir).catch(() => [])).filter((n) => n.endsWith('.log'))) await copyFile(join(dir, f), join(kept, f));
      }
      await rm(dir, { recursive: true, force: true });
      const what = plan.kind === 'moment' ? `at +${(plan.delayMs / 1000).toFixed(1)} s` : `after ${pointName(plan)}`;
      console.log(`cut ${i + 1}/${plans.length} ${what}: phase "${r.phase}", ${r.verdict}${r.verdict === 'inconsistent' ? ` ${JSON.stringify(r.checks)}` : ''} (${r.seconds} s)`);
    }
  };
  await Promise.all(Array.from({ length: Math.min(jobs, Math.max(0, plans.length - first)) }, worker));
  const byPhase = new Map<string, number>();
  for (const r of results) byPhase.set(r.phase, (byPhase.get(r.phase) ?? 0) + 1);
  console.log(`phases: ${[...byPhase].map(([p, n]) => `${p} ${n}`).join(', ')}`);
  console.log(`ended on the old release ${results.filter((r) => r.verdict === 'old').length}, on the new ${results.filter((r) => r.verdict === 'new').length}`);
  const bad = results.filter((r) => r.verdict === 'inconsistent').length;
  if (bad > 0) console.log(`the consoles of the inconsistent probes: ${failures}`);
  console.log(`${results.length} cuts, ${bad} inconsistent`);
  await rm(work, { recursive: true, force: true });
  if (bad > 0) process.exitCode = 1;
}

main().catch((e: unknown) => {
  console.error((e as Error).stack ?? e);
  process.exit(2);
});
