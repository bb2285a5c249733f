import type { Command } from 'commander';
import { useJsonOutput } from '../../../base/src/cli/run-command.js';

export interface VerifyFlags {
  keyring: string;
  key?: string;
  passphraseFile?: string;
  extract?: string;
  json?: boolean;
}

/** `sonde verify` and `sonde inspect`: the probe's own judgement of a pack, usable anywhere. */
export function registerVerifyCommands(program: Command): void {
  program
    .command('verify')
    .description('check a pack against a keyring: signature, chain, revocation, payload hashes; decrypt and extract with --key')
    .argument('<pack>', 'the .spk file')
    .requiredOption('--keyring <path>', 'a root certificate file, or a folder of *.crt roots plus revocations.json')
    .option('--key <file>', 'recipient private key: decrypt and check every payload down to its files')
    .option('--passphrase-file <file>', 'passphrase of an encrypted recipient key')
    .option('--extract <dir>', 'keep the extracted payloads in this new or empty folder')
    .option('--json', 'machine-readable result')
    .action(async (pack: string, flags: VerifyFlags) => {
      useJsonOutput(flags.json === true);
      const { verifyCommand } = await import('./verify-action.js');
      process.exitCode = await verifyCommand(pack, flags);
    });

  program
    .command('inspect')
    .description('show a pack: manifest, signer and chain, payloads, recipients (nothing is verified, no secret is shown)')
    .argument('<pack>', 'the .spk file')
    .option('--json', 'machine-readable output')
    .action(async (pack: string, flags: { json?: boolean }) => {
      useJsonOutput(flags.json === true);
      const { inspectCommand } = await import('./inspect-action.js');
      await inspectCommand(pack, flags);
    });
}
