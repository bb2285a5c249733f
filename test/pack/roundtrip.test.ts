import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { extractPack, readPack, verifyPack, PACK_KINDS } from '../../pack/src/index.js';
import { makePki, packTree, scratch, treeDigest, writeTree, type TestPki } from '../helpers/packs.js';

let pki: TestPki;
let tmp: { dir: string; cleanup: () => Promise<void> };

beforeAll(async () => {
  tmp = await scratch();
  pki = await makePki(join(tmp.dir, 'keys'));
  await writeTree(join(tmp.dir, 'src'), {
    'pack.json': JSON.stringify({ securityVersion: 3, releaseNotes: 'notes', payloads: { app: 'app', config: 'config', db: 'db' } }),
    'app/bin/run.sh': '#!/bin/sh\necho hi\n',
    'app/lib/big.bin': randomBytes(300 * 1024),
    'app/lib/current': { symlink: 'big.bin' },
    'app/empty-dir/.keep': '',
    'config/config.json': '{"configVersion":1}\n',
    'db/0001-init.up.sql': 'CREATE TABLE t(x);\n',
  });
  // An agent pack carries one payload, the agent's build (docs/self-update.md).
  await writeTree(join(tmp.dir, 'src-agent'), {
    'pack.json': JSON.stringify({ payloads: { agent: 'agent' } }),
    'agent/package.json': '{"name":"sonde","version":"1.0.0"}\n',
    'agent/dist/cli/src/sonde.js': '#!/usr/bin/node\n',
    'agent/node_modules/dep/big.bin': randomBytes(300 * 1024),
    'agent/node_modules/dep/current': { symlink: 'big.bin' },
  });
});
afterAll(() => tmp.cleanup());

const cases = PACK_KINDS.flatMap((kind) =>
  (['none', 'one', 'several'] as const).map((recipients) => ({ kind, recipients })),
);

describe('pack round trip', () => {
  it.each(cases)('extracts a $kind pack encrypted for $recipients recipient(s) byte for byte', async ({ kind, recipients }) => {
    const out = join(tmp.dir, `${kind}-${recipients}.spk`);
    const certs = recipients === 'none' ? [] : recipients === 'one' ? [pki.probe.cert] : [pki.fleet.cert, pki.group.cert, pki.probe.cert];
    const src = join(tmp.dir, kind === 'agent' ? 'src-agent' : 'src');
    const names = kind === 'agent' ? ['agent'] : ['app', 'config', 'db'];
    await packTree(pki, src, out, {
      kind,
      ...(kind === 'agent' ? { product: 'sonde-agent' } : {}),
      recipients: certs,
      // Only a root may sign a trust pack (pack/src/trust.ts).
      ...(kind === 'trust' ? { signer: pki.root } : {}),
      ...(kind === 'servicepack' ? { requires: '>=0.9.0 <1.0.0' } : {}),
    });
    const keys = recipients === 'none' ? [undefined] : recipients === 'one' ? [pki.probe.key] : [pki.fleet.key, pki.group.key, pki.probe.key];
    for (const [i, key] of keys.entries()) {
      const staging = join(tmp.dir, `stage-${kind}-${recipients}-${i}`);
      const pack = await verifyPack(await readPack(out), pki.keyring);
      expect(pack.manifest.kind).toBe(kind);
      expect(pack.manifest.encryption?.recipients.length ?? 0).toBe(certs.length);
      const result = await extractPack(pack, { mode: 'extract', staging, ...(key ? { key } : {}) });
      expect(result.decrypted).toBe(recipients !== 'none');
      expect(result.payloads.map((p) => p.entry.name)).toEqual(names);
      for (const name of names) {
        expect(await treeDigest(join(staging, name))).toEqual(await treeDigest(join(src, name)));
      }
    }
  });

  it('checks every ciphertext hash of an encrypted pack without a key', async () => {
    const out = join(tmp.dir, 'hash-only.spk');
    await packTree(pki, join(tmp.dir, 'src'), out, { recipients: [pki.fleet.cert] });
    const pack = await verifyPack(await readPack(out), pki.keyring);
    const result = await extractPack(pack, { mode: 'hash-only' });
    expect(result.decrypted).toBe(false);
    expect(result.payloads.every((p) => p.dir === null)).toBe(true);
  });

  it('packs a plain folder as one app payload', async () => {
    const src = join(tmp.dir, 'plain');
    await writeTree(src, { 'a.txt': 'a', 'sub/b.txt': 'b' });
    const out = join(tmp.dir, 'plain.spk');
    await packTree(pki, src, out, {});
    const pack = await verifyPack(await readPack(out), pki.keyring);
    expect(pack.manifest.payloads.map((p) => [p.name, p.fileCount])).toEqual([['app', 3]]);
    const staging = join(tmp.dir, 'plain-stage');
    await extractPack(pack, { mode: 'extract', staging });
    expect(await treeDigest(join(staging, 'app'))).toEqual(await treeDigest(src));
  });
});
