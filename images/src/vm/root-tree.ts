import { execFile } from 'node:child_process';
import { chmod, copyFile, cp, mkdir, realpath, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { fwEnvConfig, UBOOT_DEFAULT_ENV, VM_FW_ENV_CONFIG, VM_UBOOT_DEFAULT_ENV } from './uboot.js';

const run = promisify(execFile);

/**
 * The root file system of a QEMU probe (docs/slots.md, "The QEMU probe"), built from what is on
 * this machine: busybox (init, shell, mount, reboot), the host's `node` and the libraries `ldd`
 * names, grub-editenv and fw_printenv/fw_setenv for the boot environment (GRUB's or U-Boot's),
 * the agent (the sonde-agent package's tree) at /usr/lib/sonde, and the release at
 * /opt/sonde/release. Merged /usr, as Debian. Read-only at run time: what changes lives on the
 * data partition, mounted at /data.
 */
export const VM_AGENT_HOME = '/usr/lib/sonde';
export const VM_DATA = '/data';
export const VM_AGENT_CONFIG = '/data/sonde/agent.json';
export const VM_PROBE_ROOT = '/data/probe';
export const VM_INBOX = '/data/drop/incoming';
/** Where rcS counts the disk's boots (on the data partition). */
export const VM_BOOT_COUNT = '/data/sonde/boots';
/** What rcS prints on the serial console once the slot is up, and what the agent's exit prints. */
export const VM_BOOT_MARK = 'sonde-vm: booted slot';

const APPLETS = ['sh', 'ash', 'mount', 'umount', 'mkdir', 'cat', 'echo', 'ls', 'sync', 'reboot', 'poweroff', 'halt', 'hostname', 'ip', 'sleep', 'ps', 'kill', 'date', 'grep', 'sed', 'rm', 'cp', 'mv', 'ln', 'chmod', 'env', 'true', 'false', 'test', '[', 'uname', 'dmesg', 'tail', 'head', 'wc', 'sha256sum', 'mountpoint', 'fsck', 'printf', 'awk', 'stat', 'touch', 'dd', 'blockdev', 'tr'];
const SBIN_APPLETS = ['init', 'switch_root', 'modprobe', 'insmod'];

/** Copies `binary` and every library `ldd` names for it into `tree`, at the same paths. */
async function withLibraries(tree: string, binary: string): Promise<void> {
  const real = await realpath(binary);
  await mkdir(dirname(join(tree, binary)), { recursive: true });
  await copyFile(real, join(tree, binary));
  await chmod(join(tree, binary), 0o755);
  const out = (await run('ldd', [real])).stdout;
  for (const m of out.matchAll(/(\/\S+) \(0x/g)) {
    const lib = m[1]!;
    const dest = join(tree, lib.replace(/^\/lib(64)?\//, '/usr/lib$1/'));
    await mkdir(dirname(dest), { recursive: true });
    await copyFile(await realpath(lib), dest);
  }
}

export interface RootTreeOptions {
  /** The sonde-agent package's /usr/lib/sonde (dist, production node_modules, package.json). */
  readonly agentTree: string;
  readonly hostname?: string;
  /** A broken system, for the tests: /sbin/init exits at once (the kernel panics, panic=-1 reboots). */
  readonly brokenInit?: boolean;
}

const INITTAB = `# Sonde QEMU probe (images/src/vm/root-tree.ts): busybox init
::sysinit:/etc/init.d/rcS
::respawn:/etc/sonde/run-agent
::respawn:/etc/sonde/report-status
::shutdown:/bin/sync
`;

const RCS = `#!/bin/sh
# The probe's boot: the root is read-only (an A/B slot); what changes is on /data.
mount -t proc proc /proc 2>/dev/null
mount -t sysfs sysfs /sys 2>/dev/null
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /run/lock
mount -t ext4 -o rw,noatime /dev/vda4 ${VM_DATA} || echo "sonde-vm: the data partition did not mount"
mount -t ext4 -o rw,noatime /dev/vda1 /boot || echo "sonde-vm: the boot partition did not mount"
hostname -F /etc/hostname
ip link set lo up
# A lab probe's address on the lab bridge (sonde lab up --vm); no default route, ever.
[ -f /data/sonde/network ] && . /data/sonde/network
# The initrd's udev loaded virtio_net and named the interface (ens2): the first one that is not lo.
if [ -n "$ADDR" ]; then
  dev=$(ls /sys/class/net | grep -v '^lo$' | head -n 1)
  ip link set "$dev" up && ip addr add "$ADDR" dev "$dev"
fi
mkdir -p ${VM_DATA}/log ${VM_INBOX}
slot=$(sed -n 's/.*sonde\\.slot=\\([A-Za-z0-9_]*\\).*/\\1/p' /proc/cmdline)
# Boots of this disk, counted (the power-cut harness cuts in a chosen boot: SONDE_CRASH_BOOT).
boots=$(( $(cat ${VM_BOOT_COUNT} 2>/dev/null || echo 0) + 1 ))
echo "$boots" > ${VM_BOOT_COUNT}
echo "$boots" > /run/sonde-boot
echo "${VM_BOOT_MARK} $slot ($(cat /proc/sys/kernel/random/boot_id)) boot $boots" > /dev/console
`;

/** Environment for the agent a test or the power-cut harness puts on the data partition (fault points). */
export const VM_AGENT_ENV = '/data/sonde/agent.env';

const RUN_AGENT = `#!/bin/sh
# Started (and restarted when it exits) by busybox init; its log goes to the console.
[ -f ${VM_AGENT_ENV} ] && set -a && . ${VM_AGENT_ENV} && set +a
# A fault point for another boot of this disk is not armed in this one.
if [ -n "$SONDE_CRASH_BOOT" ] && [ "$SONDE_CRASH_BOOT" != "$(cat /run/sonde-boot 2>/dev/null)" ]; then unset SONDE_CRASH_AT; fi
exec /usr/bin/node ${VM_AGENT_HOME}/dist/cli/src/sonde.js agent run --config ${VM_AGENT_CONFIG} > /dev/console 2>&1
`;

/** What the agent's status says, one line on the console every few seconds, for the lab and the power-cut harness. */
export const VM_STATUS_MARK = 'sonde-status:';
const REPORT_STATUS = `#!/bin/sh
sleep 5
s=$(/usr/bin/node ${VM_AGENT_HOME}/dist/cli/src/sonde.js agent status --config ${VM_AGENT_CONFIG} --json 2>/dev/null | tr -d '\\n')
n=$(ls ${VM_INBOX} 2>/dev/null | wc -l)
echo "${VM_STATUS_MARK} {\\"inbox\\":$n,\\"status\\":\${s:-null}}" > /dev/console
`;

export async function buildRootTree(tree: string, o: RootTreeOptions): Promise<void> {
  for (const d of ['usr/bin', 'usr/sbin', 'usr/lib', 'usr/lib64', 'etc/init.d', 'etc/sonde', 'proc', 'sys', 'dev', 'run', 'tmp', 'boot', 'data', 'mnt', 'root', 'var']) {
    await mkdir(join(tree, d), { recursive: true });
  }
  for (const [link, to] of [['bin', 'usr/bin'], ['sbin', 'usr/sbin'], ['lib', 'usr/lib'], ['lib64', 'usr/lib64']] as const) await symlink(to, join(tree, link));
  await symlink('/run', join(tree, 'var', 'run'));
  await symlink('/tmp', join(tree, 'var', 'tmp'));
  await symlink('/run/lock', join(tree, 'var', 'lock'));
  await copyFile('/bin/busybox', join(tree, 'usr/bin/busybox'));
  await chmod(join(tree, 'usr/bin/busybox'), 0o755);
  for (const a of APPLETS) await symlink('busybox', join(tree, 'usr/bin', a));
  for (const a of SBIN_APPLETS) await symlink('../bin/busybox', join(tree, 'usr/sbin', a));
  await withLibraries(tree, '/usr/bin/node');
  await withLibraries(tree, '/usr/bin/grub-editenv');
  // U-Boot's environment tools (libubootenv), for the same disk booted through U-Boot (uboot.ts).
  await withLibraries(tree, '/usr/bin/fw_printenv');
  await withLibraries(tree, '/usr/bin/fw_setenv');
  await writeFile(join(tree, VM_FW_ENV_CONFIG.slice(1)), fwEnvConfig('/dev/vda'));
  await writeFile(join(tree, VM_UBOOT_DEFAULT_ENV.slice(1)), `${UBOOT_DEFAULT_ENV.join('\n')}\n`);
  await cp(o.agentTree, join(tree, VM_AGENT_HOME.slice(1)), { recursive: true, verbatimSymlinks: true });
  await writeFile(join(tree, 'etc/inittab'), INITTAB);
  await writeFile(join(tree, 'etc/init.d/rcS'), RCS, { mode: 0o755 });
  await writeFile(join(tree, 'etc/sonde/run-agent'), RUN_AGENT, { mode: 0o755 });
  await writeFile(join(tree, 'etc/sonde/report-status'), REPORT_STATUS, { mode: 0o755 });
  await writeFile(join(tree, 'etc/hostname'), `${o.hostname ?? 'vmprobe'}\n`);
  await writeFile(join(tree, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
  await writeFile(join(tree, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
  await writeFile(join(tree, 'etc/fstab'), '');
  if (o.brokenInit) {
    await run('rm', ['-f', join(tree, 'usr/sbin/init')]);
    await writeFile(join(tree, 'usr/sbin/init'), '#!/bin/sh\necho "sonde-vm: this system\'s init fails"\nexit 1\n', { mode: 0o755 });
  }
}
