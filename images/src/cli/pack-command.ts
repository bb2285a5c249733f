import type { Command } from 'commander';
import { CliError } from '../../../base/src/cli/cli-error.js';
import { useJsonOutput } from '../../../base/src/cli/run-command.js';

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function integer(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0) throw new CliError('USAGE', `not a non-negative integer: ${value}`);
  return n;
}

interface PackFlags {
  kind?: 'product' | 'servicepack' | 'license' | 'trust';
  product?: string;
  version?: string;
  model?: string[];
  requires?: string;
  securityVersion?: number;
  minAgentVersion?: string;
  releaseNotes?: string;
  allowDowngrade?: boolean;
  downgradeFrom?: string;
  compression?: 'gzip' | 'none' | 'auto';
  sign: string;
  cert: string;
  passphraseFile?: string;
  encryptFor?: string[];
  rootRotations?: string;
  output: string;
  json?: boolean;
}

export function registerPackCommand(program: Command): void {
  program
    .command('pack')
    .description('build, sign and optionally encrypt a service pack (.spk) from a folder')
    .argument('<src>', 'a folder packed as one app payload, or a folder with a pack.json recipe')
    .option('--kind <kind>', 'product | servicepack | license | trust | agent')
    .option('--product <name>', 'product name (lower case)')
    .option('--version <semver>', 'release version')
    .option('--model <model>', 'a compatible hardware model (repeatable)', collect)
    .option('--requires <range>', 'installed versions a servicepack applies to (semver range)')
    .option('--security-version <n>', 'anti-rollback counter', integer)
    .option('--min-agent-version <semver>', 'oldest agent that may install it')
    .option('--release-notes <file>', 'release notes (text file)')
    .option('--allow-downgrade', 'sign an explicit allowance to install over a newer release (name it with --downgrade-from)')
    .option('--downgrade-from <semver>', 'the one installed release the downgrade allowance may replace (implies --allow-downgrade)')
    .option('--compression <c>', 'auto | gzip | none (default auto: gzip when it saves at least 10%)')
    .requiredOption('--sign <key>', 'signer private key (PEM)')
    .requiredOption('--cert <chain>', 'signer certificate chain (PEM: signer, then intermediates)')
    .option('--passphrase-file <file>', 'passphrase of an encrypted signer key')
    .option('--encrypt-for <cert>', 'encrypt for this recipient certificate (repeatable)', collect)
    .option('--root-rotations <dir>', 'trust packs: the root rotation history to carry (default: rotations/ beside --cert)')
    .requiredOption('-o, --output <file>', 'where to write the .spk')
    .option('--json', 'print the result as JSON')
    .action(async (src: string, flags: PackFlags) => {
      useJsonOutput(flags.json === true);
      const { packCommand } = await import('../pack/pack-command-action.js');
      await packCommand(src, flags);
    });
}

export type { PackFlags };
