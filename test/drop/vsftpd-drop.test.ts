import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { Client } from 'basic-ftp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DropInbox, installWithEngine, type DropEvent, type DropInstall, type DropStatus } from '../../agent/src/drop/index.js';
import type { Engine } from '../../agent/src/update/engine.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { setSiteVar } from '../../agent/src/update/site-vars.js';
import type { SamplePaths } from '../../images/src/samples/index.js';
import { scratch } from '../helpers/packs.js';
import { httpJson, openEngine, sharedSamples, stopApp, waitFor } from '../helpers/probe.js';
import { startVsftpd, stopAllVsftpd, type FtpServer } from '../helpers/vsftpd.js';
import { freePort } from '../probe-app/probe-root.js';
import { listing, receiptOf } from './drop-fixtures.js';

/**
 * The FTP drop end to end: Debian's vsftpd (a foreground child of this test, on loopback) writes
 * anonymous uploads from basic-ftp into its incoming/ folder, which is the agent's inbox; the
 * inbox scans on an interval and installs through the real engine into a real probe root running
 * the sample app (1.0.0 installed first). stableMs is 0: only the open-writer rule and the pack's
 * own length stand between a half-written file and the engine, so they are what is proven here.
 */
const CANARY = 'canary-Ftp-8Qx-site-secret';
let tmp: { dir: string; cleanup: () => Promise<void> };
let s: SamplePaths;
let ftp: FtpServer;
let root: string;
let appPort: number;
let engine: Engine;
let box: DropInbox;
const events: DropEvent[] = [];
/** Every install the inbox asked for: the file's sha256 when handed over, and the overlap. */
const installs: { name: string; sha256: string }[] = [];
let inFlight = 0;
let maxInFlight = 0;
/** Status snapshots taken while uploads run. */
const snapshots: DropStatus[] = [];

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** A Readable that yields `chunk` bytes every `everyMs`, calling `onChunk` with the bytes sent so far. */
function throttled(bytes: Buffer, chunk: number, everyMs: number, onChunk: (sent: number) => void = () => undefined): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= bytes.length) {
        this.push(null);
        return;
      }
      setTimeout(() => {
        const part = bytes.subarray(sent, sent + chunk);
        sent += part.length;
        this.push(part);
        onChunk(sent);
      }, everyMs);
    },
  });
}

async function client(): Promise<Client> {
  const c = new Client(10_000);
  await c.access({ host: ftp.host, port: ftp.port, user: 'anonymous', password: 'support@example.invalid' });
  return c;
}

async function watchStatus<T>(during: Promise<T>): Promise<T> {
  let done = false;
  const sampler = (async () => {
    while (!done) {
      snapshots.push(box.status());
      await new Promise((r) => setTimeout(r, 15));
    }
  })();
  try {
    return await during;
  } finally {
    done = true;
    await sampler;
  }
}

const eventsFor = (name: string): DropEvent[] => events.filter((e) => 'name' in e && e.name === name);

beforeAll(async () => {
  tmp = await scratch('sonde-ftpdrop-');
  [ftp, s] = await Promise.all([startVsftpd(), sharedSamples(join(tmp.dir, 'samples'))]);
  root = join(tmp.dir, 'probe');
  appPort = await freePort();
  await mkdir(join(root, 'etc'), { recursive: true });
  await writeFile(join(root, 'etc', 'config.json'), JSON.stringify({ port: appPort }));
  await setSiteVar(layoutOf(root).siteVars, 'CollectorPassword', CANARY);
  engine = await openEngine(root, s);
  const first = await engine.install(s.packs['1.0.0']);
  expect(first.committed).toBe(true);
  const viaEngine = installWithEngine(engine);
  const install: DropInstall = async (path) => {
    installs.push({ name: path.split('/').at(-1)!, sha256: sha256(await readFile(path)) });
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    try {
      return await viaEngine(path);
    } finally {
      inFlight--;
    }
  };
  box = new DropInbox({ root, inbox: ftp.incoming, install, onEvent: (e) => void events.push(e), stableMs: 0 });
  box.start(25);
}, 180_000);

afterAll(async () => {
  await box?.stop();
  engine?.close();
  await stopApp(root).catch(() => undefined);
  await stopAllVsftpd();
  await tmp?.cleanup();
});

describe('FTP drop with vsftpd', () => {
  it('does not touch a slow upload while vsftpd writes it, then installs it', async () => {
    const bytes = await readFile(s.packs['1.1.0']);
    const c = await client();
    try {
      // 1 KiB every 50 ms: the 18 KiB pack takes about a second to arrive.
      await watchStatus(c.uploadFrom(throttled(bytes, 1024, 50), 'incoming/probe-app-1.1.0.spk'));
    } finally {
      c.close();
    }
    expect(snapshots.some((st) => st.waiting.some((w) => w.name === 'probe-app-1.1.0.spk' && w.reason === 'open-writer'))).toBe(true);
    await waitFor('the slow upload to be installed', async () => eventsFor('probe-app-1.1.0.spk').find((e) => e.type === 'drop-installed'), 30_000);
    // Nothing was measured, hashed or installed before the upload was whole.
    expect(eventsFor('probe-app-1.1.0.spk').map((e) => e.type)).toEqual(['drop-received', 'drop-installed']);
    expect(installs.filter((i) => i.name === 'probe-app-1.1.0.spk')).toEqual([{ name: 'probe-app-1.1.0.spk', sha256: sha256(bytes) }]);
    expect(await receiptOf(join(layoutOf(root).state, 'processed'), 'probe-app-1.1.0.spk')).toMatchObject({ outcome: 'committed', version: '1.1.0', sha256: sha256(bytes) });
    expect(((await httpJson(appPort, '/status')).body as { version: string }).version).toBe('1.1.0');
  });

  it('keeps an upload cut off halfway as incomplete, never installs it, and installs it once resumed', async () => {
    const name = 'probe-app-1.1.1.spk';
    const bytes = await readFile(s.packs['1.1.1']);
    const c = await client();
    let cut = 0;
    const upload = c.uploadFrom(
      throttled(bytes, 1024, 30, (sent) => {
        if (sent >= bytes.length / 2 && cut === 0) {
          cut = sent;
          c.close(); // the client goes away mid-transfer
        }
      }),
      `incoming/${name}`,
    );
    await expect(upload).rejects.toThrow();
    const inc = await waitFor('the cut upload to be reported incomplete', async () => box.status().incomplete.find((u) => u.name === name), 10_000);
    expect(inc.size).toBeLessThan(bytes.length);
    // More scans go by: still incomplete, still not installed.
    await new Promise((r) => setTimeout(r, 300));
    expect(box.status().incomplete.map((u) => u.name)).toEqual([name]);
    expect(installs.filter((i) => i.name === name)).toEqual([]);
    expect(eventsFor(name).map((e) => e.type)).toEqual(['drop-incomplete']);

    // The support engineer resumes the upload: SIZE, then APPE of the rest.
    const again = await client();
    try {
      const have = await again.size(`incoming/${name}`);
      expect(have).toBe(inc.size);
      await again.appendFrom(Readable.from([bytes.subarray(have)]), `incoming/${name}`);
    } finally {
      again.close();
    }
    await waitFor('the resumed upload to be installed', async () => eventsFor(name).find((e) => e.type === 'drop-installed'), 30_000);
    expect(installs.filter((i) => i.name === name)).toEqual([{ name, sha256: sha256(bytes) }]);
    expect(box.status().incomplete).toEqual([]);
  });

  it('installs two uploads that arrive at once, one after the other', async () => {
    const packs = { 'license.spk': await readFile(s.packs.license), 'trust.spk': await readFile(s.packs.trust) };
    const before = maxInFlight;
    await watchStatus(
      Promise.all(
        Object.entries(packs).map(async ([name, bytes]) => {
          const c = await client();
          try {
            await c.uploadFrom(throttled(bytes, 1024, 20), `incoming/${name}`);
          } finally {
            c.close();
          }
        }),
      ),
    );
    for (const name of Object.keys(packs)) {
      await waitFor(`${name} to be installed`, async () => eventsFor(name).find((e) => e.type === 'drop-installed'), 30_000);
    }
    expect(Math.max(before, maxInFlight)).toBe(1);
    for (const [name, bytes] of Object.entries(packs)) expect(installs.filter((i) => i.name === name)).toEqual([{ name, sha256: sha256(bytes) }]);
    expect(await listing(join(layoutOf(root).state, 'processed'))).toEqual(
      expect.arrayContaining(['license.spk', 'license.spk.receipt.json', 'trust.spk', 'trust.spk.receipt.json']),
    );
  });

  it('takes an upload named .part only after the client renames it, and files a repeat as a duplicate', async () => {
    const bytes = await readFile(s.packs['1.1.0']);
    const c = await client();
    try {
      await c.uploadFrom(Readable.from([bytes]), 'incoming/repeat.spk.part');
      await new Promise((r) => setTimeout(r, 200));
      expect(box.status().waiting).toEqual([expect.objectContaining({ name: 'repeat.spk.part', reason: 'part' })]);
      await c.rename('incoming/repeat.spk.part', 'incoming/repeat.spk');
    } finally {
      c.close();
    }
    const dup = await waitFor('the repeat to be filed', async () => eventsFor('repeat.spk').find((e) => e.type === 'drop-duplicate'), 10_000);
    expect(dup).toMatchObject({ movedTo: 'processed/repeat.spk', version: '1.1.0' });
    expect(installs.filter((i) => i.name.startsWith('repeat'))).toEqual([]);
    expect(await listing(ftp.incoming)).toEqual([]);
  });

  it('never puts a site secret in an event or a receipt', async () => {
    expect(JSON.stringify(events)).not.toContain(CANARY);
    const dir = join(layoutOf(root).state, 'processed');
    for (const f of (await listing(dir)).filter((n) => n.endsWith('.receipt.json'))) expect(await readFile(join(dir, f), 'utf8')).not.toContain(CANARY);
  });
});
