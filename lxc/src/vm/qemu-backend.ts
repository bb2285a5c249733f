import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ExecResult, ProbeBackend, ProbeRunState, ProbeSpec } from '../backend.js';
import { LabError } from '../errors.js';
import { isRoot, run, which } from '../host.js';
import { processAlive as alive } from '../../../base/src/os/process-alive.js';
import { macFor } from './qemu.js';
import { ensureTap } from '../network.js';

/**
 * The lab's QEMU engine (`sonde lab up --vm`, docs/lab.md): each probe a QEMU machine under TCG
 * booting its own disk (images/src/vm) through GRUB (or Debian's U-Boot ROM: `--bootloader uboot`), its network a tap device on the lab's own
 * unrouted bridge (the LXC probes' bridge: no route out), its serial console into the probe's
 * console log. QEMU runs daemonized with a pid file; stopping it with `kill` is a power cut.
 * There is no way into the guest from the host: exec and shell are refused.
 */
interface VmDefinition {
  readonly name: string;
  readonly disk: string;
  readonly tap: string;
  readonly bridge: string;
  readonly consoleLog: string;
  readonly pidFile: string;
  /** U-Boot's ROM instead of the BIOS and GRUB (absent: GRUB). */
  readonly bios?: string;
}

export class QemuBackend implements ProbeBackend {
  readonly kind = 'qemu' as const;

  constructor(private readonly dir: string) {}

  static available(): string | null {
    if (!isRoot()) return 'QEMU probes need root (tap devices on the lab bridge, loop devices to build the disk)';
    for (const tool of ['qemu-system-x86_64', 'grub-install', 'grub-editenv', 'sfdisk', 'mkfs.ext4', 'losetup', 'mkimage', 'fw_setenv']) {
      if (!which(tool)) return `${tool} is missing (scripts/setup.sh installs qemu-system-x86, grub-pc-bin, grub2-common, fdisk, e2fsprogs, u-boot-tools, libubootenv-tool)`;
    }
    return null;
  }

  private defFile(name: string): string {
    return join(this.dir, `${name}.json`);
  }

  private async def(name: string): Promise<VmDefinition | null> {
    try {
      return JSON.parse(await readFile(this.defFile(name), 'utf8')) as VmDefinition;
    } catch {
      return null;
    }
  }

  /** `spec.upper` is the probe's folder holding disk.img (made by the lab, vm-lab.ts); `spec.veth` names its tap. */
  async create(spec: ProbeSpec): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const d: VmDefinition = { name: spec.name, disk: join(spec.upper, 'disk.img'), tap: spec.veth, bridge: spec.bridge, consoleLog: spec.consoleLog, pidFile: join(spec.upper, 'qemu.pid'), ...(spec.bios ? { bios: spec.bios } : {}) };
    await writeFile(this.defFile(spec.name), `${JSON.stringify(d, null, 2)}\n`);
  }

  private async pid(d: VmDefinition): Promise<number | null> {
    const pid = Number((await readFile(d.pidFile, 'utf8').catch(() => '')).trim());
    return Number.isInteger(pid) && pid > 0 && alive(pid) ? pid : null;
  }

  async start(name: string): Promise<void> {
    const d = await this.def(name);
    if (!d) throw new LabError('LAB_PROBE_NOT_FOUND', `no QEMU probe ${name}`);
    if ((await this.pid(d)) !== null) return;
    await ensureTap(d.tap, d.bridge);
    await run(
      'qemu-system-x86_64',
      ['-accel', 'tcg', '-cpu', 'max', '-m', '1024', '-smp', '1', ...(d.bios ? ['-bios', d.bios] : []), '-nodefaults', '-no-user-config', '-display', 'none', '-monitor', 'none',
        '-serial', `file:${d.consoleLog}`, '-drive', `file=${d.disk},format=raw,if=virtio,cache=writeback`,
        '-netdev', `tap,id=n0,ifname=${d.tap},script=no,downscript=no`, '-device', `virtio-net-pci,netdev=n0,mac=${macFor(d.tap)}`,
        '-daemonize', '-pidfile', d.pidFile, '-name', name],
      { code: 'LAB_PROBE_FAILED', timeoutMs: 60_000 },
    );
  }

  async stop(name: string, _opts: { kill: boolean }): Promise<void> {
    const d = await this.def(name);
    const pid = d ? await this.pid(d) : null;
    if (pid === null) return;
    // No guest agent to halt it cleanly: both are a power cut (the probe is made for them).
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
  }

  async destroy(name: string): Promise<void> {
    await this.stop(name, { kill: true });
    const d = await this.def(name);
    if (d && existsSync(`/sys/class/net/${d.tap}`)) spawnSync('ip', ['link', 'del', d.tap], { stdio: 'ignore' });
    await rm(this.defFile(name), { force: true });
  }

  async state(name: string): Promise<ProbeRunState> {
    const d = await this.def(name);
    if (!d) return 'missing';
    return (await this.pid(d)) !== null ? 'running' : 'stopped';
  }

  async known(): Promise<string[]> {
    return (await readdir(this.dir).catch(() => [] as string[])).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5));
  }

  async exec(name: string): Promise<ExecResult> {
    throw new LabError('LAB_UNSUPPORTED', `${name} is a QEMU probe: nothing runs in it from the host; its console is \`sonde lab logs ${name}\``);
  }

  shellCommand(name: string): readonly string[] {
    return ['sh', '-c', `echo "${name} is a QEMU probe: no shell from the host; its console: sonde lab logs ${name}" >&2; exit 1`];
  }
}
