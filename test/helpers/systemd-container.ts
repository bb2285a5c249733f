import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A Linux container whose PID 1 is real systemd (notes/machine-facts.md §1b: systemd 252 boots in
 * an LXC container here in about half a second), for the systemd runner's tests: a small /etc of
 * its own over the host's /usr read-only, the repository (dist and node_modules) read-only at
 * /opt/sonde, and a shared folder at /w. No network but loopback.
 */
export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const SONDE_IN_CONTAINER = '/opt/sonde/dist/cli/src/sonde.js';

export interface Exec {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface SystemdContainer {
  readonly name: string;
  /** The host folder seen as /w inside. */
  readonly shared: string;
  exec(argv: readonly string[], timeoutMs?: number): Promise<Exec>;
  /** `sonde ...args` inside, as root, with the host's node. */
  sonde(args: readonly string[], timeoutMs?: number): Promise<Exec>;
  destroy(): Promise<void>;
}

export function run(cmd: string, args: readonly string[], timeoutMs = 60_000): Promise<Exec> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

async function writeLowerLayer(dir: string): Promise<void> {
  for (const d of ['usr', 'etc/systemd/system', 'var/log', 'var/lib', 'tmp', 'run', 'proc', 'sys', 'dev', 'root', 'opt/sonde', 'w']) {
    await mkdir(join(dir, d), { recursive: true });
  }
  // The host is merged-/usr.
  for (const l of ['bin', 'lib', 'lib64', 'sbin']) await symlink(`usr/${l}`, join(dir, l));
  await writeFile(join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n');
  await writeFile(join(dir, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\nsystemd-journal:x:999:\n');
  await writeFile(join(dir, 'etc/nsswitch.conf'), 'hosts: files\npasswd: files\ngroup: files\n');
  await writeFile(join(dir, 'etc/hosts'), '127.0.0.1 localhost\n');
  await symlink('../usr/lib/os-release', join(dir, 'etc/os-release'));
  // Empty: systemd makes a transient machine id at each boot.
  await writeFile(join(dir, 'etc/machine-id'), '');
}

export async function startSystemdContainer(scratchDir: string): Promise<SystemdContainer> {
  const name = `sonde-sd-${randomBytes(3).toString('hex')}`;
  const lxcPath = join(scratchDir, 'lxc');
  const lower = join(scratchDir, 'lower');
  const upper = join(scratchDir, 'upper');
  const shared = join(scratchDir, 'shared');
  await mkdir(join(lxcPath, name), { recursive: true });
  await mkdir(upper, { recursive: true });
  await mkdir(shared, { recursive: true });
  await writeLowerLayer(lower);
  const config = lxcSystemdConfig(name, `overlay:${lower}:${upper}`, lxcPath, ['/usr usr none ro,bind 0 0', `${REPO} opt/sonde none ro,bind 0 0`, `${shared} w none bind 0 0`]);
  await writeFile(join(lxcPath, name, 'config'), config);
  const base = ['-P', lxcPath, '-n', name];
  const started = await run('lxc-start', [...base, '-d', '-L', join(lxcPath, name, 'start.log')]);
  if (started.code !== 0) throw new Error(`lxc-start failed: ${started.stderr}`);
  const exec = (argv: readonly string[], timeoutMs = 120_000): Promise<Exec> =>
    run('lxc-attach', [...base, '--clear-env', '-v', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', '-v', 'HOME=/root', '--', ...argv], timeoutMs);
  const destroy = async (): Promise<void> => {
    await run('lxc-stop', [...base, '-k']);
    await rm(scratchDir, { recursive: true, force: true });
  };
  await waitForSystemd(exec, destroy, 30_000);
  return {
    name,
    shared,
    exec,
    sonde: (args, timeoutMs) => exec(['/usr/bin/node', SONDE_IN_CONTAINER, ...args], timeoutMs),
    destroy,
  };
}

/** An LXC config whose PID 1 is systemd, no network but loopback, these extra mount entries. */
export function lxcSystemdConfig(name: string, rootfs: string, lxcPath: string, mounts: readonly string[]): string {
  return [
    `lxc.uts.name = ${name}`,
    `lxc.rootfs.path = ${rootfs}`,
    'lxc.init.cmd = /lib/systemd/systemd',
    'lxc.environment = container=lxc',
    'lxc.apparmor.profile = unconfined',
    'lxc.autodev = 1',
    'lxc.tty.max = 0',
    'lxc.pty.max = 16',
    'lxc.cap.drop = sys_module mac_admin mac_override sys_time sys_boot',
    'lxc.mount.auto = proc:mixed sys:mixed cgroup:mixed',
    ...mounts.map((m) => `lxc.mount.entry = ${m}`),
    'lxc.net.0.type = empty',
    `lxc.console.logfile = ${join(lxcPath, name, 'console.log')}`,
    '',
  ].join('\n');
}

/** Polls until systemd says running or degraded (`is-system-running --wait` fails before the bus is up: machine-facts.md). */
export async function waitForSystemd(exec: (argv: readonly string[], timeoutMs?: number) => Promise<Exec>, destroy: () => Promise<void>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await exec(['systemctl', 'is-system-running'], 10_000);
    const state = r.stdout.trim();
    if (state === 'running' || state === 'degraded') return;
    if (Date.now() > deadline) {
      await destroy();
      throw new Error(`systemd did not come up in the container: ${state} ${r.stderr}`);
    }
    await new Promise((res) => setTimeout(res, 200));
  }
}
