import { describe, it, expect, beforeAll, afterAll, afterEach, vi } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { registerKeysCommand } from '../../images/src/cli/keys-command.js';
import { useJsonOutput } from '../../base/src/cli/run-command.js';
import { KeysError } from '../../pack/src/keys-errors.js';
import { verifyRevocations } from '../../pack/src/revocations.js';

/** Runs `sonde <args>` in-process, as cli/src/sonde.ts wires it, and returns its stdout. */
async function sonde(...args: string[]): Promise<string> {
  const program = new Command('sonde')
    .exitOverride()
    .configureOutput({ writeOut: () => undefined, writeErr: () => undefined });
  registerKeysCommand(program);
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    out += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    return true;
  });
  try {
    await program.parseAsync(['node', 'sonde', ...args]);
  } finally {
    spy.mockRestore();
  }
  return out;
}

function certsIn(text: string): X509Certificate[] {
  return (text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
}

let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'sonde-keys-cli-'));
});
afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});
afterEach(() => {
  useJsonOutput(false);
});

describe('sonde keys', { timeout: 60_000 }, () => {
  it('runs the acceptance contract: init-ca, issue-signer, issue-recipient --name fleet', async () => {
    const K = join(base, 'contract', 'K');
    const initOut = await sonde('keys', 'init-ca', '--dir', K);
    const signerOut = await sonde('keys', 'issue-signer', '--dir', K);
    const fleetOut = await sonde('keys', 'issue-recipient', '--dir', K, '--name', 'fleet');

    expect((await readdir(K)).sort()).toEqual(['fleet.crt', 'fleet.key', 'root.crt', 'root.key', 'signer.crt', 'signer.key']);
    for (const key of ['root.key', 'signer.key', 'fleet.key']) expect((await stat(join(K, key))).mode & 0o777).toBe(0o600);

    const [root] = certsIn(await readFile(join(K, 'root.crt'), 'utf8'));
    const [signer, ...rest] = certsIn(await readFile(join(K, 'signer.crt'), 'utf8'));
    const [fleet] = certsIn(await readFile(join(K, 'fleet.crt'), 'utf8'));
    if (!root || !signer || !fleet) throw new Error('missing certificate');
    expect(rest).toHaveLength(0); // issued by the root: the chain never includes the root itself
    expect(signer.verify(root.publicKey)).toBe(true);
    expect(fleet.verify(root.publicKey)).toBe(true);

    expect(initOut).toContain(`wrote ${join(K, 'root.crt')}`);
    expect(initOut).toContain(`wrote ${join(K, 'root.key')} (private key, 0600, not encrypted)`);
    expect(initOut).toContain(root.serialNumber.replace(/^0+/, ''));
    expect(initOut).toContain(root.fingerprint256.replace(/:/g, '').toLowerCase());
    expect(signerOut).toContain(`issuer   ${join(K, 'root.crt')} (root)`);
    expect(fleetOut).toContain(`wrote ${join(K, 'fleet.crt')}`);
  });

  it('prints one JSON object with --json', async () => {
    const K = join(base, 'json');
    const init = JSON.parse(await sonde('keys', 'init-ca', '--dir', K, '--days', '400', '--json')) as Record<string, unknown>;
    expect(init).toMatchObject({ ok: true, command: 'init-ca', keyPath: join(K, 'root.key'), keyEncrypted: false });
    await sonde('keys', 'issue-intermediate', '--dir', K, '--days', '200');
    const out = await sonde('keys', 'issue-signer', '--dir', K, '--days', '30', '--json');
    expect(out.trim().split('\n')).toHaveLength(1);
    const signer = JSON.parse(out) as { issuer: { name: string }; certificatesInFile: number; cert: { serial: string } };
    expect(signer.issuer.name).toBe('intermediate');
    expect(signer.certificatesInFile).toBe(2);

    const revoked = JSON.parse(
      await sonde('keys', 'revoke', '--dir', K, '--serial', signer.cert.serial, '--reason', 'test', '--json'),
    ) as Record<string, unknown>;
    expect(revoked).toMatchObject({ ok: true, command: 'revoke', serial: signer.cert.serial, sequence: 0, alreadyRevoked: false });
    const [root] = certsIn(await readFile(join(K, 'root.crt'), 'utf8'));
    if (!root) throw new Error('no root');
    expect([...verifyRevocations(await readFile(join(K, 'revocations.json'), 'utf8'), [root]).serials]).toEqual([
      signer.cert.serial,
    ]);
    expect(await sonde('keys', 'revoke', '--dir', K, '--cert', join(K, 'signer.crt'))).toContain('already revoked');
  });

  it('fails with the KeysError code for run.ts to report', async () => {
    const K = join(base, 'errors');
    await expect(sonde('keys', 'issue-signer', '--dir', K)).rejects.toMatchObject({ code: 'ISSUER_MISSING' });
    await sonde('keys', 'init-ca', '--dir', K, '--days', '30');
    const again = sonde('keys', 'init-ca', '--dir', K);
    await expect(again).rejects.toBeInstanceOf(KeysError);
    await expect(again).rejects.toMatchObject({ code: 'KEY_EXISTS' });
    await expect(sonde('keys', 'issue-recipient', '--dir', K, '--name', 'root')).rejects.toMatchObject({
      code: 'NAME_INVALID',
    });
    await expect(sonde('keys', 'init-ca', '--dir', K, '--days', '0', '--force')).rejects.toMatchObject({
      code: 'VALIDITY_INVALID',
    });
  });

  it.each([
    { what: 'a missing --dir', args: ['keys', 'init-ca'], code: 'commander.missingMandatoryOptionValue' },
    { what: 'a recipient without --name', args: ['keys', 'issue-recipient', '--dir', 'K'], code: 'commander.missingMandatoryOptionValue' },
    { what: '--days that is not a number', args: ['keys', 'init-ca', '--dir', 'K', '--days', '10y'], code: 'commander.invalidArgument' },
    {
      what: '--serial with --cert',
      args: ['keys', 'revoke', '--dir', 'K', '--serial', '01', '--cert', 'x.crt'],
      code: 'commander.conflictingOption',
    },
  ])('rejects $what as a usage error', async ({ args, code }) => {
    const attempt = sonde(...args);
    await expect(attempt).rejects.toBeInstanceOf(CommanderError);
    await expect(attempt).rejects.toMatchObject({ code });
  });
});
