import { resolve } from 'node:path';
import type { Command } from 'commander';

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('the main job on embedded defaults: a fleet server, 3 LXC probes, a canary-then-all rollout of the next release')
    .option('--out <dir>', 'where the demo writes its files', 'demo-out')
    .option('--local', 'probes as local processes, without LXC (chosen by itself when LXC cannot run)')
    .option('--stop', 'stop the local-process fleet a --local run left running in --out, and exit')
    .action(async (flags: { out: string; local?: boolean; stop?: boolean }) => {
      if (flags.stop) {
        const { localFleetDir, stopLocalFleet } = await import('../demo/local-fleet.js');
        const dir = localFleetDir(resolve(flags.out));
        const stopped = await stopLocalFleet(dir);
        process.stdout.write(stopped.length ? `stopped in ${dir}:\n${stopped.map((s) => `  ${s}\n`).join('')}` : `nothing runs in ${dir}\n`);
        return;
      }
      const { Lab } = await import('../lab.js');
      const { DEMO_LAB, runFleetDemo, runLocalFleetDemo } = await import('../demo/fleet-demo.js');
      const why = flags.local ? '--local' : (await Lab.open(DEMO_LAB)).unsupported();
      if (why === null) {
        process.exitCode = (await runFleetDemo(flags.out)) ? 0 : 1;
        return;
      }
      process.stdout.write(flags.local ? 'The probes run as local processes, not in LXC containers (asked for with --local).\n' : `LXC probes cannot run here (${why}): the probes run as local processes instead.\n`);
      process.exitCode = (await runLocalFleetDemo(flags.out)) ? 0 : 1;
    });
}
