import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { dropSourceFor } from '../../agent/src/daemon/drop-source.js';
import type { DropSource } from '../../agent/src/daemon/daemon.js';
import { dropReceiptSchema, type DropReceipt } from '../../agent/src/drop/receipt.js';
import { signDiagnosticsRequest } from '../../pack/src/diagnostics-request.js';
import { daemonBed, type DaemonBed } from '../helpers/daemon-bed.js';
import type { InProcessDaemon, ProbeFixture } from '../helpers/daemon-harness.js';
import { sonde } from '../helpers/probe-state.js';

/**
 * Diagnostics through the FTP drop (issue 23): a signed request in the inbox, a bundle sealed to
 * the requester's recipient certificate in the drop's outbox. Anyone on the FTP drop can put
 * files in and read files out; these tests are named after what such a person tries.
 */
const run = promisify(execFile);
const CANARY = 'canary-drop-diagnostics-Vx9-site-secret';

let bed: DaemonBed;
let s: SamplePaths;
let p: ProbeFixture;
let d: InProcessDaemon;
let drop: DropSource;
let inbox: string;
let outbox: string;
let rogue: { key: string; cert: string };
let counter = 0;

beforeAll(async () => {
  bed = await daemonBed('sonde-drop-diagnostics-');
  s = bed.samples;
  inbox = join(bed.dir, 'ftp', 'incoming');
  outbox = join(bed.dir, 'ftp', 'outgoing');
  await mkdir(inbox, { recursive: true });
  p = await bed.probe({ config: { inbox, drop: { stableMs: 100, outbox } }, siteVars: { CollectorPassword: CANARY } });
  d = await bed.daemon(p);
  drop = dropSourceFor(d.daemon);
  // A signing key of someone else's making: a root the probe does not hold.
  const keys = join(bed.dir, 'rogue-keys');
  for (const args of [['keys', 'init-ca', '--dir', keys, '--name', 'Rogue Root'], ['keys', 'issue-signer', '--dir', keys, '--name', 'Rogue Signer']]) {
    const r = await sonde(args);
    expect(r.code, r.stderr).toBe(0);
  }
  rogue = { key: join(keys, 'signer.key'), cert: join(keys, 'signer.crt') };
}, 180_000);

afterAll(async () => {
  await bed?.close();
});

async function request(name: string, o: { probe?: string; sign?: string; cert?: string; valid?: string } = {}): Promise<string> {
  const file = join(bed.dir, `${name}.sdr`);
  const r = await sonde(['diagnostics', 'request', '--probe', o.probe ?? p.id, '--sign', o.sign ?? s.keys.signerKey, '--cert', o.cert ?? s.keys.signerCert, '--recipient', s.keys.fleetCert, '--valid', o.valid ?? '1d', '--reason', 'ticket 4711', '-o', file]);
  expect(r.code, r.stderr).toBe(0);
  return file;
}

/** Puts a file in the inbox and scans until it is filed; returns its receipt. */
async function dropIt(file: string, bytes?: Buffer): Promise<DropReceipt> {
  const name = `${++counter}-${file.split('/').pop()!}`;
  await writeFile(join(inbox, name), bytes ?? (await readFile(file)));
  const until = Date.now() + 30_000;
  while (Date.now() < until) {
    await drop.scan();
    for (const dir of ['processed', 'rejected']) {
      const receipt = join(p.state, dir, `${name}.receipt.json`);
      if (existsSync(receipt)) return dropReceiptSchema.parse(JSON.parse(await readFile(receipt, 'utf8')));
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${name} was never filed`);
}

const sealed = async (): Promise<string[]> => (existsSync(outbox) ? (await readdir(outbox)).filter((n) => n.endsWith('.sealed')) : []);

describe('diagnostics through the FTP drop', () => {
  it('answers a signed request with a bundle sealed to its recipient, which sonde diagnostics open unseals, with no site variable value in it', async () => {
    const before = await sealed();
    const receipt = await dropIt(await request('genuine'));
    expect(receipt).toMatchObject({ outcome: 'answered', code: null });
    const added = (await sealed()).filter((n) => !before.includes(n));
    expect(added).toHaveLength(1);
    expect(receipt.message).toBe(`the sealed bundle is outbox/${added[0]}`);
    expect(added[0]).toMatch(new RegExp(`^diagnostics-${p.id}-\\d{8}T\\d{6}Z\\.tar\\.gz\\.sealed$`));

    const opened = join(bed.dir, 'bundle.tar.gz');
    const o = await sonde(['diagnostics', 'open', join(outbox, added[0]!), '--key', s.keys.fleetKey, '-o', opened]);
    expect(o.code, o.stderr).toBe(0);
    const listing = (await run('tar', ['-tzf', opened])).stdout;
    expect(listing).toMatch(/bundle\.json/);
    expect(listing).toMatch(/agent\.log/);
    const unpacked = join(bed.dir, 'bundle');
    await mkdir(unpacked);
    await run('tar', ['-xzf', opened, '-C', unpacked]);
    const all = (await run('grep', ['-r', '-l', CANARY, unpacked]).catch((e: { code: number; stdout: string }) => e)).stdout;
    expect(all).toBe('');
    // The request's reason is in the probe's log, as is who signed it.
    expect(d.logs.some((l) => l.msg === 'diagnostics request from the drop answered' && l['reason'] === 'ticket 4711' && String(l['signer']).includes('CN='))).toBe(true);
  });

  it('anyone reading the outbox cannot read the bundle: it holds no plain text, and another key cannot open it', async () => {
    const [file] = await sealed();
    const bytes = await readFile(join(outbox, file!));
    // A gzip stream starts 1f 8b; a sealed file is a header line and ciphertext.
    expect(bytes.includes(Buffer.from([0x1f, 0x8b, 0x08]))).toBe(false);
    expect(bytes.includes(Buffer.from('bundle.json'))).toBe(false);
    const r = await sonde(['diagnostics', 'open', join(outbox, file!), '--key', s.keys.signerKey, '-o', join(bed.dir, 'nope.tar.gz')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/RECIPIENT_NOT_FOUND/);
    expect(existsSync(join(bed.dir, 'nope.tar.gz'))).toBe(false);
    // A flipped byte of the ciphertext is refused whole.
    const flipped = Buffer.from(bytes);
    flipped[flipped.length - 100] = flipped[flipped.length - 100]! ^ 1;
    await writeFile(join(bed.dir, 'flipped.sealed'), flipped);
    const f = await sonde(['diagnostics', 'open', join(bed.dir, 'flipped.sealed'), '--key', s.keys.fleetKey, '-o', join(bed.dir, 'flipped.tar.gz')]);
    expect(f.stderr).toMatch(/DECRYPT_FAILED/);
    expect(existsSync(join(bed.dir, 'flipped.tar.gz'))).toBe(false);
  });

  it('a request forged on the FTP drop with a key the probe does not trust is refused, and nothing is written', async () => {
    const before = await sealed();
    const receipt = await dropIt(await request('rogue', { sign: rogue.key, cert: rogue.cert }));
    expect(receipt).toMatchObject({ outcome: 'failed', code: 'CHAIN_UNTRUSTED' });
    expect(await sealed()).toEqual(before);
  });

  it('a genuine request altered to name another probe fails its signature', async () => {
    const file = await request('altered', { probe: 'other-probe' });
    const doc = JSON.parse(await readFile(file, 'utf8')) as { body: { probeIds: string[] } };
    doc.body.probeIds = [p.id];
    const receipt = await dropIt(file, Buffer.from(JSON.stringify(doc)));
    expect(receipt).toMatchObject({ outcome: 'failed', code: 'SIGNATURE_INVALID' });
  });

  it('a genuine request for another probe is refused by this one', async () => {
    const receipt = await dropIt(await request('elsewhere', { probe: 'other-probe' }));
    expect(receipt).toMatchObject({ outcome: 'failed', code: 'DIAGNOSTICS_REQUEST_INVALID' });
    expect(receipt.message).toContain('not for probe');
  });

  it('a replayed request (the same bytes again) is not answered twice', async () => {
    const file = await request('replayed');
    expect((await dropIt(file)).outcome).toBe('answered');
    const count = (await sealed()).length;
    const again = await dropIt(file);
    expect(again).toMatchObject({ outcome: 'duplicate', message: 'the same request was answered before' });
    expect((await sealed()).length).toBe(count);
  });

  it('an expired request is refused', async () => {
    const chain = (await readFile(s.keys.signerCert, 'utf8')).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g)!.map((c) => (c.endsWith('\n') ? c : `${c}\n`));
    // Issued while the signer was valid, expired a second later.
    const from = Date.parse(new X509Certificate(chain[0]!).validFrom) + 1000;
    const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
    while (Date.now() < from + 2000) await new Promise((r) => setTimeout(r, 200));
    const text = signDiagnosticsRequest(
      { probeIds: [p.id], issuedAt: iso(from), expiresAt: iso(from + 1000), recipient: (await readFile(s.keys.fleetCert, 'utf8')).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/)![0] },
      createPrivateKey(await readFile(s.keys.signerKey)),
      chain,
    );
    const receipt = await dropIt(join(bed.dir, 'expired.sdr'), Buffer.from(text));
    expect(receipt).toMatchObject({ outcome: 'failed', code: 'DIAGNOSTICS_REQUEST_EXPIRED' });
  });

  it('junk named like a request is refused with a clear code, and the drop keeps working', async () => {
    const receipt = await dropIt(join(bed.dir, 'junk.sdr'), Buffer.from('not json at all'));
    expect(receipt).toMatchObject({ outcome: 'failed', code: 'DIAGNOSTICS_REQUEST_INVALID' });
    expect((await dropIt(await request('after-junk'))).outcome).toBe('answered');
  });
});
