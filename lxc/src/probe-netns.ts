import { existsSync, writeFileSync } from 'node:fs';
import type { ProbeSpec } from './backend.js';
import { LabError } from './errors.js';
import { run, tryRun } from './host.js';
import { bridgeExists, ipForward } from './network.js';

/**
 * A probe's network for engines that do not make their own (podman): a named network namespace
 * holding `eth0` with the probe's address on the lab's /24 and no default route, whose veth peer
 * (the spec's `veth`) is on the lab bridge. The container joins it (`ns:/run/netns/NAME`), so
 * podman's own networks, whose netavark sets net.ipv4.ip_forward=1, are never used
 * (notes/machine-facts.md §5). As with LXC, the link exists while the probe runs.
 */
export function netnsName(veth: string): string {
  return `sonde-${veth}`;
}

export function netnsPath(veth: string): string {
  return `/run/netns/${netnsName(veth)}`;
}

/** Makes the probe's namespace and link, unless both exist already. */
export async function plugProbe(spec: Pick<ProbeSpec, 'veth' | 'bridge' | 'ip'>): Promise<string> {
  const ns = netnsName(spec.veth);
  if (existsSync(netnsPath(spec.veth)) && (await tryRun('ip', ['link', 'show', 'dev', spec.veth]))) return netnsPath(spec.veth);
  await unplugProbe(spec.veth);
  if (!(await bridgeExists(spec.bridge))) throw new LabError('LAB_NETWORK_FAILED', `the lab bridge ${spec.bridge} does not exist (sonde lab down --all, then up)`);
  const before = ipForward();
  const brd = spec.ip.replace(/\.\d+$/, '.255');
  try {
    await run('ip', ['netns', 'add', ns], { code: 'LAB_NETWORK_FAILED' });
    await run('ip', ['link', 'add', spec.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns], { code: 'LAB_NETWORK_FAILED' });
    await run('ip', ['link', 'set', 'dev', spec.veth, 'master', spec.bridge], { code: 'LAB_NETWORK_FAILED' });
    await run('ip', ['link', 'set', 'dev', spec.veth, 'up'], { code: 'LAB_NETWORK_FAILED' });
    await run('ip', ['-n', ns, 'addr', 'add', `${spec.ip}/24`, 'brd', brd, 'dev', 'eth0'], { code: 'LAB_NETWORK_FAILED' });
    await run('ip', ['-n', ns, 'link', 'set', 'dev', 'lo', 'up'], { code: 'LAB_NETWORK_FAILED' });
    await run('ip', ['-n', ns, 'link', 'set', 'dev', 'eth0', 'up'], { code: 'LAB_NETWORK_FAILED' });
  } catch (e) {
    await unplugProbe(spec.veth);
    throw e;
  }
  checkForwarding(before, `the link of ${spec.veth} was made`);
  return netnsPath(spec.veth);
}

/** Removes the namespace and the link; "already gone" is fine. */
export async function unplugProbe(veth: string): Promise<void> {
  await tryRun('ip', ['netns', 'del', netnsName(veth)]);
  // Deleting the namespace destroys the pair, but only once nothing holds the namespace.
  await tryRun('ip', ['link', 'del', 'dev', veth]);
}

/**
 * The lab never routes: if something (an engine) turned forwarding on, it is put back at once and
 * the operation fails, as createBridge does.
 */
export function checkForwarding(before: string, what: string): void {
  const now = ipForward();
  if (now === before || before === 'unknown') return;
  try {
    writeFileSync('/proc/sys/net/ipv4/ip_forward', `${before}\n`);
  } catch {
    // reported below either way
  }
  throw new LabError('LAB_NETWORK_FAILED', `net.ipv4.ip_forward changed from ${before} to ${now} while ${what}; it was set back to ${ipForward()}`);
}
