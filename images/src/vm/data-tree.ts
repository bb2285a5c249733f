import { chmod, copyFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { VM_INBOX, VM_PROBE_ROOT } from './root-tree.js';
import { VM_FW_ENV_CONFIG, VM_UBOOT_DEFAULT_ENV } from './uboot.js';

/**
 * The QEMU probe's data partition (mounted at /data): what survives a system update and what is
 * the probe's own. The slot file names the two root partitions and GRUB's environment on the boot
 * partition (mounted at /boot), and asks for a reboot with busybox's `reboot`.
 */
export interface DataTreeOptions {
  /** The vendor's root certificate (the keyring's seed) and the fleet's recipient key. */
  readonly rootCert: string;
  readonly fleetKey: string;
  readonly model: string;
  readonly appPort: number;
  /** Site variables the releases' config templates ask for. */
  readonly siteVars: Readonly<Record<string, string>>;
  /** The enrollment file (`sonde server enroll`), or null for a probe with no fleet server (the drop only). */
  readonly enrollment: string | null;
  /** Packs waiting in the FTP drop's inbox at the first boot. */
  readonly inbox?: readonly string[];
  readonly health?: { required?: number; intervalMs?: number; windowMs?: number };
}

export type VmBootloader = 'grub' | 'uboot';

/** The slot file of a probe booted through `bootloader` (the same disk boots through either). */
export function vmSlotFile(bootloader: VmBootloader = 'grub'): object {
  return {
    bootloader: bootloader === 'grub' ? { type: 'grub', env: '/boot/grub/grubenv' } : { type: 'uboot', config: VM_FW_ENV_CONFIG, defaultEnv: VM_UBOOT_DEFAULT_ENV },
    rebootCommand: ['/bin/busybox', 'reboot'],
    slots: [
      { name: 'a', type: 'block', device: '/dev/vda2', bootname: 'A' },
      { name: 'b', type: 'block', device: '/dev/vda3', bootname: 'B' },
    ],
    pair: ['a', 'b'],
  };
}

/** Where the slot file is on the data partition (relative to it). */
export const VM_SLOT_FILE_PATH = `${VM_PROBE_ROOT.replace(/^\/data\//, '')}/etc/slots.json`;

/** Loopback only and nothing listening: a probe without a fleet server still runs its drop. */
const NO_SERVER = {
  format: 'sonde-enrollment-1',
  probeId: 'vm-offline',
  token: 'offline-probe-token-0000000000000000',
  server: { http: 'http://127.0.0.1:9', mqtt: 'mqtt://127.0.0.1:9' },
};

/** Writes the slot file for `bootloader` into a data partition's tree (or its mount), `dataDir`. */
export async function writeVmSlotFile(dataDir: string, bootloader: VmBootloader = 'grub'): Promise<void> {
  await writeFile(join(dataDir, VM_SLOT_FILE_PATH), `${JSON.stringify(vmSlotFile(bootloader), null, 2)}\n`);
}

export async function buildDataTree(dir: string, o: DataTreeOptions): Promise<void> {
  const sonde = join(dir, 'sonde');
  const root = join(dir, VM_PROBE_ROOT.replace(/^\/data\//, ''));
  await mkdir(sonde, { recursive: true, mode: 0o700 });
  await mkdir(join(root, 'etc'), { recursive: true });
  await mkdir(join(dir, VM_INBOX.replace(/^\/data\//, '')), { recursive: true });
  await mkdir(join(dir, 'log'), { recursive: true });
  await copyFile(o.rootCert, join(sonde, 'root.crt'));
  await copyFile(o.fleetKey, join(sonde, 'fleet.key'));
  await chmod(join(sonde, 'fleet.key'), 0o600);
  const credentials = join(sonde, 'enrollment.json');
  if (o.enrollment) await copyFile(o.enrollment, credentials);
  else await writeFile(credentials, `${JSON.stringify(NO_SERVER, null, 2)}\n`);
  await chmod(credentials, 0o600);
  const agent = {
    root: VM_PROBE_ROOT,
    state: `${VM_PROBE_ROOT}/var/sonde`,
    credentials: '/data/sonde/enrollment.json',
    keyring: '/data/sonde/root.crt',
    recipientKey: '/data/sonde/fleet.key',
    model: o.model,
    inbox: VM_INBOX,
    drop: { scanIntervalMs: 1000, stableMs: 1000 },
    ...(o.health ? { health: o.health } : {}),
  };
  await writeFile(join(sonde, 'agent.json'), `${JSON.stringify(agent, null, 2)}\n`);
  await writeVmSlotFile(dir);
  await writeFile(join(root, 'etc', 'config.json'), `${JSON.stringify({ port: o.appPort }, null, 2)}\n`);
  await writeFile(join(root, 'etc', 'site-vars.json'), `${JSON.stringify(o.siteVars, null, 2)}\n`, { mode: 0o600 });
  for (const p of o.inbox ?? []) await copyFile(p, join(dir, VM_INBOX.replace(/^\/data\//, ''), p.split('/').pop()!));
}
