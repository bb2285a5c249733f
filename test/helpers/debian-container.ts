import { randomBytes } from 'node:crypto';
import { cp, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { lxcSystemdConfig, run, waitForSystemd, type Exec } from './systemd-container.js';

/**
 * A clean Debian machine for the packages' tests: an LXC container, systemd as PID 1, whose
 * system is this host's Debian as it is now (its installed packages: nodejs, systemd, apt,
 * dpkg) seen copy-on-write, so that `dpkg -i`, `apt-get remove` and `purge` work inside and
 * change nothing on the host. No Sonde package is installed on the host, so none is in it.
 *
 * `/usr` is an overlay of the host's /usr (its upper layer on a tmpfs: overlayfs refuses an upper
 * layer on the file system of its lower one); `/etc` and `/var/lib/dpkg` (and apt's state) are
 * copies, with every unit the host enables left out (the container boots with nothing of the
 * host's services) and an empty fstab. No network but loopback.
 */
export interface DebianContainer {
  readonly name: string;
  /** The host folder seen as /w inside. */
  readonly shared: string;
  exec(argv: readonly string[], timeoutMs?: number): Promise<Exec>;
  /** A shell line inside (sh -c). */
  sh(line: string, timeoutMs?: number): Promise<Exec>;
  destroy(): Promise<void>;
}

async function must(cmd: string, args: readonly string[]): Promise<void> {
  const r = await run(cmd, args);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr.trim()}`);
}

async function writeRoot(dir: string): Promise<void> {
  for (const d of ['usr', 'var/log', 'var/lib', 'var/cache/apt/archives/partial', 'var/cache/debconf', 'tmp', 'run', 'proc', 'sys', 'dev', 'root', 'srv', 'opt', 'w', 'home']) {
    await mkdir(join(dir, d), { recursive: true });
  }
  for (const l of ['bin', 'lib', 'lib64', 'sbin']) await symlink(`usr/${l}`, join(dir, l));
  await cp('/etc', join(dir, 'etc'), { recursive: true, verbatimSymlinks: true });
  await cp('/var/lib/dpkg', join(dir, 'var/lib/dpkg'), { recursive: true, verbatimSymlinks: true });
  await cp('/var/lib/apt', join(dir, 'var/lib/apt'), { recursive: true, verbatimSymlinks: true }).catch(() => undefined);
  await cp('/var/lib/systemd/deb-systemd-helper-enabled', join(dir, 'var/lib/systemd/deb-systemd-helper-enabled'), { recursive: true }).catch(() => undefined);
  // None of the host's services: the units it enabled stay on the host.
  const units = join(dir, 'etc/systemd/system');
  for (const name of await readdir(units).catch(() => [] as string[])) {
    if (name.endsWith('.wants') || name.endsWith('.requires')) await rm(join(units, name), { recursive: true, force: true });
  }
  await writeFile(join(dir, 'etc/fstab'), '');
  await writeFile(join(dir, 'etc/machine-id'), '');
  await rm(join(dir, 'etc/resolv.conf'), { force: true });
  await writeFile(join(dir, 'etc/resolv.conf'), '');
}

export async function startDebianContainer(scratchDir: string): Promise<DebianContainer> {
  const name = `sonde-deb-${randomBytes(3).toString('hex')}`;
  const lxcPath = join(scratchDir, 'lxc');
  const tmpfs = join(scratchDir, 'tmpfs');
  const usr = join(scratchDir, 'usr');
  const root = join(scratchDir, 'root');
  const shared = join(scratchDir, 'shared');
  for (const d of [join(lxcPath, name), tmpfs, usr, root, shared]) await mkdir(d, { recursive: true });
  await must('mount', ['-t', 'tmpfs', '-o', 'size=2g,mode=0755', 'sonde-deb', tmpfs]);
  const unmount = async (): Promise<void> => {
    await run('umount', [usr]);
    await run('umount', [tmpfs]);
  };
  try {
    await mkdir(join(tmpfs, 'usr-up'));
    await mkdir(join(tmpfs, 'usr-work'));
    await mkdir(join(tmpfs, 'root-up'));
    await mkdir(join(tmpfs, 'root-work'));
    await must('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=/usr,upperdir=${join(tmpfs, 'usr-up')},workdir=${join(tmpfs, 'usr-work')}`, usr]);
    await writeRoot(root);
  } catch (e) {
    await unmount();
    throw e;
  }
  const config = lxcSystemdConfig(name, `overlay:${root}:${join(tmpfs, 'root-up')}`, lxcPath, [`${usr} usr none rw,bind 0 0`, `${shared} w none bind 0 0`]);
  await writeFile(join(lxcPath, name, 'config'), config);
  const base = ['-P', lxcPath, '-n', name];
  const destroy = async (): Promise<void> => {
    await run('lxc-stop', [...base, '-k']);
    await unmount();
    await rm(scratchDir, { recursive: true, force: true });
  };
  const started = await run('lxc-start', [...base, '-d', '-L', join(lxcPath, name, 'start.log')]);
  if (started.code !== 0) {
    await destroy();
    throw new Error(`lxc-start failed: ${started.stderr}`);
  }
  const exec = (argv: readonly string[], timeoutMs = 120_000): Promise<Exec> =>
    run('lxc-attach', [...base, '--clear-env', '-v', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', '-v', 'HOME=/root', '-v', 'DEBIAN_FRONTEND=noninteractive', '--', ...argv], timeoutMs);
  await waitForSystemd(exec, destroy, 60_000);
  // This host forbids service starts by packages (a /usr/sbin/policy-rc.d that answers 101, as
  // container images have); a customer's Debian does not. Removed in the container's /usr only.
  await exec(['rm', '-f', '/usr/sbin/policy-rc.d']);
  return { name, shared, exec, sh: (line, timeoutMs) => exec(['sh', '-c', line], timeoutMs), destroy };
}
