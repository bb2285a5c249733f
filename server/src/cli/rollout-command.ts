import type { Command } from 'commander';
import { useJsonOutput } from '../../../base/src/cli/run-command.js';

/**
 * `sonde rollout …` (docs/rollouts.md), against a running server: server and token from
 * --server/--token or SONDE_SERVER/SONDE_TOKEN, as for the rest of the staff CLI.
 */
const collect = (value: string, previous: string[]): string[] => [...previous, value];

function api(cmd: Command): Command {
  return cmd
    .option('--server <url>', 'server URL (or SONDE_SERVER)')
    .option('--token <token>', 'staff token (or SONDE_TOKEN, which keeps it out of ps)')
    .option('--ca <file>', 'server CA for https (or SONDE_CA)')
    .option('--json', 'machine-readable output');
}

export function registerRolloutCommands(program: Command): void {
  const rollout = program.command('rollout').description('staged rollouts: a pack to a target, canary first, then waves');

  api(rollout.command('create').description('create a rollout and start it (operator)'))
    .requiredOption('--pack <id>', 'the pack: its sha256, or the short id `sonde packs` prints (at least 6 hex digits)')
    .option('--name <name>', 'a name shown in listings')
    .option('--environment <env>', 'integration, qa, uat or production (a later one needs the earlier one completed and a promotion approved)')
    .option('--channel <channel>', 'target: stable, old-stable or beta')
    .option('--group <group>', 'target: a group')
    .option('--tag <tag>', 'target: a tag')
    .option('--probe <id>', 'target: a probe (repeatable)', collect, [])
    .option('--agent-below <version>', 'target: probes whose agent is older than this version')
    .option('--agent-first <id>', 'an agent pack that probes whose agent is older than the pack\'s minAgentVersion install first')
    .option('--canary <n|n%>', 'first wave: a number of probes or a percentage')
    .option('--canary-probe <id>', 'first wave: these probes (repeatable)', collect, [])
    .option('--waves <list>', 'cumulative percentages, e.g. 10,50,100 (default 100)')
    .option('--success <fraction|n%>', 'a wave passes at this fraction committed (default 0.9)')
    .option('--error-threshold <fraction|n%>', 'pause by itself above this fraction failed (default 0.1)')
    .option('--wait <duration>', 'between waves, e.g. 30m (default 10m)')
    .option('--approval', 'wait for `sonde rollout approve` before each wave instead')
    .option('--window <HH:MM-HH:MM[@±HH:MM][/days]>', 'maintenance window, when commands may be sent (repeatable)', collect, [])
    .option('--download-cap <rate>', 'each probe downloads the pack at most this fast, bytes per second (e.g. 256k, 2M); a probe\'s own cap may be lower')
    .option('--download-window <HH:MM-HH:MM@Zone>', 'each probe downloads only in this window of local time, in an IANA zone (e.g. 01:00-05:00@Europe/Paris)')
    .option('--keep-current', 'command probes that already report the version too')
    .option('--draft', 'create without starting (`sonde rollout start ID`)')
    .action(async (flags) => {
      useJsonOutput(flags.json === true);
      const { rolloutCreateAction } = await import('./rollout-actions.js');
      await rolloutCreateAction(flags);
    });

  api(rollout.command('status').description('one rollout: progress per wave, window, approvals; without an id, the list').argument('[id]', 'the rollout id (ro-…); none: list the rollouts'))
    .option('--state <states>', 'list only rollouts in these states (comma-separated)')
    .option('--watch', 'follow the rollout live until it completes or is aborted, a line per change')
    .action(async (id: string | undefined, flags) => {
      useJsonOutput(flags.json === true);
      const { rolloutStatusAction } = await import('./rollout-actions.js');
      await rolloutStatusAction(id, flags);
    });

  for (const [action, what] of [
    ['start', 'start a draft rollout'],
    ['pause', 'pause: no further commands are sent'],
    ['resume', 'resume a paused rollout'],
    ['abort', 'abort: probes not yet commanded are skipped, unacknowledged commands cancelled'],
  ] as const) {
    api(rollout.command(action).description(`${what} (operator)`).argument('<id>', 'the rollout id (ro-…)')).action(async (id: string, flags) => {
      useJsonOutput(flags.json === true);
      const { rolloutAction } = await import('./rollout-actions.js');
      await rolloutAction(action, id, flags);
    });
  }

  api(rollout.command('approve').description('approve the next wave (operator), or with --promote the promotion to the next environment (admin)').argument('<id>', 'the rollout id (ro-…)'))
    .option('--promote', "approve promoting this completed rollout's pack to the next environment")
    .action(async (id: string, flags) => {
      useJsonOutput(flags.json === true);
      const { rolloutApproveAction } = await import('./rollout-actions.js');
      await rolloutApproveAction(id, flags);
    });

  api(rollout.command('retry').description('send the failed and rolled-back probes a new command (operator)').argument('<id>', 'the rollout id (ro-…)'))
    .option('--probe <id>', 'only this probe (repeatable)', collect, [])
    .action(async (id: string, flags) => {
      useJsonOutput(flags.json === true);
      const { rolloutRetryAction } = await import('./rollout-actions.js');
      await rolloutRetryAction(id, flags);
    });
}
