import { X509Certificate } from 'node:crypto';
import { copyFile, mkdir, readFile, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writePack } from '../../../pack/src/writer.js';
import { makePlan } from '../../../pack/src/recipe.js';
import { loadSampleSigner, makeTrustRevocations, writeLicenseRecipe, type SamplePaths } from '../../../images/src/samples/index.js';
import { serverSamples, stateDigest, startTestServer, tampered, tempDir, type TestServer } from '../harness.js';

/**
 * Attack: a tampered pack uploaded to the server. The door verifies it as a probe would (minus
 * decryption): the signature over the manifest, the chain, and every payload's bytes. Any change
 * is refused with the pack's code and nothing is stored.
 */
let samples: SamplePaths;
let s: TestServer;
let scratch: string;

beforeAll(async () => {
  samples = await serverSamples();
  scratch = await tempDir('sonde-tamper-');
  s = await startTestServer({ keyring: samples.keys.rootCert });
});
afterAll(async () => {
  await s.close();
  await rm(scratch, { recursive: true, force: true });
});

describe('a tampered upload', () => {
  it.each([
    { verdict: 'one payload byte flipped', entry: (n: string) => n.startsWith('payloads/'), code: 'PAYLOAD_HASH_MISMATCH' },
    { verdict: 'one manifest byte flipped', entry: (n: string) => n === 'manifest.json', code: 'SIGNATURE_INVALID' },
    { verdict: 'one signature byte flipped', entry: (n: string) => n === 'manifest.sig', code: /SIGNATURE_(INVALID|MALFORMED)|CHAIN_INVALID/ },
  ])('is refused when $verdict, and nothing is stored', async ({ entry, code }) => {
    const file = await tampered(samples.packs['1.1.0'], join(scratch, 'bad.spk'), entry);
    const before = await stateDigest(s.dir);
    const r = await s.api<{ code: string }>('POST', '/api/v1/packs', { body: await readFile(file) });
    expect(r.status).toBe(422);
    if (typeof code === 'string') expect(r.body.code).toBe(code);
    else expect(r.body.code).toMatch(code);
    expect(await stateDigest(s.dir)).toEqual(before);
  });

  it('is refused when the payloads of another pack are spliced under a signed manifest', async () => {
    // The 1.1.0 manifest and signature with the 1.0.0 payloads behind them.
    const head = await readFile(samples.packs['1.1.0']);
    const other = await readFile(samples.packs['1.0.0']);
    const { packEntries } = await import('../harness.js');
    const cut = packEntries(head).find((e) => e.name.startsWith('payloads/'))!.offset - 512;
    const cutOther = packEntries(other).find((e) => e.name.startsWith('payloads/'))!.offset - 512;
    const spliced = Buffer.concat([head.subarray(0, cut), other.subarray(cutOther)]);
    await writeFile(join(scratch, 'spliced.spk'), spliced);
    const before = await stateDigest(s.dir);
    const r = await s.api<{ code: string }>('POST', '/api/v1/packs', { body: spliced });
    expect(r.status).toBe(422);
    expect(r.body.code).toMatch(/PAYLOAD_(HASH|SIZE)_MISMATCH|PACK_FORMAT/);
    expect(await stateDigest(s.dir)).toEqual(before);
  });

  it('is refused when signed by a revoked signer under a trusted root (CERT_REVOKED)', async () => {
    // A server whose keyring carries the vendor's signed revocation list, and a licence pack
    // signed by the signer that list revokes.
    const keyring = join(scratch, 'keyring');
    await mkdir(keyring);
    await copyFile(samples.keys.rootCert, join(keyring, 'root.crt'));
    await copyFile(await makeTrustRevocations(samples.keys, join(scratch, 'rev')), join(keyring, 'revocations.json'));
    const out = join(scratch, 'revoked.spk');
    await writePack(await makePlan(await writeLicenseRecipe(join(scratch, 'licence-recipe')), {}), {
      out,
      signer: await loadSampleSigner(samples.keys, 'revoked-signer'),
      recipients: [{ cert: new X509Certificate(await readFile(samples.keys.fleetCert, 'utf8')) }],
    });
    const strict = await startTestServer({ keyring: join(keyring, 'root.crt') });
    try {
      const before = await stateDigest(strict.dir);
      const r = await strict.api<{ code: string }>('POST', '/api/v1/packs', { body: await readFile(out) });
      expect(r.status).toBe(422);
      expect(r.body.code).toBe('CERT_REVOKED');
      expect(await stateDigest(strict.dir)).toEqual(before);
      // The same server takes a pack from the signer in good standing.
      expect((await strict.api('POST', '/api/v1/packs', { body: await readFile(samples.packs.license) })).status).toBe(201);
    } finally {
      await strict.close();
    }
  });
});
