import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { labHome, withLock } from '../lab-state.js';
import { createBridge, deleteBridge, ensureTap, probeIp, type LabNet } from '../network.js';

/**
 * The power-cut harness's network (docs/slots.md, "Power cuts"): the lab's kind of unrouted
 * bridge (10.213.X.0/24, no route out, ip_forward untouched), the fleet server listening on the
 * bridge's host address under its own CA, and each QEMU probe a tap on the bridge. The agent
 * refuses plain http/mqtt off loopback, and a guest's loopback is its own: so the probe reaches the
 * server as a lab probe does, over TLS to an address on this machine.
 */
export class CutNetwork {
  private readonly taps = new Set<string>();

  private constructor(
    readonly net: LabNet,
    private readonly tag: string,
  ) {}

  /** Makes the bridge (under the lab home's network lock, so no lab takes the same /24). */
  static async create(dir: string): Promise<CutNetwork> {
    await mkdir(labHome(), { recursive: true, mode: 0o700 });
    const net = await withLock(join(labHome(), 'net.lock'), 'the lab networks', async () => createBridge(dir, new Set()));
    return new CutNetwork(net, net.bridge.slice(3));
  }

  /** Probe `index` (1..240): its address with the prefix, for its data partition's network file. */
  address(index: number): string {
    return `${probeIp(this.net, ((index - 1) % 240) + 1)}/24`;
  }

  /** A tap for probe `index` on the bridge, up; removed by close() if not before. */
  async tap(index: number): Promise<string> {
    const name = `slp${this.tag}-${index % 1000}`;
    if (await ensureTap(name, this.net.bridge)) this.taps.add(name);
    return name;
  }

  removeTap(name: string): void {
    if (existsSync(`/sys/class/net/${name}`)) spawnSync('ip', ['link', 'del', name], { stdio: 'ignore' });
    this.taps.delete(name);
  }

  async close(): Promise<void> {
    for (const t of [...this.taps]) this.removeTap(t);
    await deleteBridge(this.net.bridge);
  }
}
