import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packSampleRecipe, sampleRelease, writeReleaseRecipe } from '../../images/src/samples/index.js';
import { bringUp, LAB_SKIP, labSamples, probeStatus, sonde, waitUntil } from '../helpers/lab.js';
import type { Lab } from '../../lxc/src/lab.js';
import type { LabServerClient } from '../../lxc/src/lab-server.js';

/**
 * Power cuts and pulled cables on real LXC probes: a container hard-stopped (`lxc-stop -k`) in
 * the middle of an install comes back whole on the old or the new release, and the server's view
 * matches the probe's; a link cut in the middle of a download (the host end of its veth down,
 * then up) resumes from the bytes kept and the install completes.
 */
const LAB = 'ehard';

interface Event {
  type: string;
  receivedAt: string;
  state?: string;
  bytes?: number;
}
interface Detail {
  online: boolean;
  stateAt: string | null;
  version: string | null;
  health: string | null;
  events: Event[];
  commands: { commandId: string; status: string; errorCode: string | null }[];
}

describe.skipIf(LAB_SKIP)('hard stops and cut links on LXC probes', () => {
  let lab: Lab;
  let client: LabServerClient;
  let names: string[] = [];
  let scratch: string;
  let bigPack: { sha256: string; size: number };
  let smallPack: { sha256: string };

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'sonde-ehard-'));
    ({ lab, client, names } = await bringUp(LAB, 3, 'stable'));
    // 1.1.1 with 3 MiB of incompressible reference data: a download that takes seconds on a
    // throttled link. Signed and encrypted like any sample pack.
    const src = await writeReleaseRecipe(join(scratch, 'big'), sampleRelease('1.1.1'));
    await writeFile(join(src, 'data', 'capture-sample.bin'), randomBytes(3 * 1024 * 1024));
    await packSampleRecipe(src, join(scratch, 'big.spk'), labSamples().keys);
    bigPack = (await client.api.upload<{ sha256: string; size: number }>('/api/v1/packs', join(scratch, 'big.spk'))).body;
    smallPack = (await client.api.upload<{ sha256: string }>('/api/v1/packs', labSamples().packs['1.1.1'])).body;
  }, 300_000);

  afterAll(async () => {
    await sonde(['lab', 'down', '--all', '--lab', LAB]);
    await rm(scratch, { recursive: true, force: true });
  }, 120_000);

  const detail = async (name: string): Promise<Detail> => (await client.probe(name)) as unknown as Detail;

  /**
   * After a restart: a state the probe published since `since` says healthy on the old or the new
   * release, the probe's own view agrees, the app runs, and no install is left pending.
   */
  async function expectWhole(name: string, since: number): Promise<string> {
    const seen = await waitUntil(
      `${name} settled and healthy again at the server`,
      async () => {
        const d = await detail(name);
        const fresh = d.stateAt !== null && Date.parse(d.stateAt) > since;
        // The accepted command runs again after the recovery (test/daemon/kill-and-drain.test.ts):
        // settled means the last install event since the restart is an outcome.
        const after = d.events.filter((e) => Date.parse(e.receivedAt) > since && /^(download|install)-/.test(e.type));
        const settled = after.length > 0 && after[after.length - 1]!.type === 'install-outcome';
        if (!(fresh && settled && d.online && d.health === 'ok')) return null;
        const own = await probeStatus(lab, name);
        return own.version === d.version && (own as unknown as { unfinished: unknown }).unfinished === null ? { d, own } : null;
      },
      120_000,
      250,
    );
    expect(seen.own.app.running).toBe(true);
    expect(['1.1.0', '1.1.1']).toContain(seen.d.version);
    return seen.d.version!;
  }

  it('comes back whole after lxc-stop -k during the new release trial, and the server view matches', async () => {
    const name = names[0]!;
    await client.api.json('POST', `/api/v1/probes/${name}/commands`, { type: 'install', packSha256: smallPack.sha256 });
    await waitUntil(
      `${name} in its trial`,
      async () => (await detail(name)).events.some((e) => e.type === 'install-state' && (e.state === 'trial' || e.state === 'switched')),
      60_000,
      25,
    );
    await lab.stopProbe(name, true);
    expect(await lab.backend.state(name)).toBe('stopped');
    const restarted = Date.now();
    await lab.startProbe(name);
    const version = await expectWhole(name, restarted);
    expect(['1.1.0', '1.1.1']).toContain(version);
    expect(await lab.agentLog(name)).toMatch(/recovered an interrupted install/);
  }, 240_000);

  it('comes back whole after lxc-stop -k in the middle of a download, and finishes the install', async () => {
    const name = names[1]!;
    let restarted = 0;
    await lab.throttle(name, 4);
    try {
      await client.api.json('POST', `/api/v1/probes/${name}/commands`, { type: 'install', packSha256: bigPack.sha256 });
      const part = join(lab.upperOf(name), 'var/lib/sonde/staging/downloads', `${bigPack.sha256}.spk.part`);
      await waitUntil('a third of the download', async () => ((await stat(part).catch(() => null))?.size ?? 0) > bigPack.size / 3, 60_000, 50);
      await lab.stopProbe(name, true);
      restarted = Date.now();
      await lab.startProbe(name);
    } finally {
      await lab.throttle(name, null);
    }
    // The accepted command survives the power cut: the download resumes and the install commits.
    await waitUntil(
      `${name} on 1.1.1`,
      async () => {
        const d = await detail(name);
        return d.version === '1.1.1' && d.health === 'ok' && d.commands.some((c) => c.status === 'succeeded');
      },
      120_000,
    );
    expect(await expectWhole(name, restarted)).toBe('1.1.1');
    // It went on from the bytes it had kept, not from zero.
    expect(await lab.agentLog(name)).toMatch(/"resumedFrom":[1-9]/);
  }, 240_000);

  it('resumes a download after its link was cut (veth down, then up), and the install completes', async () => {
    const name = names[2]!;
    await lab.throttle(name, 4);
    const part = join(lab.upperOf(name), 'var/lib/sonde/staging/downloads', `${bigPack.sha256}.spk.part`);
    let keptAtCut = 0;
    try {
      await client.api.json('POST', `/api/v1/probes/${name}/commands`, { type: 'install', packSha256: bigPack.sha256 });
      keptAtCut = await waitUntil(
        'a quarter of the download',
        async () => {
          const size = (await stat(part).catch(() => null))?.size ?? 0;
          return size > bigPack.size / 4 ? size : 0;
        },
        60_000,
        50,
      );
      await lab.link(name, false);
      // Longer than the lab's download.idleTimeoutMs (4 s): the connection counts as interrupted.
      await new Promise((r) => setTimeout(r, 7000));
      await lab.link(name, true);
    } finally {
      await lab.throttle(name, null);
    }
    await waitUntil(
      `${name} on 1.1.1 after the cut`,
      async () => {
        const d = await detail(name);
        return d.online && d.version === '1.1.1' && d.health === 'ok' && d.commands.some((c) => c.status === 'succeeded');
      },
      120_000,
    );
    const log = await lab.agentLog(name);
    const interrupted = log.split('\n').filter((l) => l.includes('download interrupted'));
    expect(interrupted.length).toBeGreaterThan(0);
    const kept = interrupted.map((l) => (JSON.parse(l) as { keptBytes: number }).keptBytes);
    // It resumed from what it had, not from zero.
    expect(Math.max(...kept)).toBeGreaterThanOrEqual(keptAtCut);
    const done = log.split('\n').find((l) => l.includes('"download complete"'));
    expect(JSON.parse(done!)).toMatchObject({ requests: expect.any(Number) });
    expect((JSON.parse(done!) as { requests: number }).requests).toBeGreaterThan(1);
    expect((await probeStatus(lab, name)).version).toBe('1.1.1');
  }, 240_000);
});
