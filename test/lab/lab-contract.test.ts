import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LAB_HOME, LAB_SKIP, labClient, labSamples, openLab, probeStatus, sonde, waitUntil } from '../helpers/lab.js';
import type { Lab } from '../../lxc/src/lab.js';

/**
 * The lab's contract (issue 6): `lab up` returns once the fleet server reports every probe healthy
 * and prints their names; `lab ls --json`; a probe's FTP drop installs what support staff upload;
 * `lab down --all` leaves no container, bridge, veth, mount, process or folder behind. Real LXC.
 */
const LAB = 'econtract';
const forwardingBefore = existsSync('/proc/sys/net/ipv4/ip_forward') ? execFileSync('cat', ['/proc/sys/net/ipv4/ip_forward']).toString().trim() : '';

interface LsProbe {
  name: string;
  ip: string;
  container: string;
  online: boolean;
  version: string | null;
  health: string | null;
}

describe.skipIf(LAB_SKIP)('sonde lab (LXC probes on a private bridge)', () => {
  let lab: Lab;
  let names: string[] = [];

  beforeAll(async () => {
    await sonde(['lab', 'down', '--all', '--lab', LAB]);
    const up = await sonde(['lab', 'up', '--count', '2', '--line', 'stable', '--lab', LAB]);
    expect(up.code, up.stderr).toBe(0);
    names = up.stdout.trim().split('\n');
    lab = await openLab(LAB);
  }, 300_000);

  afterAll(async () => {
    await sonde(['lab', 'down', '--all', '--lab', LAB]);
  }, 120_000);

  it('prints the names of the probes it brought up, and ls --json shows them online, healthy, on the line', async () => {
    expect(names).toEqual([`${LAB}-01`, `${LAB}-02`]);
    const ls = await sonde(['lab', 'ls', '--json', '--lab', LAB]);
    expect(ls.code, ls.stderr).toBe(0);
    const view = JSON.parse(ls.stdout) as { exists: boolean; probes: LsProbe[] };
    expect(view.exists).toBe(true);
    // A lab that does not exist: ls names the ones that do, since that is most often what was meant.
    const other = await sonde(['lab', 'ls', '--lab', 'nosuchlab']);
    expect(other.code).toBe(0);
    expect(other.stdout).toMatch(new RegExp(`^no lab nosuchlab; labs here: .*\\b${LAB}\\b`));
    expect(view.probes.map((p) => [p.name, p.container, p.online, p.version, p.health])).toEqual([
      [`${LAB}-01`, 'running', true, '1.1.0', 'ok'],
      [`${LAB}-02`, 'running', true, '1.1.0', 'ok'],
    ]);
  });

  it('records the images its server and probes were made from, and lab prune keeps them', async () => {
    const state = (await lab.state())!;
    expect(state.images).toEqual(expect.arrayContaining(['samples-2', expect.stringMatching(/^agent-deb-/), expect.stringMatching(/^lxc-stable-/)]));
    // Dry run: other test files share this lab home and may use what no lab records.
    const prune = await sonde(['lab', 'prune', '--dry-run', '--keep', '0s', '--json']);
    expect(prune.code, prune.stderr).toBe(0);
    const { images } = JSON.parse(prune.stdout) as { images: { name: string; action: string }[] };
    for (const name of state.images!) expect(images.find((i) => i.name === name), name).toMatchObject({ action: 'kept' });
  });

  it('gives each probe its own address on the lab bridge, no default route, and leaves ip_forward alone', async () => {
    const state = (await lab.state())!;
    for (const name of names) {
      const routes = await lab.exec(name, ['/usr/bin/busybox', 'ip', 'route']);
      expect(routes.code, routes.stderr).toBe(0);
      expect(routes.stdout).not.toMatch(/default/);
      expect(routes.stdout.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^10\\.213\\.${state.net.octet}\\.0/24 dev eth0`))]);
      const ping = await lab.exec(name, ['/usr/bin/busybox', 'ping', '-c', '1', '-W', '2', state.net.hostIp]);
      expect(ping.code, ping.stdout).toBe(0);
    }
    expect(execFileSync('cat', ['/proc/sys/net/ipv4/ip_forward']).toString().trim()).toBe(forwardingBefore);
  });

  it('installs a pack support staff drop on the probe over FTP, and the server shows the new version after the commit', async () => {
    const name = names[0]!;
    const put = await sonde(['lab', 'ftp-put', name, labSamples().packs['1.1.1'], '--lab', LAB]);
    expect(put.code, put.stderr).toBe(0);
    const client = await labClient(lab);
    const seen = await waitUntil(
      `${name} on 1.1.1 at the server`,
      async () => {
        const p = (await client.probe(name)) as unknown as { version: string; health: string; lastCommitted: { version: string } | null } | null;
        return p && p.version === '1.1.1' && p.health === 'ok' && p.lastCommitted?.version === '1.1.1' ? p : null;
      },
      90_000,
    );
    expect(seen.lastCommitted?.version).toBe('1.1.1');
    const own = await probeStatus(lab, name);
    expect(own.version).toBe('1.1.1');
    expect(own.lastOutcome).toMatchObject({ outcome: 'committed', errorCode: null });
    // The drop filed the pack with its receipt; the other probe never saw it.
    const processed = await readdir(join(lab.upperOf(name), 'var/lib/sonde/processed'));
    expect(processed.some((f) => f.startsWith('probe-app-1.1.1.spk'))).toBe(true);
    expect((await probeStatus(lab, names[1]!)).version).toBe('1.1.0');
  });

  it('down --all leaves no container, bridge, veth, mount, server process or folder behind', async () => {
    const state = (await lab.state())!;
    const serverPid = state.server?.pid;
    const down = await sonde(['lab', 'down', '--all', '--lab', LAB]);
    expect(down.code, down.stderr).toBe(0);
    const links = execFileSync('ip', ['-o', 'link', 'show']).toString();
    expect(links).not.toContain(state.net.bridge);
    for (const p of state.probes) expect(links).not.toContain(p.veth);
    expect(existsSync(join(LAB_HOME, 'labs', LAB))).toBe(false);
    expect(await readFile('/proc/mounts', 'utf8')).not.toContain(join(LAB_HOME, 'labs', LAB));
    expect(execFileSync('ip', ['netns', 'list']).toString()).not.toContain(LAB);
    if (serverPid) expect(existsSync(`/proc/${serverPid}`)).toBe(false);
    const ls = JSON.parse((await sonde(['lab', 'ls', '--json', '--lab', LAB])).stdout) as { exists: boolean; probes: unknown[] };
    expect(ls).toMatchObject({ exists: false, probes: [] });
  });
});
