import type { Command } from 'commander';
import { useJsonOutput } from '../../../base/src/cli/run-command.js';
import { CliError } from '../../../base/src/cli/cli-error.js';

/**
 * `sonde server …` (docs/server.md). Registration only: each action imports its module when it
 * runs, so `sonde agent …` on a probe never loads the server.
 */
const collect = (value: string, previous: string[]): string[] => [...previous, value];

export function registerServerCommand(program: Command): void {
  const server = program
    .command('server')
    .description('the fleet server: packs, inventory, commands, embedded MQTT broker (see the subcommands for local administration)')
    // Not requiredOption: commander would demand it of the subcommands too.
    .option('--config <file>', 'read the options from this JSON file (keys: data, port, listen, …; the command line wins): /etc/sonde/server.json in the Debian package')
    .option('--data <dir>', 'the data directory (created on the first start); required (here or in --config)')
    .option('--port <port>', 'HTTP port on 127.0.0.1', '8440')
    .option('--mqtt-port <port>', 'embedded MQTT broker port (default: --port + 1)')
    .option('--keyring <root.crt>', 'vendor root certificate(s) to trust for uploads (added to the data directory)')
    .option('--listen <addr>', 'also serve HTTPS and MQTTS on this IP address (repeatable)', collect, [])
    .option('--mqtt-url <url>', 'use an external broker (Mosquitto) instead of the embedded one')
    .option('--webhook-url <url>', 'POST a JSON event here when a rollout pauses itself or a probe is stuck')
    .option('--stuck-after <duration>', 'a command silent this long makes a probe.stuck webhook (default 30m)')
    .option('--keep-events <duration>', 'delete probe events older than this (default 90d; each probe keeps its newest 500)')
    .option('--keep-audit <duration>', 'delete audit rows older than this (default 400d; at most 1,000,000 kept)')
    .option('--keep-history <duration>', 'delete finished commands and deployments older than this (default 400d; each probe keeps its newest 100 deployments)')
    .option('--max-pack-size <size>', 'largest pack accepted (default 4G)')
    .option('--log-level <level>', 'fatal, error, warn, info, debug', 'info')
    .action(async (flags, cmd: Command) => {
      let serve = flags;
      if (flags.config) {
        const { readServerConfigFile, mergeServerFlags } = await import('./server-config-file.js');
        serve = mergeServerFlags(await readServerConfigFile(flags.config), flags, (name) => cmd.getOptionValueSource(name) === 'cli');
      }
      if (!serve.data) throw new CliError('USAGE', 'sonde server needs --data DIR (or "data" in --config)');
      const { serveAction } = await import('./server-actions.js');
      await serveAction(serve);
    });

  server
    .command('enroll')
    .description('print the credential file for a probe (a new token; an earlier one stops working)')
    .argument('<probe-id>', 'the probe to enroll (a-z, 0-9, ., _, -; at most 63)')
    .requiredOption('--data <dir>', 'the server data directory')
    .option('--server-url <url>', 'the server URL the probe uses (default: the first --listen address of the last start, else loopback)')
    .option('--mqtt-url <url>', 'the MQTT URL the probe uses (default: derived from the server URL)')
    .option('--out <file>', 'write the file (mode 0600) instead of printing it')
    .action(async (probeId: string, flags) => {
      const { enrollAction } = await import('./server-actions.js');
      await enrollAction(probeId, flags);
    });

  server
    .command('token')
    .description('staff tokens')
    .command('create')
    .description('create a staff token (admin): locally with --data, else through the API with an admin token')
    .requiredOption('--role <role>', 'viewer, operator or admin')
    .requiredOption('--name <name>', 'who or what it is for')
    .option('--data <dir>', 'the server data directory (local)')
    .option('--server <url>', 'server URL (or SONDE_SERVER)')
    .option('--token <token>', 'admin token (or SONDE_TOKEN)')
    .option('--ca <file>', 'server CA for https (or SONDE_CA)')
    .option('--json', 'machine-readable output')
    .action(async (flags) => {
      useJsonOutput(flags.json === true);
      const { tokenCreateAction } = await import('./server-actions.js');
      await tokenCreateAction(flags);
    });

  server
    .command('trust')
    .description('the vendor roots uploads are verified against')
    .command('add')
    .description('add a vendor root certificate to the keyring uploads are verified against')
    .argument('<root.crt>', 'the root certificate (PEM)')
    .requiredOption('--data <dir>', 'the server data directory')
    .action(async (cert: string, flags) => {
      const { trustAddAction } = await import('./server-actions.js');
      await trustAddAction(cert, flags);
    });

  server
    .command('gc')
    .description('delete packs nothing references (no unfinished command, no rollout)')
    .requiredOption('--data <dir>', 'the server data directory')
    .option('--older-than <duration>', 'only packs uploaded longer ago', '1d')
    .option('--dry-run', 'list, delete nothing')
    .option('--json', 'machine-readable output')
    .action(async (flags) => {
      useJsonOutput(flags.json === true);
      const { gcAction } = await import('./server-actions.js');
      await gcAction(flags);
    });

  server
    .command('backup')
    .description('a consistent copy of the database and the pack store, taken while the server runs')
    .argument('<file>', 'the backup archive to write (.tar)')
    .requiredOption('--data <dir>', 'the server data directory')
    .action(async (file: string, flags) => {
      const { backupAction } = await import('./server-actions.js');
      await backupAction(file, flags);
    });

  server
    .command('restore')
    .description('a new data directory from a backup')
    .argument('<file>', 'the backup archive to restore')
    .requiredOption('--data <dir>', 'a new or empty directory')
    .action(async (file: string, flags) => {
      const { restoreAction } = await import('./server-actions.js');
      await restoreAction(file, flags);
    });

  server
    .command('export')
    .description('chosen packs (and rollout definitions) to one file, for an air-gapped server')
    .requiredOption('--data <dir>', 'the server data directory')
    .requiredOption('--out <file>', 'the export file')
    .option('--pack <id>', 'a pack to export: sha256 or the short id `sonde packs` prints (repeatable)', collect, [])
    .option('--all', 'every pack')
    .action(async (flags) => {
      const { exportAction } = await import('./server-actions.js');
      await exportAction(flags);
    });

  server
    .command('import')
    .description('load an export; every pack is verified against this server keyring first')
    .argument('<file>', 'the export file to import')
    .requiredOption('--data <dir>', 'the server data directory')
    .action(async (file: string, flags) => {
      const { importAction } = await import('./server-actions.js');
      await importAction(file, flags);
    });

  server
    .command('mosquitto-config')
    .description('a Mosquitto config, password file and %u pattern ACLs that confine each probe to its topics')
    .requiredOption('--data <dir>', 'the server data directory')
    .requiredOption('--out <dir>', 'where to write mosquitto.conf, passwd and acl')
    .option('--port <port>', 'Mosquitto listener port on 127.0.0.1', '1883')
    .option('--listen <addr>', 'also a TLS listener on this address, under the server CA (repeatable)', collect, [])
    .option('--tls-port <port>', 'port of the TLS listeners', '8883')
    .option('--user <name>', 'the user Mosquitto drops to (it must read the files)')
    .action(async (flags) => {
      const { mosquittoConfigAction } = await import('./server-actions.js');
      await mosquittoConfigAction(flags);
    });
}
