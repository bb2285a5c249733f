import { createHash } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serverSamples, startTestServer, type TestServer } from '../server/harness.js';

/**
 * The pack page's "signer and chain" (issue 22): the chain as the server's keyring judges it
 * today, so staff see a pack whose vendor root was withdrawn after the upload for what it now is.
 */
let s: TestServer;
let sha: string;

beforeAll(async () => {
  const samples = await serverSamples();
  s = await startTestServer({ keyring: samples.keys.rootCert });
  const bytes = await readFile(samples.packs['1.0.0']);
  expect((await s.api('POST', '/api/v1/packs', { body: bytes })).status).toBe(201);
  sha = createHash('sha256').update(bytes).digest('hex');
});
afterAll(() => s.close());

interface Detail {
  signerChain: { trusted: boolean; code: string | null; chain: { subject: string; issuer: string; fingerprint256: string }[] };
}

describe("a pack's signer chain", () => {
  it('lists the signer first and the root last while the keyring trusts it', async () => {
    const r = await s.api<Detail>('GET', `/api/v1/packs/${sha}`);
    expect(r.body.signerChain.trusted).toBe(true);
    const chain = r.body.signerChain.chain;
    expect(chain.length).toBeGreaterThanOrEqual(2);
    expect(chain[0]!.subject).toContain('Signer');
    expect(chain.at(-1)!.subject).toBe(chain.at(-1)!.issuer);
  });

  it('shows a pack whose root was withdrawn from the keyring as untrusted, with the code', async () => {
    const keyring = join(s.dir, 'keyring');
    for (const f of await readdir(keyring)) await rm(join(keyring, f));
    const r = await s.api<Detail>('GET', `/api/v1/packs/${sha}`);
    expect(r.status).toBe(200);
    expect(r.body.signerChain).toMatchObject({ trusted: false, code: 'KEYRING_EMPTY', chain: [] });
  });
});
