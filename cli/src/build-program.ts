import { Command } from 'commander';
import { registerVerifyCommands } from '../../agent/src/cli/verify-command.js';
import { registerKeysCommand } from '../../images/src/cli/keys-command.js';
import { registerPackCommand } from '../../images/src/cli/pack-command.js';
import { registerDiagnosticsCommand } from '../../images/src/cli/diagnostics-command.js';
import { registerDemoCommand } from '../../lxc/src/cli/demo-command.js';
import { registerAgentCommand } from '../../agent/src/cli/agent-command.js';
import { registerServerCommand } from '../../server/src/cli/server-command.js';
import { registerStaffCommands } from '../../server/src/cli/staff-command.js';
import { registerLabCommand } from '../../lxc/src/cli/lab-command.js';
import { SONDE_VERSION } from '../../base/src/version.js';

/**
 * The one `sonde` command. Each part registers its own subcommands; heavy modules are imported
 * inside the actions so that `sonde agent ...` on a probe never loads the server.
 */
export function buildProgram(): Command {
  const program = new Command('sonde')
    .description('Signed, encrypted, crash-safe updates for fleets of network-supervision probes')
    .version(SONDE_VERSION)
    // Root options only before the subcommand, so `sonde pack --version 1.2.0` is pack's flag.
    .enablePositionalOptions()
    .showHelpAfterError()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) })
    .exitOverride((err) => {
      // commander's own usage errors (unknown option, missing argument) exit 2, like most CLIs.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') process.exit(0);
      process.exit(err.exitCode === 0 ? 0 : 2);
    });

  registerKeysCommand(program);
  registerPackCommand(program);
  registerDiagnosticsCommand(program);
  registerVerifyCommands(program);
  registerAgentCommand(program);
  registerDemoCommand(program);
  registerServerCommand(program);
  registerStaffCommands(program);
  registerLabCommand(program);
  return program;
}
