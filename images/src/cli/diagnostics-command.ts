import type { Command } from 'commander';
import { useJsonOutput } from '../../../base/src/cli/run-command.js';

/**
 * `sonde diagnostics request` and `sonde diagnostics open`: diagnostics through the FTP drop, for
 * a probe without a link to its fleet server (docs/ftp-drop.md, "Diagnostics through the drop").
 * Support signs a request with a code-signing key the probes trust, naming the recipient
 * certificate the answer is sealed to; an operator puts it on the drop and fetches the sealed
 * bundle from the outbox; support opens it with the recipient key.
 */
export interface RequestFlags {
  probe: string[];
  sign: string;
  cert: string;
  passphraseFile?: string;
  recipient: string;
  valid: string;
  reason?: string;
  output: string;
  json?: boolean;
}

export interface OpenFlags {
  key: string;
  passphraseFile?: string;
  output: string;
  json?: boolean;
}

const collect = (value: string, previous: string[] = []): string[] => [...previous, value];

export function registerDiagnosticsCommand(program: Command): void {
  const diagnostics = program.command('diagnostics').description('diagnostics through the FTP drop: a signed request in, a sealed bundle out');
  diagnostics
    .command('request')
    .description('write a signed diagnostics request (NAME.sdr) for the FTP drop of the probes named')
    .requiredOption('--probe <id>', 'a probe that answers it (repeatable)', collect)
    .requiredOption('--sign <key>', 'signer private key (PEM): a code-signing key the probes trust')
    .requiredOption('--cert <chain>', 'signer certificate chain (PEM: signer, then intermediates)')
    .option('--passphrase-file <file>', 'passphrase of an encrypted signer key')
    .requiredOption('--recipient <cert>', 'the recipient certificate the bundle is sealed to (sonde keys issue-recipient)')
    .option('--valid <duration>', 'how long the probes accept it (e.g. 2d; at most 30d)', '7d')
    .option('--reason <text>', 'why (kept in the probe\'s log)')
    .requiredOption('-o, --output <file>', 'where to write the request (ends in .sdr)')
    .option('--json', 'print the result as JSON')
    .action(async (flags: RequestFlags) => {
      useJsonOutput(flags.json === true);
      const { requestAction } = await import('./diagnostics-actions.js');
      await requestAction(flags);
    });
  diagnostics
    .command('open')
    .description('unseal a bundle a probe wrote to its drop outbox, with the recipient key')
    .argument('<file>', 'the .tar.gz.sealed file')
    .requiredOption('--key <file>', 'the recipient private key (PEM)')
    .option('--passphrase-file <file>', 'passphrase of an encrypted recipient key')
    .requiredOption('-o, --output <file>', 'where to write the bundle (tar.gz)')
    .option('--json', 'print the result as JSON')
    .action(async (file: string, flags: OpenFlags) => {
      useJsonOutput(flags.json === true);
      const { openAction } = await import('./diagnostics-actions.js');
      await openAction(file, flags);
    });
}
