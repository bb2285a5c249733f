import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sonde, waitUntil } from '../helpers/lab.js';
import { Lab } from '../../lxc/src/lab.js';
import type { LabState } from '../../lxc/src/lab-state.js';
import { PodmanBackend } from '../../lxc/src/podman-backend.js';
import { netnsName } from '../../lxc/src/probe-netns.js';

/**
 * The podman backend (lxc/src/podman-backend.ts): the lab's contract on containers that
 * testcontainers starts on the lab's own podman service. A fresh lab home, a lab of its own, the
 * real CLI. LXC stays the default; outside CI this suite skips where podman is missing, and in CI
 * (scripts/setup.sh installs podman and runc) a missing engine fails it instead.
 */
const root = typeof process.getuid === 'function' && process.getuid() === 0;
const unsupported = root ? PodmanBackend.available() : 'the lab needs root';
const SKIP = unsupported !== null && !process.env['CI'];
const LAB = `pm${process.pid}`.slice(0, 12);
const forwarding = (): string => readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();

interface LsProbe {
  name: string;
  container: string;
  online: boolean;
  version: string | null;
  health: string | null;
}

function podman(url: string, args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('podman', ['--url', url, ...args], { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0, stdout, stderr });
    });
  });
}

/** Processes whose command line names `dir` (the lab's podman service, conmon, cleanups). */
function processesUnder(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((e) => /^\d+$/.test(e))) {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (argv.some((a) => a.includes(dir))) found.push(`${pid} ${argv.join(' ').trim()}`);
    } catch {
      // gone
    }
  }
  return found;
}

describe.skipIf(SKIP)(`sonde lab on the podman backend${SKIP ? ` (skipped: ${unsupported})` : ''}`, () => {
  let home = '';
  let names: string[] = [];
  let lab: Lab;
  let state: LabState;
  const forwardingBefore = forwarding();
  const cli = (args: readonly string[], env: NodeJS.ProcessEnv = {}): ReturnType<typeof sonde> => sonde([...args, '--lab', LAB], { SONDE_LAB_HOME: home, ...env });
  const ls = async (): Promise<LsProbe[]> => {
    const r = await cli(['lab', 'ls', '--json']);
    expect(r.code, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { probes: LsProbe[] }).probes;
  };

  beforeAll(async () => {
    home = await mkdtemp(join(tmpdir(), 'sonde-pm-'));
    const up = await cli(['lab', 'up', '--count', '2', '--line', 'stable'], { SONDE_LAB_BACKEND: 'podman' });
    expect(up.code, up.stderr).toBe(0);
    names = up.stdout.trim().split('\n');
    lab = await Lab.open(LAB, { home });
    state = (await lab.state())!;
  }, 240_000);

  afterAll(async () => {
    if (!home) return;
    await cli(['lab', 'down', '--all']);
    await rm(home, { recursive: true, force: true });
  }, 120_000);

  it('brings up both probes on the lab\'s own podman engine, online and healthy on 1.1.0', async () => {
    expect(state.backend).toBe('podman');
    expect(names).toEqual([`${LAB}-01`, `${LAB}-02`]);
    expect((await ls()).map((p) => [p.name, p.container, p.online, p.version, p.health])).toEqual([
      [`${LAB}-01`, 'running', true, '1.1.0', 'ok'],
      [`${LAB}-02`, 'running', true, '1.1.0', 'ok'],
    ]);
    const ps = await podman(`unix://${join(lab.paths.dir, 'podman', 'podman.sock')}`, ['ps', '-a', '--format', '{{.Names}}']);
    expect(ps.code, ps.stderr).toBe(0);
    expect(ps.stdout.trim().split('\n').sort()).toEqual(names);
  });

  it('gives each probe its address on the lab bridge, busybox init as PID 1, no default route, and leaves ip_forward alone', async () => {
    for (const p of state.probes) {
      const routes = await lab.exec(p.name, ['/usr/bin/busybox', 'ip', 'route']);
      expect(routes.code, routes.stderr).toBe(0);
      expect(routes.stdout.trim().split('\n')).toEqual([expect.stringMatching(new RegExp(`^10\\.213\\.${state.net.octet}\\.0/24 dev eth0`))]);
      expect((await lab.exec(p.name, ['/usr/bin/busybox', 'cat', '/proc/1/cmdline'])).stdout).toBe('/bin/busybox\0init\0');
      const ping = await lab.exec(p.name, ['/usr/bin/busybox', 'ping', '-c', '1', '-W', '2', state.net.hostIp]);
      expect(ping.code, ping.stdout).toBe(0);
      // A clean environment: nothing of the host's reaches a command in the probe.
      const env = await lab.exec(p.name, ['/usr/bin/busybox', 'env']);
      expect(env.stdout).toContain('HOME=/root');
      expect(env.stdout).not.toContain('SONDE_LAB_HOME');
    }
    expect(forwarding()).toBe(forwardingBefore);
  });

  it('installs a pack dropped on one probe over FTP: ls shows it on 1.1.1, the other stays on 1.1.0', async () => {
    const [first, second] = names as [string, string];
    const put = await cli(['lab', 'ftp-put', first, join(home, 'images', 'samples-2', 'probe-app-1.1.1.spk')]);
    expect(put.code, put.stderr).toBe(0);
    const probes = await waitUntil(`${first} on 1.1.1 in lab ls`, async () => {
      const all = await ls();
      return all.find((p) => p.name === first)?.version === '1.1.1' ? all : null;
    }, 90_000, 500);
    expect(probes.find((p) => p.name === first)).toMatchObject({ online: true, health: 'ok' });
    expect(probes.find((p) => p.name === second)?.version).toBe('1.1.0');
    // The probe's writes land in its own layer on the host, as with LXC.
    expect(await readFile(join(lab.upperOf(first), 'var/log/vsftpd.log'), 'utf8')).toContain('probe-app-1.1.1.spk');
  }, 120_000);

  it('a killed probe loses every process but keeps its files, and comes back healthy when started', async () => {
    const name = names[1]!;
    expect((await lab.exec(name, ['/usr/bin/busybox', 'sh', '-c', 'echo kept > /root/kept'])).code).toBe(0);
    await lab.stopProbe(name, true);
    expect(await lab.backend.state(name)).toBe('stopped');
    expect((await lab.exec(name, ['/bin/true'])).code).not.toBe(0);
    expect(await readFile(join(lab.upperOf(name), 'root/kept'), 'utf8')).toBe('kept\n');
    await lab.startProbe(name);
    expect((await lab.exec(name, ['/usr/bin/busybox', 'cat', '/root/kept'])).stdout).toBe('kept\n');
    const boots = (await readFile(join(lab.upperOf(name), 'var/log/boot.log'), 'utf8')).trim().split('\n');
    expect(boots).toHaveLength(2);
    await lab.waitHealthy([{ name, version: '1.1.0' }], 60_000);
  }, 90_000);

  it('down --all leaves no container, netns, veth, bridge, mount, podman service, conmon or folder behind', async () => {
    const engine = join(lab.paths.dir, 'podman');
    expect(processesUnder(engine).length).toBeGreaterThan(0);
    const down = await cli(['lab', 'down', '--all']);
    expect(down.code, down.stderr).toBe(0);
    expect(processesUnder(engine)).toEqual([]);
    // Nothing answers on the engine's socket any more, so no container can be listed there.
    expect((await podman(`unix://${join(engine, 'podman.sock')}`, ['ps', '-a'])).code).not.toBe(0);
    const netns = execFileSync('ip', ['netns', 'list']).toString();
    for (const p of state.probes) expect(netns).not.toContain(netnsName(p.veth));
    const links = execFileSync('ip', ['-o', 'link', 'show']).toString();
    expect(links).not.toContain(state.net.bridge);
    for (const p of state.probes) expect(links).not.toContain(`${p.veth}@`);
    expect(await readFile('/proc/mounts', 'utf8')).not.toContain(lab.paths.dir);
    expect(existsSync(lab.paths.dir)).toBe(false);
    expect(forwarding()).toBe(forwardingBefore);
  }, 60_000);
});
