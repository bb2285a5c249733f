import { execFile } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scratch, treeDigest } from '../helpers/packs.js';

/**
 * The acceptance contract of issue 2, run exactly as written against the built CLI
 * (`npm test` builds first). If one of these needs changing, the contract was broken.
 */
const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../../dist/cli/src/sonde.js', import.meta.url));

async function sonde(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

let tmp: { dir: string; cleanup: () => Promise<void> };
let K: string;
let SRC: string;

beforeAll(async () => {
  tmp = await scratch('sonde-contract-');
  K = join(tmp.dir, 'K');
  SRC = join(tmp.dir, 'src');
  await mkdir(join(SRC, 'bin'), { recursive: true });
  await writeFile(join(SRC, 'bin', 'app.sh'), '#!/bin/sh\necho app\n', { mode: 0o755 });
  await writeFile(join(SRC, 'README'), 'sample\n');
  for (const args of [
    ['keys', 'init-ca', '--dir', K],
    ['keys', 'issue-signer', '--dir', K],
    ['keys', 'issue-recipient', '--dir', K, '--name', 'fleet'],
  ]) {
    const r = await sonde(...args);
    expect(r.code, r.stderr).toBe(0);
  }
});
afterAll(() => tmp.cleanup());

describe('the sonde CLI contract', () => {
  it('writes the key files the contract names, private keys 0600', async () => {
    const { stat } = await import('node:fs/promises');
    for (const f of ['root.crt', 'root.key', 'signer.crt', 'signer.key', 'fleet.crt', 'fleet.key']) {
      const info = await stat(join(K, f));
      if (f.endsWith('.key')) expect(info.mode & 0o777).toBe(0o600);
    }
  });

  it('packs, verifies with and without the key, extracts and inspects an encrypted pack', async () => {
    const out = join(tmp.dir, 'out.spk');
    const packed = await sonde('pack', SRC, '--kind', 'product', '--product', 'demo', '--version', '1.0.0', '--model', 'probe-x1',
      '--sign', join(K, 'signer.key'), '--cert', join(K, 'signer.crt'), '--encrypt-for', join(K, 'fleet.crt'), '-o', out);
    expect(packed.code, packed.stderr).toBe(0);

    const noKey = await sonde('verify', out, '--keyring', join(K, 'root.crt'));
    expect(noKey.code).toBe(0);
    expect(noKey.stdout).toMatch(/^TRUSTED demo 1\.0\.0/);
    expect(noKey.stdout).toContain('not decrypted');

    const x = join(tmp.dir, 'x');
    const full = await sonde('verify', out, '--keyring', join(K, 'root.crt'), '--key', join(K, 'fleet.key'), '--extract', x, '--json');
    expect(full.code, full.stdout + full.stderr).toBe(0);
    const json = JSON.parse(full.stdout) as { ok: boolean; decrypted: boolean; version: string };
    expect(json).toMatchObject({ ok: true, decrypted: true, version: '1.0.0' });
    expect(await treeDigest(join(x, 'app'))).toEqual(await treeDigest(SRC));

    const dirKeyring = await sonde('verify', out, '--keyring', K);
    expect(dirKeyring.code).toBe(0);

    const shown = await sonde('inspect', out, '--json');
    expect(shown.code).toBe(0);
    const info = JSON.parse(shown.stdout) as { verified: boolean; manifest: { product: string }; recipients: { label: string }[] };
    expect(info.verified).toBe(false);
    expect(info.manifest.product).toBe('demo');
    expect(info.recipients.map((r) => r.label)).toEqual(['fleet']);
    expect(shown.stdout).not.toContain('wrappedKey');
  });

  it('rejects a tampered pack with exit 1, a stable code and one line of reason', async () => {
    const out = join(tmp.dir, 'plain.spk');
    expect((await sonde('pack', SRC, '--product', 'demo', '--version', '1.0.1', '--model', 'probe-x1', '--sign', join(K, 'signer.key'), '--cert', join(K, 'signer.crt'), '-o', out)).code).toBe(0);
    const bytes = await readFile(out);
    const at = bytes.indexOf('"version"');
    bytes[at + 12] = bytes[at + 12]! ^ 1;
    await writeFile(out, bytes);
    const r = await sonde('verify', out, '--keyring', join(K, 'root.crt'));
    expect(r.code).toBe(1);
    expect(r.stdout.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).toMatch(/^REJECTED SIGNATURE_INVALID: /);
    const j = await sonde('verify', out, '--keyring', join(K, 'root.crt'), '--json');
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: false, code: 'SIGNATURE_INVALID' });
  });

  it('exits 2 on a usage error', async () => {
    expect((await sonde('verify', join(tmp.dir, 'out.spk'))).code).toBe(2);
  });
});
