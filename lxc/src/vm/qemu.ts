import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';

/**
 * One QEMU probe (docs/lab.md, "QEMU probes"): qemu-system-x86_64 under TCG (KVM does not boot a
 * guest on this machine: ../shared/notes/machine-facts.md §8), its disk on virtio, its serial
 * console into a file the lab and the tests read. The network is QEMU's user networking with
 * `restrict=on`: the guest can open no connection out, only the forwards given (guestfwd: a guest
 * connection to 10.0.2.100:PORT reaches 127.0.0.1:PORT on the host, nothing else); or a tap on
 * the lab's unrouted bridge (the power-cut harness's fleet server listens there).
 *
 * kill() is a power cut: SIGKILL to QEMU drops whatever the guest kernel had not yet written to
 * its virtual disk; what it had written is in the disk file.
 */
export const GUEST_HOST_ADDR = '10.0.2.100';

export interface QemuOptions {
  readonly disk: string;
  readonly serialLog: string;
  readonly memoryMiB?: number;
  /** Host loopback ports the guest may reach as 10.0.2.100:<port>. */
  readonly forwards?: readonly number[];
  /** A firmware ROM instead of QEMU's BIOS (U-Boot's, images/src/vm/uboot.ts). */
  readonly bios?: string;
  /** A tap device (on the lab's bridge) instead of user networking; the guest's MAC derives from its name. */
  readonly tap?: string;
}

/** A locally administered MAC of QEMU's prefix, one per tap: guests on one bridge must not share one. */
export function macFor(tap: string): string {
  const h = createHash('sha256').update(tap).digest();
  return `52:54:00:${[h[0], h[1], h[2]].map((b) => b!.toString(16).padStart(2, '0')).join(':')}`;
}

export function qemuArgs(o: QemuOptions): string[] {
  const net = o.tap
    ? `tap,id=n0,ifname=${o.tap},script=no,downscript=no`
    : ['user', 'id=n0', 'restrict=on', ...(o.forwards ?? []).map((p) => `guestfwd=tcp:${GUEST_HOST_ADDR}:${p}-tcp:127.0.0.1:${p}`)].join(',');
  return [
    '-accel', 'tcg',
    '-cpu', 'max',
    '-m', String(o.memoryMiB ?? 1024),
    '-smp', '1',
    ...(o.bios ? ['-bios', o.bios] : []),
    '-nodefaults',
    '-no-user-config',
    '-display', 'none',
    '-monitor', 'none',
    '-serial', `file:${o.serialLog}`,
    '-drive', `file=${o.disk},format=raw,if=virtio,cache=writeback`,
    '-netdev', net,
    '-device', `virtio-net-pci,netdev=n0${o.tap ? `,mac=${macFor(o.tap)}` : ''}`,
  ];
}

/** Every QEMU this process started and that still runs: a bench stopped by a signal powers them off. */
const running = new Set<ChildProcess>();

/** Power cut to every QEMU this process started (SIGKILL); for a signal handler. */
export function killAllQemu(): void {
  for (const c of running) c.kill('SIGKILL');
}

export class QemuProbe {
  private child: ChildProcess | null = null;
  private exited: Promise<number | null> | null = null;

  constructor(readonly o: QemuOptions) {}

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** Powers the machine on; its console starts writing to serialLog (appended across boots by the caller's offset). */
  start(): void {
    if (this.child) throw new Error('the VM is running');
    const child = spawn('qemu-system-x86_64', qemuArgs(this.o), { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (b: Buffer) => {
      stderr = (stderr + b.toString()).slice(-4000);
    });
    running.add(child);
    this.exited = new Promise((resolve) => {
      child.on('exit', (code) => {
        running.delete(child);
        this.child = null;
        if (code !== null && code !== 0 && stderr) process.stderr.write(`qemu: ${stderr}\n`);
        resolve(code);
      });
    });
    this.child = child;
  }

  /** A power cut: SIGKILL, and wait until QEMU is gone. */
  async kill(): Promise<void> {
    const c = this.child;
    if (!c) return;
    c.kill('SIGKILL');
    await this.exited;
  }

  async console(): Promise<string> {
    return readFile(this.o.serialLog, 'utf8').catch(() => '');
  }

  /** Waits until the console, after `from` characters, matches `re`; returns the match and where it ended. */
  async waitFor(re: RegExp, timeoutMs: number, from = 0): Promise<{ match: RegExpMatchArray; end: number }> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const text = (await this.console()).slice(from);
      const m = text.match(re);
      if (m && m.index !== undefined) return { match: m, end: from + m.index + m[0].length };
      if (!this.child) throw new Error(`the VM stopped before its console showed ${re}; last lines:\n${text.split('\n').slice(-15).join('\n')}`);
      if (Date.now() > until) throw new Error(`the VM's console did not show ${re} within ${timeoutMs} ms; last lines:\n${text.split('\n').slice(-25).join('\n')}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}
