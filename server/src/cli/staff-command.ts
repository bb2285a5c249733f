import type { Command } from 'commander';
import { useJsonOutput } from '../../../base/src/cli/run-command.js';
import { registerRolloutCommands } from './rollout-command.js';

/**
 * The staff CLI against a running server (docs/server.md): `sonde upload`, `sonde packs`,
 * `sonde probes`, `sonde probe`, `sonde rollback`, `sonde cancel`. Server and token from --server/--token or SONDE_SERVER/SONDE_TOKEN.
 */
const collect = (value: string, previous: string[]): string[] => [...previous, value];

function api(cmd: Command): Command {
  return cmd
    .option('--server <url>', 'server URL (or SONDE_SERVER)')
    .option('--token <token>', 'staff token (or SONDE_TOKEN, which keeps it out of ps)')
    .option('--ca <file>', 'server CA for https (or SONDE_CA)')
    .option('--json', 'machine-readable output');
}

export function registerStaffCommands(program: Command): void {
  api(program.command('upload').description('upload a pack to the fleet server (verified there against its keyring)').argument('<pack>', 'the .spk file')).action(
    async (pack: string, flags) => {
      useJsonOutput(flags.json === true);
      const { uploadAction } = await import('./staff-actions.js');
      await uploadAction(pack, flags);
    },
  );

  api(program.command('packs').description('the packs on the fleet server')).action(async (flags) => {
    useJsonOutput(flags.json === true);
    const { packsAction } = await import('./staff-actions.js');
    await packsAction(flags);
  });

  api(program.command('probes').description('the probe inventory'))
    .option('--channel <channel>', 'stable, old-stable or beta')
    .option('--group <group>', 'only probes in this group')
    .option('--tag <tag>', 'only probes with this tag')
    .option('--online', 'only probes online now')
    .option('--offline', 'only probes offline now')
    .action(async (flags) => {
      useJsonOutput(flags.json === true);
      const { probesAction } = await import('./staff-actions.js');
      await probesAction(flags);
    });

  api(
    program
      .command('probe')
      .description('one probe: state, deployments, commands; or change its channel, groups, tags; or `diagnose` it')
      .argument('<id>', 'the probe id')
      .argument('[action]', 'diagnose: ask the probe for a diagnostics bundle'),
  )
    .option('--set-channel <channel>', 'stable, old-stable or beta')
    .option('--add-group <group>', 'repeatable', collect, [])
    .option('--remove-group <group>', 'repeatable', collect, [])
    .option('--add-tag <tag>', 'repeatable', collect, [])
    .option('--remove-tag <tag>', 'repeatable', collect, [])
    .option('--wait', 'diagnose: wait for the bundle and download it')
    .option('-o, --output <file>', 'diagnose: where to write the bundle (implies --wait)')
    .option('--timeout <duration>', 'diagnose: how long --wait waits (e.g. 90s, 5m)', '2m')
    .action(async (id: string, action: string | undefined, flags) => {
      useJsonOutput(flags.json === true);
      if (action === 'diagnose') {
        const { diagnoseAction } = await import('./diagnose-action.js');
        await diagnoseAction(id, flags);
        return;
      }
      if (action !== undefined) {
        const { CliError } = await import('../../../base/src/cli/cli-error.js');
        throw new CliError('USAGE', `unknown action ${JSON.stringify(action)} for sonde probe: the only one is diagnose`);
      }
      const { probeAction } = await import('./staff-actions.js');
      await probeAction(id, flags);
    });

  api(
    program
      .command('rollback')
      .description('return probes to their previous committed release: one probe, a group, or every probe a rollout committed; exits 0 once the commands are queued'),
  )
    .option('--probe <id>', 'a probe to roll back (repeatable)', collect, [])
    .option('--group <group>', 'every probe of a group')
    .option('--rollout <id>', 'every probe the rollout committed (a rollout under way is aborted first)')
    .action(async (flags) => {
      useJsonOutput(flags.json === true);
      const { rollbackAction } = await import('./rollback-action.js');
      await rollbackAction(flags);
    });

  api(
    program
      .command('cancel')
      .description('cancel install and rollback commands: dropped if still queued, a download stopped; an install under way runs to its outcome'),
  )
    .option('--command <id>', 'a command to cancel (repeatable)', collect, [])
    .option('--probe <id>', "every unfinished install and rollback of this probe")
    .action(async (flags) => {
      useJsonOutput(flags.json === true);
      const { cancelAction } = await import('./cancel-action.js');
      await cancelAction(flags);
    });

  registerRolloutCommands(program);
}
