import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { labHome, withLock } from '../lab-state.js';
import { createBridge, deleteBridge, ensureTap, probeIp, type LabNet } from '../network.js';
import { NEW_PACK } from './power-cut-judge.js';
import type { VmStatus } from './vm-probe.js';

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

/** The fleet server of a power-cut run (the harness's own, on its unrouted bridge: power-cut-net.ts). */
export interface HarnessServer {
  readonly network: CutNetwork;
  /** Enrolls `probeId`; the enrollment file's text, with URLs the guest can reach. */
  enroll(probeId: string): Promise<string>;
  /** What the server shows for the probe: the release and slot it last reported. */
  view(probeId: string): Promise<{ readonly version: string | null; readonly slot: string | null; readonly stateAt: string | null } | null>;
}

/**
 * A running fleet server as the harness needs it: its loopback URL and admin token for the
 * harness, `probeUrl` (https on the bridge's host address) for the probes.
 */
export function harnessServer(base: string, admin: string, probeUrl: string, network: CutNetwork): HarnessServer {
  const call = async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const r = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${admin}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await r.text();
    return { status: r.status, body: (text ? JSON.parse(text) : null) as T };
  };
  return {
    network,
    async enroll(probeId) {
      const r = await call<unknown>('POST', `/api/v1/probes/${probeId}/enroll`, { serverUrl: probeUrl });
      if (r.status >= 300) throw new Error(`enrolling ${probeId}: HTTP ${r.status} ${JSON.stringify(r.body)}`);
      return JSON.stringify(r.body);
    },
    async view(probeId) {
      const r = await call<{ version: string | null; slot: string | null; stateAt: string | null }>('GET', `/api/v1/probes/${probeId}`);
      return r.status === 200 ? r.body : null;
    },
  };
}

/**
 * The server's view, once the probe has reported what it runs at rest: "new" (1.1.0 in slot b),
 * "old" (nothing committed), or what the server shows if it never matches within `timeoutMs`.
 */
export async function serverCheck(server: HarnessServer, probeId: string, st: VmStatus, timeoutMs = 120_000, newVersion: string = NEW_PACK): Promise<string> {
  const until = Date.now() + timeoutMs;
  let last: { version: string | null; slot: string | null; stateAt: string | null } | null = null;
  for (;;) {
    last = await server.view(probeId).catch(() => null);
    if (last && last.stateAt !== null && last.version === st.status!.version && (last.version === null || last.slot === st.status!.slot)) break;
    if (Date.now() > until) return `the server shows ${JSON.stringify(last)}; the probe runs ${JSON.stringify({ version: st.status!.version, slot: st.status!.slot })}`;
    await new Promise((r) => setTimeout(r, 1000));
  }
  if (last.version === null) return 'old';
  return last.version === newVersion && last.slot === 'b' ? 'new' : `the server shows ${last.version} in slot ${last.slot}`;
}
