#!/usr/bin/env node
/**
 * bench/power-cut (issue 20): real power cuts of a QEMU probe (TCG, GRUB, the packaged agent)
 * while it installs a system image from its FTP drop: QEMU killed at seeded moments across the
 * whole install (or, with --points, right after each persistence point a recording run saw),
 * booted again, and judged (lxc/src/vm/power-cut.ts): booted slot, slot bytes against the signed
 * image hash, the probe database's integrity and schema, the config, the agent's journal, the
 * bootloader's environment. Every check must say "the whole old release" or "the whole new one".
 * Prints each cut, the cuts per phase, and last: "N cuts, M inconsistent". Target: 0 inconsistent.
 * Usage: node dist/bench/src/power-cut.js [--cuts 10] [--seed 1] [--points] [--window 120] [--dir .bench/power-cut]
 */
import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { labHome } from '../../lxc/src/lab-state.js';
import { cutOnce, recordPoints, schemaOfRelease, seeded, type CutPlan, type CutResult } from '../../lxc/src/vm/power-cut.js';
import { ensureVmImages } from '../../lxc/src/vm/vm-probe.js';

const argv = process.argv.slice(2);
const arg = (name: string, def: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : def;
};
const cuts = Number(arg('cuts', '10'));
const seed = Number(arg('seed', '1'));
const points = argv.includes('--points');
/** Seconds after "install started" a moment may fall in: past the commit after the reboot. */
const windowS = Number(arg('window', '120'));
const work = resolve(arg('dir', '.bench/power-cut'));
const REPO = resolve(import.meta.dirname, '../../..');

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/power-cut needs root (loop devices for the disk image, QEMU)');
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const log = (l: string): void => console.log(l);
  const images = await ensureVmImages(REPO, join(labHome(), 'images'), log);
  const expectedSchemaV2 = await schemaOfRelease('1.1.0', work);
  const o = { images, expectedSchemaV2 };
  let plans: CutPlan[];
  if (points) {
    log('recording the persistence points of a system update (one run, SONDE_FAULT_TRACE)');
    const specs = await recordPoints({ ...o, dir: join(work, 'record') });
    log(`${specs.length} persistence points: ${specs.join(' ')}`);
    plans = specs.slice(0, cuts).map((at) => ({ kind: 'point', at }));
  } else {
    const rnd = seeded(seed);
    plans = Array.from({ length: cuts }, () => ({ kind: 'moment', delayMs: Math.round(rnd() * windowS * 1000) }));
  }
  console.log(`# bench/power-cut ${new Date().toISOString()}: ${plans.length} cuts, ${points ? 'after persistence points' : `seed ${seed}, moments within ${windowS} s of the install's start`}`);
  const results: CutResult[] = [];
  for (const [i, plan] of plans.entries()) {
    const r = await cutOnce(plan, { ...o, dir: join(work, `cut-${i + 1}`) });
    results.push(r);
    const what = plan.kind === 'moment' ? `at +${(plan.delayMs / 1000).toFixed(1)} s` : `after ${plan.at}`;
    console.log(`cut ${i + 1}/${plans.length} ${what}: phase "${r.phase}", ${r.verdict}${r.verdict === 'inconsistent' ? ` ${JSON.stringify(r.checks)}` : ''} (${r.seconds} s)`);
  }
  const byPhase = new Map<string, number>();
  for (const r of results) byPhase.set(r.phase, (byPhase.get(r.phase) ?? 0) + 1);
  console.log(`phases: ${[...byPhase].map(([p, n]) => `${p} ${n}`).join(', ')}`);
  console.log(`ended on the old release ${results.filter((r) => r.verdict === 'old').length}, on the new ${results.filter((r) => r.verdict === 'new').length}`);
  const bad = results.filter((r) => r.verdict === 'inconsistent').length;
  console.log(`${results.length} cuts, ${bad} inconsistent`);
  await rm(work, { recursive: true, force: true });
  if (bad > 0) process.exitCode = 1;
}

main().catch((e: unknown) => {
  console.error((e as Error).stack ?? e);
  process.exit(2);
});
