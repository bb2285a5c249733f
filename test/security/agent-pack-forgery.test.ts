import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Engine } from '../../agent/src/update/engine.js';
import { manifestSchema } from '../../pack/src/manifest.js';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { agentPack } from '../helpers/agent-packs.js';
import { daemonSamples } from '../helpers/daemon-harness.js';
import { layoutOf as packLayoutOf } from '../helpers/pack-layout.js';
import { makePki, scratch } from '../helpers/packs.js';

/**
 * An agent pack replaces the code that decides what a probe trusts, so whoever can get one
 * installed owns the probe. These are the attacks on that door, by anyone who can put a file in
 * the FTP drop or a command on the MQTT port, or who holds an old, vulnerable agent pack: each is
 * refused by the install engine before a byte reaches an agent slot, and the agent that runs is
 * untouched (docs/threat-model.md).
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;

beforeAll(async () => {
  tmp = await scratch('sonde-agent-forgery-');
  s = await daemonSamples();
}, 600_000);

afterAll(async () => {
  await tmp?.cleanup();
});

async function install(name: string, pack: string): Promise<{ code: string | null; outcome: string | null; agentDir: string }> {
  const root = join(tmp.dir, name);
  const engine = await Engine.open({ root, keyring: s.keys.rootCert });
  try {
    const { deployment: d } = await engine.install(pack);
    return { code: d.errorCode, outcome: d.outcome, agentDir: join(engine.context.layout.state, 'agent') };
  } finally {
    engine.close();
  }
}

function untouched(agentDir: string): void {
  for (const f of ['slots/a', 'slots/b', 'trial', 'committed']) expect(existsSync(join(agentDir, f)), f).toBe(false);
}

describe('attacks on the agent pack door', () => {
  it('an agent pack with a byte of its build changed in transit is refused (PAYLOAD_HASH_MISMATCH); no agent slot is written', async () => {
    const file = await agentPack(tmp.dir, s.keys, '9.3.0');
    const bytes = await readFile(file);
    const payload = packLayoutOf(bytes).entries.find((e) => e.name.startsWith('payloads/'))!;
    bytes[payload.data + Math.floor((payload.dataEnd - payload.data) / 2)]! ^= 0x20;
    await writeFile(file, bytes);
    const r = await install('tampered', file);
    expect([r.outcome, r.code]).toEqual(['failed', 'PAYLOAD_HASH_MISMATCH']);
    untouched(r.agentDir);
  });

  it("an agent pack signed by a key the probe's keyring does not trust is refused before its build is read", async () => {
    const pki = await makePki(join(tmp.dir, 'attacker-pki'));
    const r = await install('untrusted', await agentPack(tmp.dir, s.keys, '9.3.1', 'good', { signer: pki.signer }));
    expect([r.outcome, r.code]).toEqual(['failed', 'CHAIN_UNTRUSTED']);
    untouched(r.agentDir);
  });

  it('an older agent pack (a genuine but vulnerable agent, replayed) is refused (POLICY_DOWNGRADE)', async () => {
    const r = await install('downgrade', await agentPack(tmp.dir, s.keys, '0.0.9'));
    expect([r.outcome, r.code]).toEqual(['failed', 'POLICY_DOWNGRADE']);
    untouched(r.agentDir);
  });

  it('an agent build whose native module does not load here (another architecture or Node) is refused (AGENT_BUILD_INVALID) and removed', async () => {
    const foreign = async (tree: string): Promise<void> => writeFile(join(tree, 'node_modules', 'better-sqlite3', 'build', 'Release', 'better_sqlite3.node'), Buffer.from('\x7fELF not for this machine'));
    const r = await install('foreign-abi', await agentPack(tmp.dir, s.keys, '9.3.2', 'good', { tree: foreign }));
    expect([r.outcome, r.code]).toEqual(['failed', 'AGENT_BUILD_INVALID']);
    untouched(r.agentDir);
  });

  it('an agent payload smuggled into a product pack, or an agent pack carrying more than the agent, is refused as a manifest (MANIFEST_INVALID)', () => {
    const payload = (type: string, i: number) => ({ name: type, type, file: `payloads/0${i}-${type}`, size: 1, sha256: 'a'.repeat(64), unpackedSize: 1, fileCount: 1, compression: 'none' });
    const base = { kind: 'product', product: 'probe-app', version: '1.0.0', compatible: ['probe-x1'], securityVersion: 0, createdAt: '2026-12-06T00:00:00.000Z' };
    expect(manifestSchema.safeParse({ ...base, payloads: [payload('app', 1), payload('agent', 2)] }).success).toBe(false);
    expect(manifestSchema.safeParse({ ...base, kind: 'agent', product: 'sonde-agent', payloads: [payload('agent', 1), payload('app', 2)] }).success).toBe(false);
    expect(manifestSchema.safeParse({ ...base, kind: 'agent', product: 'probe-app', payloads: [payload('agent', 1)] }).success).toBe(false);
    expect(manifestSchema.safeParse({ ...base, kind: 'agent', product: 'sonde-agent', payloads: [payload('agent', 1)] }).success).toBe(true);
  });
});
