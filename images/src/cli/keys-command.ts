import { InvalidArgumentError, Option, type Command } from 'commander';
import { useJsonOutput } from '../../../agent/src/cli/run.js';
import type { IssuedPair, RevokeResult, WrittenPair } from '../keys/key-dir.js';

/**
 * `sonde keys`: issue the root, intermediate, signer and recipient keys of a keys directory,
 * and revoke certificates (docs/keys.md). key-dir.js, and node-forge behind it, are imported
 * inside the actions so that other subcommands do not pay for loading them.
 */
export function registerKeysCommand(program: Command): void {
  const keys = program
    .command('keys')
    .description('issue keys and certificates into a keys directory, and revoke certificates');

  withOutputOptions(
    withPairOptions(keys.command('init-ca').description('create the root CA: K/root.crt and K/root.key'), 'Sonde Root CA', 20),
  ).action(async (flags: IssueFlags) => {
    useJsonOutput(flags.json === true);
    const { initCa } = await import('../keys/key-dir.js');
    const result = await initCa(flags.dir, pairOptions(flags));
    print(flags, { command: 'init-ca', ...result }, () => formatPair(result));
  });

  withOutputOptions(
    withIssuerOptions(
      withPairOptions(
        keys
          .command('issue-intermediate')
          .description('create an intermediate CA signed by the root: K/intermediate.crt and K/intermediate.key'),
        'Sonde Intermediate CA',
        10,
      ),
    ),
  ).action(async (flags: IssueFlags) => {
    useJsonOutput(flags.json === true);
    const { issueIntermediate } = await import('../keys/key-dir.js');
    const result = await issueIntermediate(flags.dir, issueOptions(flags));
    print(flags, { command: 'issue-intermediate', ...result }, () => formatPair(result));
  });

  withOutputOptions(
    withIssuerOptions(
      withPairOptions(
        keys
          .command('issue-signer')
          .description(
            'create a code-signing key, issued by the intermediate if K has one, else by the root: K/signer.crt (leaf + chain) and K/signer.key',
          ),
        'Sonde Signer',
        3,
      ),
    ).option('--out <base>', 'file name without extension', 'signer'),
  ).action(async (flags: IssueFlags & { out: string }) => {
    useJsonOutput(flags.json === true);
    const { issueSigner } = await import('../keys/key-dir.js');
    const result = await issueSigner(flags.dir, { ...issueOptions(flags), out: flags.out });
    print(flags, { command: 'issue-signer', ...result }, () => formatPair(result));
  });

  withOutputOptions(
    withIssuerOptions(
      withKeyOptions(
        keys
          .command('issue-recipient')
          .description('create a key that packs are encrypted to (fleet, group or probe): K/<name>.crt and K/<name>.key')
          .requiredOption('--dir <dir>', 'keys directory')
          .requiredOption('--name <name>', 'file name and common name, e.g. fleet, group-lyon, probe-0042')
          .option('--days <n>', 'lifetime in days (default: 10 years, at most the issuer\'s)', parseDays),
      ),
    ),
  ).action(async (flags: IssueFlags & { name: string }) => {
    useJsonOutput(flags.json === true);
    const { issueRecipient } = await import('../keys/key-dir.js');
    const result = await issueRecipient(flags.dir, { ...issueOptions(flags), name: flags.name });
    print(flags, { command: 'issue-recipient', ...result }, () => formatPair(result));
  });

  withOutputOptions(
    keys
      .command('revoke')
      .description('add a certificate serial to K/revocations.json, signed by the root key')
      .requiredOption('--dir <dir>', 'keys directory')
      .addOption(new Option('--serial <hex>', 'serial number to revoke (hex, colons allowed)').conflicts('cert'))
      .option('--cert <file>', 'revoke the serial of the first certificate in this file')
      .option('--reason <text>', 'why, recorded in the list (at most 200 characters)')
      .option('--issuer-passphrase-file <file>', 'passphrase file for root.key when it is encrypted'),
  ).action(async (flags: RevokeFlags) => {
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

function withPairOptions(cmd: Command, defaultName: string, defaultYears: number): Command {
  return withKeyOptions(
    cmd
      .requiredOption('--dir <dir>', 'keys directory (created if missing)')
      .option('--name <cn>', `common name (default: "${defaultName}")`)
      .option('--days <n>', `lifetime in days (default: ${defaultYears} years)`, parseDays),
  );
}

function withKeyOptions(cmd: Command): Command {
  return cmd
    .option('--passphrase-file <file>', 'encrypt the new private key with the passphrase in this file')
    .option('--force', 'replace existing files');
}

function withIssuerOptions(cmd: Command): Command {
  return cmd.option('--issuer-passphrase-file <file>', "passphrase file for the issuer's key when it is encrypted");
}

function withOutputOptions(cmd: Command): Command {
  return cmd.option('--json', 'print one JSON object instead of a summary');
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
  process.stdout.write(flags.json === true ? `${JSON.stringify({ ok: true, ...result })}\n` : human());
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
