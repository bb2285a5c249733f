import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

/**
 * bench/lab-up (issue 6): wall time from `sonde lab up --count N` to the command's return, which
 * happens once the fleet server reports all N probes online, healthy, at the line's version.
 * Targets: 1 probe <= 2 s, 10 <= 10 s, 50 <= 45 s. Each N runs in a fresh lab:
 *
 * - "cold": the lab's first `up`, so it includes making the bridge and starting the lab's own
 *   fleet server (a CA and a TLS certificate at its first start);
 * - "warm": `up` into a lab whose server is already running (the lab was brought up with one
 *   probe first, which is not counted), which is what the targets are about: probes in seconds.
 *
 * Each timed step starts 8 s after the previous step, whose teardown the kernel finishes late.
 * The sample packs and the line's probe layer are built once before any timing (a fresh
 * SONDE_LAB_HOME unless --home is given), as they are cached for every later lab.
 */
const SONDE = resolve('dist/cli/src/sonde.js');

function sonde(args: string[], home: string): Promise<{ ms: number; stdout: string; stderr: string }> {
  const t0 = process.hrtime.bigint();
  return new Promise((done, fail) => {
    execFile(process.execPath, [SONDE, ...args], { env: { ...process.env, SONDE_LAB_HOME: home, SONDE_SERVER: '', SONDE_TOKEN: '' }, maxBuffer: 8 << 20, timeout: 600_000 }, (err, stdout, stderr) => {
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      if (err) fail(new Error(`sonde ${args.join(' ')} failed: ${stderr.trim().split('\n').slice(-3).join(' / ')}`));
      else done({ ms, stdout, stderr });
    });
  });
}

const TARGETS: Record<number, number> = { 1: 2, 10: 10, 50: 45 };

/**
 * Tearing down a lab (containers, network namespaces, veths) goes on in the kernel after `down`
 * returns; with 50 probes the load average reached 38 here. Each timed step starts after a pause.
 */
const settle = (): Promise<void> => new Promise((r) => setTimeout(r, 8000));

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { counts: { type: 'string', default: '1,10,50' }, runs: { type: 'string', default: '1' }, line: { type: 'string', default: 'stable' }, home: { type: 'string' } },
  });
  const counts = values.counts.split(',').map(Number);
  const runs = Number(values.runs);
  const home = values.home ? resolve(values.home) : await mkdtemp(join(tmpdir(), 'sonde-bench-lab-'));
  const lab = `bench${process.pid % 10000}`;
  console.log(`bench/lab-up: lab home ${home}, line ${values.line}, counts ${counts.join(', ')}, ${runs} run(s) each`);
  try {
    // Warm the caches (sample packs, the line's layer) outside any timing.
    const prep = await sonde(['lab', 'up', '--count', '1', '--line', values.line, '--lab', lab, '--timeout', '300'], home);
    console.log(`  preparing the images and a first lab: ${(prep.ms / 1000).toFixed(1)} s (not counted)`);
    await sonde(['lab', 'down', '--all', '--lab', lab], home);
    for (const n of counts) {
      for (let r = 0; r < runs; r++) {
        await settle();
        const cold = await sonde(['lab', 'up', '--count', String(n), '--line', values.line, '--lab', lab, '--timeout', '300'], home);
        await sonde(['lab', 'down', '--all', '--lab', lab], home);
        await sonde(['lab', 'up', '--count', '1', '--line', values.line, '--lab', lab, '--timeout', '300'], home);
        await settle();
        const warm = await sonde(['lab', 'up', '--count', String(n), '--line', values.line, '--lab', lab, '--timeout', '300'], home);
        const names = warm.stdout.trim().split('\n').length;
        await sonde(['lab', 'down', '--all', '--lab', lab], home);
        const target = TARGETS[n];
        const line = `  N=${String(n).padStart(3)}  warm ${(warm.ms / 1000).toFixed(2).padStart(6)} s  cold (server start included) ${(cold.ms / 1000).toFixed(2).padStart(6)} s  ${target ? `target <= ${target} s: ${warm.ms / 1000 <= target ? 'met' : 'NOT met'}` : ''}  (${names} names printed)`;
        console.log(line);
      }
    }
  } finally {
    await sonde(['lab', 'down', '--all', '--lab', lab], home).catch(() => undefined);
    if (!values.home) await rm(home, { recursive: true, force: true });
  }
}

await main();
