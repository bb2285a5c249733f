import { jsonEnvelope } from '../../../base/src/cli/output.js';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { useJsonOutput } from '../../../base/src/cli/run-command.js';
import type { IssuedPair, RevokeResult, WrittenPair } from '../keys/key-dir.js';
import type { RotateRootResult } from '../keys/rotate-root.js';

/**
 * `sonde keys`: issue the root, intermediate, signer and recipient keys of a keys directory,
 * and revoke certificates (docs/keys.md). key-dir.js, and node-forge behind it, are imported
 * inside the actions so that other subcommands do not pay for loading them.
 */
export function registerKeysCommand(program: Command): void {
  const keys = program
    .command('keys')
    .description('issue keys and certificates into a keys directory, and revoke certificates');

  keys
    .command('init-ca')
    .description('create the root CA: K/root.crt and K/root.key')
    .addOption(dirOption('keys directory K, created if missing'))
    .addOption(new Option('--name <cn>', 'common name (default: "Sonde Root CA")'))
    .addOption(daysOption('20 years'))
    .addOption(passphraseFileOption())
    .addOption(forceOption())
    .addOption(jsonOption())
    .action(async (flags: IssueFlags) => {
      useJsonOutput(flags.json === true);
      const { initCa } = await import('../keys/key-dir.js');
      const result = await initCa(flags.dir, pairOptions(flags));
      print(flags, { command: 'init-ca', ...result }, () => formatPair(result));
    });

  keys
    .command('issue-intermediate')
    .description('create an intermediate CA signed by the root: K/intermediate.crt and K/intermediate.key')
    .addOption(dirOption('keys directory K, holding root.crt and root.key'))
    .addOption(new Option('--name <cn>', 'common name (default: "Sonde Intermediate CA")'))
    .addOption(daysOption("10 years, at most the root's"))
    .addOption(passphraseFileOption())
    .addOption(issuerPassphraseFileOption('root.key'))
    .addOption(forceOption())
    .addOption(jsonOption())
    .action(async (flags: IssueFlags) => {
      useJsonOutput(flags.json === true);
      const { issueIntermediate } = await import('../keys/key-dir.js');
      const result = await issueIntermediate(flags.dir, issueOptions(flags));
      print(flags, { command: 'issue-intermediate', ...result }, () => formatPair(result));
    });

  keys
    .command('issue-signer')
    .description(
      'create a code-signing key, issued by the intermediate if K has one, else by the root: ' +
        'K/signer.crt (leaf, then intermediate) and K/signer.key',
    )
    .addOption(dirOption('keys directory K, holding the issuer'))
    .addOption(new Option('--name <cn>', 'common name (default: "Sonde Signer")'))
    .addOption(new Option('--out <base>', 'file name without extension').default('signer'))
    .addOption(daysOption("3 years, at most the issuer's"))
    .addOption(passphraseFileOption())
    .addOption(issuerPassphraseFileOption("the issuer's key"))
    .addOption(forceOption())
    .addOption(jsonOption())
    .action(async (flags: IssueFlags & { out: string }) => {
      useJsonOutput(flags.json === true);
      const { issueSigner } = await import('../keys/key-dir.js');
      const result = await issueSigner(flags.dir, { ...issueOptions(flags), out: flags.out });
      print(flags, { command: 'issue-signer', ...result }, () => formatPair(result));
    });

  keys
    .command('issue-recipient')
    .description(
      'create a key that packs are encrypted to (fleet, group or probe), issued like a signer: K/<name>.crt and K/<name>.key',
    )
    .addOption(dirOption('keys directory K, holding the issuer'))
    .addOption(
      new Option('--name <name>', 'file name and common name, e.g. fleet, group-lyon, probe-0042').makeOptionMandatory(),
    )
    .addOption(daysOption("10 years, at most the issuer's"))
    .addOption(passphraseFileOption())
    .addOption(issuerPassphraseFileOption("the issuer's key"))
    .addOption(forceOption())
    .addOption(jsonOption())
    .action(async (flags: IssueFlags & { name: string }) => {
      useJsonOutput(flags.json === true);
      const { issueRecipient } = await import('../keys/key-dir.js');
      const result = await issueRecipient(flags.dir, { ...issueOptions(flags), name: flags.name });
      print(flags, { command: 'issue-recipient', ...result }, () => formatPair(result));
    });

  keys
    .command('revoke')
    .description('add a certificate serial to K/revocations.json, signed by the root key')
    .addOption(dirOption('keys directory K, holding root.crt and root.key'))
    .addOption(new Option('--serial <hex>', 'serial number to revoke (hex, colons allowed)').conflicts('cert'))
    .addOption(new Option('--cert <file>', 'revoke the serial of the first certificate in this file'))
    .addOption(new Option('--reason <text>', 'why, recorded in the list (at most 200 characters)'))
    .addOption(issuerPassphraseFileOption('root.key'))
    .addOption(jsonOption())
    .action(async (flags: RevokeFlags) => {
      useJsonOutput(flags.json === true);
      const { revoke } = await import('../keys/key-dir.js');
      const result = await revoke(flags.dir, {
        serial: flags.serial,
        cert: flags.cert,
        reason: flags.reason,
        issuerPassphraseFile: flags.issuerPassphraseFile,
      });
      print(flags, { command: 'revoke', ...result }, () => formatRevoke(result));
    });

  keys
    .command('rotate-root')
    .description(
      "hand the probes' trust from K's root to the root of a successor keys directory: writes the next root " +
        "rotation statement (signed by both roots) into S/rotations/ after K's history, records the hand-over in K/rotated.json, and carries K/revocations.json over to S",
    )
    .addOption(dirOption('keys directory K, holding the current root.crt and root.key'))
    .addOption(new Option('--to <dir>', 'the successor keys directory S, made with "sonde keys init-ca --dir S"').makeOptionMandatory())
    .addOption(issuerPassphraseFileOption('K/root.key'))
    .addOption(new Option('--successor-passphrase-file <file>', 'passphrase file for S/root.key, when it is encrypted'))
    .addOption(new Option('--keep-old', "keep K's root trusted beside the successor (a later rotation drops it)"))
    .addOption(forceOption())
    .addOption(jsonOption())
    .action(async (flags: RotateFlags) => {
      useJsonOutput(flags.json === true);
      const { rotateRoot } = await import('../keys/rotate-root.js');
      const result = await rotateRoot(flags.dir, {
        to: flags.to,
        issuerPassphraseFile: flags.issuerPassphraseFile,
        successorPassphraseFile: flags.successorPassphraseFile,
        keepOld: flags.keepOld,
        force: flags.force,
      });
      print(flags, { command: 'rotate-root', ...result }, () => formatRotation(result));
    });
}

interface RotateFlags extends OutputFlags {
  dir: string;
  to: string;
  issuerPassphraseFile?: string;
  successorPassphraseFile?: string;
  keepOld?: boolean;
  force?: boolean;
}

export function formatRotation(result: RotateRootResult): string {
  const lines = [
    `root rotation ${result.sequence}: ${result.from} -> ${result.to}`,
    `wrote ${result.statement}`,
    `wrote ${result.record} (this root is rotated away)`,
    `  roots after   ${result.roots.join(', ')}`,
    `  history       ${result.history} statement(s); trust packs signed with the successor carry them all`,
  ];
  if (result.revocations) lines.push(`wrote ${result.revocations.path} (revocation list carried over, sequence ${result.revocations.sequence})`);
  return `${lines.join('\n')}\n`;
}

interface OutputFlags {
  json?: boolean;
}

interface IssueFlags extends OutputFlags {
  dir: string;
  name?: string;
  days?: number;
  passphraseFile?: string;
  issuerPassphraseFile?: string;
  force?: boolean;
}

interface RevokeFlags extends OutputFlags {
  dir: string;
  serial?: string;
  cert?: string;
  reason?: string;
  issuerPassphraseFile?: string;
}

function dirOption(help: string): Option {
  return new Option('--dir <dir>', help).makeOptionMandatory();
}

function daysOption(defaultLife: string): Option {
  return new Option('--days <n>', `lifetime in days (default: ${defaultLife})`).argParser(parseDays);
}

function passphraseFileOption(): Option {
  return new Option('--passphrase-file <file>', 'encrypt the new private key with the passphrase in this file');
}

function issuerPassphraseFileOption(whose: string): Option {
  return new Option('--issuer-passphrase-file <file>', `passphrase file for ${whose}, when it is encrypted`);
}

function forceOption(): Option {
  return new Option('--force', 'replace existing files');
}

function jsonOption(): Option {
  return new Option('--json', 'print one JSON object instead of a summary');
}

function parseDays(value: string): number {
  if (!/^[0-9]{1,7}$/.test(value)) throw new InvalidArgumentError('expected a whole number of days');
  return Number(value);
}

function pairOptions(flags: IssueFlags): { name: string | undefined; days: number | undefined; passphraseFile: string | undefined; force: boolean | undefined } {
  return { name: flags.name, days: flags.days, passphraseFile: flags.passphraseFile, force: flags.force };
}

function issueOptions(flags: IssueFlags): ReturnType<typeof pairOptions> & { issuerPassphraseFile: string | undefined } {
  return { ...pairOptions(flags), issuerPassphraseFile: flags.issuerPassphraseFile };
}

function print(flags: OutputFlags, result: object, human: () => string): void {
  process.stdout.write(flags.json === true ? `${jsonEnvelope(result)}\n` : human());
}

export function formatPair(result: WrittenPair | IssuedPair): string {
  const { cert } = result;
  const lines = [
    `wrote ${cert.path} (certificate${result.certificatesInFile > 1 ? ` + ${result.certificatesInFile - 1} of chain` : ''}, 0644)`,
    `wrote ${result.keyPath} (private key, 0600, ${result.keyEncrypted ? 'encrypted' : 'not encrypted'})`,
    `  subject  ${cert.subject}`,
    `  serial   ${cert.serial}`,
    `  sha256   ${cert.fingerprint256}`,
    `  valid    ${cert.notBefore} to ${cert.notAfter}`,
  ];
  if ('issuer' in result) lines.push(`  issuer   ${result.issuer.path} (${result.issuer.name})`);
  return `${lines.join('\n')}\n`;
}

export function formatRevoke(result: RevokeResult): string {
  return result.alreadyRevoked
    ? `serial ${result.serial} is already revoked in ${result.path} (sequence ${result.sequence}); nothing written\n`
    : `revoked serial ${result.serial}: wrote ${result.path} (sequence ${result.sequence}, ${result.revokedCount} revoked)\n`;
}
