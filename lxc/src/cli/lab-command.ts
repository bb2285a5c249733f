import type { Command } from 'commander';
import { useJsonOutput } from '../../../base/src/cli/run-command.js';

/**
 * `sonde lab …` (docs/lab.md): virtual probes as LXC containers on a lab bridge. Registration
 * only; the actions import the lab when they run.
 */
/**
 * A probe is named `<lab>-NN`: without --lab, a command on one probe works on the lab its name
 * says (`sonde lab logs demo-02`), instead of the default lab.
 */
export function labOfProbe<F extends { lab: string }>(name: string | undefined, flags: F, cmd: Command): F {
  if (name === undefined || cmd.getOptionValueSource('lab') !== 'default') return flags;
  const m = /^([a-z][a-z0-9]{0,11})-\d{2,}$/.exec(name);
  return m ? { ...flags, lab: m[1]! } : flags;
}

export function registerLabCommand(program: Command): void {
  const lab = program.command('lab').description('virtual probes in LXC containers on a private bridge, joined to a fleet server');
  const labOpt = (c: Command): Command => c.option('--lab <name>', 'which lab (each has its own bridge, containers and server)', 'lab');

  labOpt(lab.command('up'))
    .description('bring up N probes on a release line; returns when the fleet server reports all healthy, and prints their names')
    .option('--count <n>', "how many probes (default 1, or the profile's count)")
    .option('--line <line>', 'old-stable (1.0.0), stable (1.1.0) or beta (1.1.1); default stable')
    .option('--config <lab.json>', "the vendor's lines and named probe profiles (docs/lab.md); with --profile")
    .option('--profile <name>', 'the profile of --config to bring up: its line, PID 1, site variables and count')
    .option('--server <url>', "join this fleet server instead of the lab's own (or SONDE_SERVER)")
    .option('--token <token>', 'an admin token of that server (or SONDE_TOKEN)')
    .option('--timeout <seconds>', 'how long to wait for the probes to report healthy', '120')
    .option('--quiet', 'print only the names')
    .option('--backend <engine>', 'lxc (default), podman (through testcontainers) or qemu (--vm); or SONDE_LAB_BACKEND. A lab keeps the engine it was made with')
    .option('--init <init>', "the probes' PID 1: busybox (default) or systemd (the app then runs as systemd units; lxc only)")
    .option('--vm', 'QEMU probes instead of containers: a real disk with A/B partitions booted through GRUB (TCG), on the lab bridge (docs/slots.md); the same as --backend qemu')
    .option('--bootloader <bootloader>', "with --vm: what boots the probes, grub (default) or uboot (Debian's U-Boot ROM and a boot script; docs/slots.md)")
    .action(async (flags) => {
      const { upAction } = await import('./lab-actions.js');
      await upAction(flags);
    });

  labOpt(lab.command('ls'))
    .description("the lab's probes: container state, address, and what the fleet server reports")
    .option('--json', 'machine-readable output')
    .action(async (flags) => {
      useJsonOutput(flags.json === true);
      const { lsAction } = await import('./lab-actions.js');
      await lsAction(flags);
    });

  labOpt(lab.command('down'))
    .description('remove one probe, or with --all every probe, the bridge, the lab server and the lab folder')
    .argument('[name]', 'the probe to remove (none with --all)')
    .option('--all', 'everything the lab made')
    .action(async (name: string | undefined, flags, cmd: Command) => {
      const { downAction } = await import('./lab-actions.js');
      await downAction(name, labOfProbe(name, flags, cmd));
    });

  lab
    .command('prune')
    .description('remove the cached images (under the lab home) of earlier builds: what no lab uses and nothing used lately')
    .option('--keep <duration>', 'keep what was used more recently than this (30m, 2h, 7d)', '1h')
    .option('--dry-run', 'say what would go, remove nothing')
    .option('--json', 'machine-readable output')
    .action(async (flags) => {
      useJsonOutput(flags.json === true);
      const { pruneAction } = await import('./lab-actions.js');
      await pruneAction(flags);
    });

  labOpt(lab.command('shell'))
    .description('an interactive shell inside a probe')
    .argument('<name>', 'the probe')
    .action(async (name: string, flags, cmd: Command) => {
      const { shellAction } = await import('./lab-actions.js');
      await shellAction(name, labOfProbe(name, flags, cmd));
    });

  labOpt(lab.command('logs'))
    .description("a probe's logs: the agent's (default), the app's, the FTP server's or its boot")
    .argument('<name>', 'the probe')
    .option('--source <which>', 'agent, app, ftp or boot', 'agent')
    .option('--lines <n>', 'only the last N lines')
    .action(async (name: string, flags, cmd: Command) => {
      const { logsAction } = await import('./lab-actions.js');
      await logsAction(name, labOfProbe(name, flags, cmd));
    });

  labOpt(lab.command('ftp-put'))
    .description("upload a pack to a probe's FTP drop (as NAME.part, renamed when complete)")
    .argument('<name>', 'the probe')
    .argument('<pack>', 'the .spk file to upload')
    .action(async (name: string, pack: string, flags, cmd: Command) => {
      const { ftpPutAction } = await import('./lab-actions.js');
      await ftpPutAction(name, pack, labOfProbe(name, flags, cmd));
    });
}
