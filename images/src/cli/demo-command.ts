import type { Command } from 'commander';

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('run the demo on embedded defaults (today: keys, a signed and encrypted sample pack, verification)')
    .option('--out <dir>', 'where the demo writes its files', 'demo-out')
    .action(async (flags: { out: string }) => {
      const { runLocalDemo } = await import('../demo/local-demo.js');
      const ok = await runLocalDemo(flags.out);
      process.exitCode = ok ? 0 : 1;
    });
}
