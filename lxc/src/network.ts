import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { run, tryRun } from './host.js';
import { LabError } from './errors.js';

/**
 * The lab bridge: one Linux bridge per lab, with the host's address `.1` of a /24 in 10.213.0.0/16
 * and the probes on `.11` upwards. It has no uplink: nothing is routed past this machine, the
 * probes get no default route, no NAT rule is written and `net.ipv4.ip_forward` is never touched
 * (DESIGN.md, "The lab").
 */
export interface LabNet {
  readonly bridge: string;
  /** The third octet: the lab's /24 is 10.213.<octet>.0/24. */
  readonly octet: number;
  readonly hostIp: string;
}

export const FIRST_PROBE_HOST = 11;
export const MAX_PROBES = 240;

/** Short, stable interface names from the lab's folder (Linux allows 15 characters). */
export function labTag(labDir: string): string {
  return createHash('sha256').update(labDir).digest('hex').slice(0, 6);
}

export function bridgeName(labDir: string): string {
  return `slb${labTag(labDir)}`;
}

export function vethName(labDir: string, index: number): string {
  return `slv${labTag(labDir)}-${index}`;
}

export function probeIp(net: LabNet, index: number): string {
  return `10.213.${net.octet}.${FIRST_PROBE_HOST + index - 1}`;
}

export function ipForward(): string {
  try {
    return readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** The 10.213.X.0/24 networks some interface of this machine already has an address in. */
async function usedOctets(): Promise<Set<number>> {
  const used = new Set<number>();
  const { stdout } = await run('ip', ['-4', '-o', 'addr', 'show'], { code: 'LAB_NETWORK_FAILED' });
  for (const m of stdout.matchAll(/inet 10\.213\.(\d+)\.\d+\//g)) used.add(Number(m[1]));
  const routes = await run('ip', ['-4', 'route', 'show'], { code: 'LAB_NETWORK_FAILED' });
  for (const m of routes.stdout.matchAll(/^10\.213\.(\d+)\.0\/24/gm)) used.add(Number(m[1]));
  return used;
}

/** The IPv4 addresses of this machine's interfaces. */
export async function localAddresses(): Promise<Set<string>> {
  const { stdout } = await run('ip', ['-4', '-o', 'addr', 'show'], { code: 'LAB_NETWORK_FAILED' });
  return new Set([...stdout.matchAll(/inet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1]!));
}

export async function bridgeExists(bridge: string): Promise<boolean> {
  return tryRun('ip', ['link', 'show', 'dev', bridge]);
}

/** Creates the lab's bridge; the caller holds the lab home's network lock. */
export async function createBridge(labDir: string, avoid: ReadonlySet<number>): Promise<LabNet> {
  const bridge = bridgeName(labDir);
  const used = await usedOctets();
  const start = parseInt(labTag(labDir).slice(0, 2), 16) % 250;
  let octet = -1;
  for (let i = 0; i < 250; i++) {
    const o = (start + i) % 250;
    if (!used.has(o) && !avoid.has(o)) {
      octet = o;
      break;
    }
  }
  if (octet < 0) throw new LabError('LAB_NETWORK_FAILED', 'every 10.213.X.0/24 network is in use on this machine');
  const hostIp = `10.213.${octet}.1`;
  const before = ipForward();
  if (await bridgeExists(bridge)) await tryRun('ip', ['link', 'del', 'dev', bridge]);
  await run('ip', ['link', 'add', 'name', bridge, 'type', 'bridge'], { code: 'LAB_NETWORK_FAILED' });
  try {
    await run('ip', ['addr', 'add', `${hostIp}/24`, 'brd', `10.213.${octet}.255`, 'dev', bridge], { code: 'LAB_NETWORK_FAILED' });
    await run('ip', ['link', 'set', 'dev', bridge, 'up'], { code: 'LAB_NETWORK_FAILED' });
  } catch (e) {
    await tryRun('ip', ['link', 'del', 'dev', bridge]);
    throw e;
  }
  if (ipForward() !== before) throw new LabError('LAB_NETWORK_FAILED', `net.ipv4.ip_forward changed from ${before} to ${ipForward()} while the bridge was made`);
  return { bridge, octet, hostIp };
}

export async function deleteBridge(bridge: string): Promise<void> {
  await tryRun('ip', ['link', 'del', 'dev', bridge]);
}

/**
 * A QEMU probe's tap on `bridge`, up (made when missing). True when this call made it (the
 * caller's to remove).
 */
export async function ensureTap(name: string, bridge: string): Promise<boolean> {
  const made = !existsSync(`/sys/class/net/${name}`);
  if (made) await run('ip', ['tuntap', 'add', 'dev', name, 'mode', 'tap'], { code: 'LAB_NETWORK_FAILED' });
  try {
    if (made) await run('ip', ['link', 'set', name, 'master', bridge], { code: 'LAB_NETWORK_FAILED' });
    await run('ip', ['link', 'set', name, 'up'], { code: 'LAB_NETWORK_FAILED' });
  } catch (e) {
    if (made) await tryRun('ip', ['link', 'del', name]);
    throw e;
  }
  return made;
}

/** Takes a probe's link down or up (the host end of its veth): a cable pulled, then plugged. */
export async function setLink(veth: string, up: boolean): Promise<void> {
  await run('ip', ['link', 'set', 'dev', veth, up ? 'up' : 'down'], { code: 'LAB_NETWORK_FAILED' });
}

/**
 * Limits what reaches a probe (the host end's egress) to `mbit` Mbit/s, or lifts the limit with
 * null: a slow site link, for tests that must catch a download in flight.
 */
export async function setRate(veth: string, mbit: number | null): Promise<void> {
  await tryRun('tc', ['qdisc', 'del', 'dev', veth, 'root']);
  if (mbit !== null) await run('tc', ['qdisc', 'add', 'dev', veth, 'root', 'tbf', 'rate', `${mbit}mbit`, 'burst', '32kbit', 'latency', '400ms'], { code: 'LAB_NETWORK_FAILED' });
}
