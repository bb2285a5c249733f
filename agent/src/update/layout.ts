import { join, resolve } from 'node:path';
import { defaultStateFor } from './agent-paths.js';

/** Every path of a probe (docs/probe-layout.md), from its root and its state directory. */
export interface Layout {
  readonly root: string;
  readonly state: string;
  readonly slotsDir: string;
  readonly current: string;
  readonly slotStatus: string;
  /** The slot file (docs/slots.md): absent means two `dir` slots under slotsDir. */
  readonly slotConfig: string;
  readonly dataDir: string;
  readonly db: string;
  readonly snapshots: string;
  readonly etc: string;
  readonly config: string;
  readonly siteVars: string;
  readonly probeIdentity: string;
  readonly licenseDir: string;
  readonly keyring: string;
  readonly run: string;
  readonly inhibit: string;
  readonly journal: string;
  readonly staging: string;
  readonly receipts: string;
  readonly lock: string;
  /** Which runner runs what (runner/release-runner.ts): kept with the state, so it outlives a reboot. */
  readonly runnerState: string;
}

export type SlotName = 'a' | 'b';

export function layoutOf(rootDir: string, stateDir?: string): Layout {
  const root = resolve(rootDir);
  const state = resolve(stateDir ?? defaultStateFor(root));
  return {
    root,
    state,
    slotsDir: join(root, 'slots'),
    current: join(root, 'current'),
    slotStatus: join(root, 'slots', 'status.json'),
    slotConfig: join(root, 'etc', 'slots.json'),
    dataDir: join(root, 'data'),
    db: join(root, 'data', 'probe.db'),
    snapshots: join(root, 'data', 'snapshots'),
    etc: join(root, 'etc'),
    config: join(root, 'etc', 'config.json'),
    siteVars: join(root, 'etc', 'site-vars.json'),
    probeIdentity: join(root, 'etc', 'probe.json'),
    licenseDir: join(root, 'license'),
    keyring: join(root, 'keyring'),
    run: join(root, 'run'),
    inhibit: join(root, 'run', 'inhibit'),
    journal: join(state, 'agent.db'),
    staging: join(state, 'staging'),
    receipts: join(state, 'receipts'),
    lock: join(state, 'install.lock'),
    runnerState: join(state, 'runner.json'),
  };
}

export function slotDir(layout: Layout, slot: SlotName): string {
  return join(layout.slotsDir, slot);
}

export function otherSlot(slot: SlotName): SlotName {
  return slot === 'a' ? 'b' : 'a';
}
