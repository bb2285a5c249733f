import type { Command } from 'commander';
import { CliError } from '../../../base/src/cli/cli-error.js';
import { useJsonOutput } from '../../../base/src/cli/run-command.js';

export interface AgentFlags {
  root?: string;
  state?: string;
  config?: string;
  keyring?: string;
  key?: string;
  passphraseFile?: string;
  model?: string;
  healthChecks?: number;
  healthInterval?: number;
  healthWindow?: number;
  json?: boolean;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0) throw new CliError('USAGE', `not a positive integer: ${value}`);
  return n;
}

/** --root, --state and --config: where the probe and the agent's state are (docs/agent.md, "Where the state is"). */
function paths(cmd: Command, o: { state?: boolean } = {}): Command {
  cmd.option('--root <dir>', "the probe root (slots, data, etc, …); default: the agent config's root, else /");
  if (o.state !== false) cmd.option('--state <dir>', 'the agent state folder (default: the agent config\'s, else /var/lib/sonde for the root /, else <root>/var/sonde)');
  return cmd.option('--config <file>', 'the agent config to take the root and state from (default $SONDE_AGENT_CONFIG, else /etc/sonde/agent.json when it exists)');
}

function common(cmd: Command): Command {
  return paths(cmd).option('--json', 'machine-readable output');
}

/**
 * `sonde agent …`: the install engine, usable on a probe with no server at all (standalone, like
 * `mender install`). The daemon (`sonde agent run`) drives the same engine.
 */
export function registerAgentCommand(program: Command): void {
  const agent = program.command('agent').description('the probe agent: install packs, status, history, rollback, site variables');

  agent
    .command('run')
    .description('the daemon: FTP drop, MQTT commands with HTTP polling as fallback, state and events to the fleet server')
    .requiredOption('--config <file>', 'the agent config (docs/agent-config.md)')
    .action(async (flags: { config: string }) => {
      const { runDaemon } = await import('../daemon/run.js');
      await runDaemon(flags.config);
    });

  common(
    agent
      .command('install')
      .description('install a pack now: verify, stage into the inactive slot, migrate, switch, health-check, commit or roll back')
      .argument('<pack>', 'the .spk file'),
  )
    .option('--keyring <path>', 'vendor roots: seeds <root>/keyring on a probe that has none')
    .option('--key <file>', 'recipient private key (fleet, group or probe key) for encrypted packs')
    .option('--passphrase-file <file>', 'passphrase of an encrypted recipient key')
    .option('--model <model>', 'the probe model, when <root>/etc/probe.json names none')
    .option('--health-checks <n>', 'consecutive good checks needed to commit (default 3)', positiveInt)
    .option('--health-interval <ms>', 'time between health checks (default 1000)', positiveInt)
    .option('--health-window <ms>', 'time the new release has to become healthy (default 60000)', positiveInt)
    .action(async (pack: string, flags: AgentFlags) => {
      useJsonOutput(flags.json === true);
      const { installAction } = await import('./agent-actions.js');
      process.exitCode = await installAction(pack, flags);
    });

  common(agent.command('status').description('what the probe runs: release, slot, app, database and config versions, last outcome')).action(
    async (flags: AgentFlags) => {
      useJsonOutput(flags.json === true);
      const { statusAction } = await import('./agent-actions.js');
      await statusAction(flags);
    },
  );

  common(agent.command('history').description('every install attempt, newest first, with its outcome and code')).action(async (flags: AgentFlags) => {
    useJsonOutput(flags.json === true);
    const { historyAction } = await import('./agent-actions.js');
    await historyAction(flags);
  });

  common(agent.command('recover').description('finish or roll back an install that a crash or power cut interrupted')).action(async (flags: AgentFlags) => {
    useJsonOutput(flags.json === true);
    const { recoverAction } = await import('./agent-actions.js');
    await recoverAction(flags);
  });

  common(agent.command('rollback').description('return to the previous committed release while its slot is whole'))
    .option('--health-checks <n>', 'consecutive good checks needed (default 3)', positiveInt)
    .option('--health-interval <ms>', 'time between health checks (default 1000)', positiveInt)
    .option('--health-window <ms>', 'time the release has to become healthy (default 60000)', positiveInt)
    .action(async (flags: AgentFlags) => {
      useJsonOutput(flags.json === true);
      const { rollbackAction } = await import('./agent-actions.js');
      process.exitCode = await rollbackAction(flags);
    });

  const vars = agent.command('vars').description('site variables: secrets filled into #{Name} in the config, never shown');
  paths(
    vars
      .command('set')
      .description('set a site variable; the value is read from stdin, or prompted for on a terminal, never from the command line')
      .argument('<name>', 'variable name, e.g. CollectorPassword'),
    { state: false },
  ).action(async (name: string, flags: AgentFlags) => {
    const { varsSetAction } = await import('./agent-actions.js');
    await varsSetAction(name, flags);
  });
  common(vars.command('list').description('the names of the site variables set on this probe (values are never shown)')).action(async (flags: AgentFlags) => {
    useJsonOutput(flags.json === true);
    const { varsListAction } = await import('./agent-actions.js');
    await varsListAction(flags);
  });
  common(
    vars
      .command('needed')
      .description("the site variables a pack's config will need (names only), and which of them this probe lacks: enter them before the install")
      .argument('<pack>', 'the .spk file'),
  )
    .option('--keyring <path>', "vendor roots to verify the pack with (default: the probe's keyring)")
    .option('--key <file>', "recipient private key for an encrypted pack (default: the probe's stored keys)")
    .option('--passphrase-file <file>', 'passphrase of an encrypted recipient key')
    .action(async (pack: string, flags: AgentFlags) => {
      useJsonOutput(flags.json === true);
      const { varsNeededAction } = await import('./vars-needed.js');
      process.exitCode = await varsNeededAction(pack, flags);
    });
}
