import type { Command } from 'commander';

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('the main job on embedded defaults: a fleet server, 3 LXC probes, a canary-then-all rollout of the next release')
    .option('--out <dir>', 'where the demo writes its files', 'demo-out')
    .option('--local', 'probes as local processes, without LXC (chosen by itself when LXC cannot run)')
    .action(async (flags: { out: string; local?: boolean }) => {
      const { Lab } = await import('../../../lxc/src/lab.js');
      const { DEMO_LAB, runFleetDemo } = await import('../demo/fleet-demo.js');
      const why = flags.local ? 'asked for with --local' : (await Lab.open(DEMO_LAB)).unsupported();
      if (why === null) {
        process.exitCode = (await runFleetDemo(flags.out)) ? 0 : 1;
        return;
      }
      process.stdout.write(`LXC probes cannot run here (${why}): falling back to probes as local processes.\n`);
      const { runLocalDemo } = await import('../demo/local-demo.js');
      process.exitCode = (await runLocalDemo(flags.out)) ? 0 : 1;
    });
}
