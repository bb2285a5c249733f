import semver from 'semver';
import type { Manifest } from '../../../pack/src/index.js';
import { UpdateError } from './errors.js';

/**
 * Policy checks (DESIGN.md, "Policy checks happen before staging"): a pure function of the
 * verified manifest and the probe's facts. The first violation throws; nothing has been written.
 */
export interface InstalledRelease {
  readonly product: string;
  readonly version: string;
  readonly securityVersion: number;
}

export interface MaintenanceWindow {
  /** "HH:MM" local time; a window may wrap midnight (22:00-04:00). */
  readonly start: string;
  readonly end: string;
}

export interface PolicyFacts {
  readonly manifest: Manifest;
  readonly model: string | null;
  readonly installed: InstalledRelease | null;
  readonly securityFloor: number;
  readonly newestCreatedAtSameSecurity: string | null;
  /** For a licence or trust pack: the signed createdAt of the newest one of its kind applied here. */
  readonly newestAppliedSameKind: string | null;
  readonly agentVersion: string;
  readonly freeBytes: number;
  readonly requiredBytes: number;
  readonly busyReason: string | null;
  readonly maintenanceWindow: MaintenanceWindow | null;
  readonly now: Date;
}

function minutes(hhmm: string): number {
  const m = /^(\d{2}):(\d{2})$/.exec(hhmm);
  if (!m) throw new UpdateError('CONFIG_INVALID', `maintenance window time ${hhmm} is not HH:MM`);
  return Number(m[1]) * 60 + Number(m[2]);
}

export function insideWindow(w: MaintenanceWindow, now: Date): boolean {
  const t = now.getHours() * 60 + now.getMinutes();
  const s = minutes(w.start);
  const e = minutes(w.end);
  return s <= e ? t >= s && t < e : t >= s || t < e;
}

const MiB = 1024 * 1024;

export function checkPolicy(f: PolicyFacts): void {
  const m = f.manifest;
  if (f.model !== null && !m.compatible.includes(f.model)) {
    throw new UpdateError('POLICY_INCOMPATIBLE_MODEL', `this probe is a ${f.model}; the pack is for ${m.compatible.join(', ')}`);
  }
  if (m.minAgentVersion && semver.lt(f.agentVersion, m.minAgentVersion)) {
    throw new UpdateError('POLICY_AGENT_TOO_OLD', `the pack needs agent ${m.minAgentVersion} or newer; this agent is ${f.agentVersion}`);
  }
  if (m.kind === 'product' || m.kind === 'servicepack') {
    const inst = f.installed;
    if (inst && inst.product !== m.product) {
      throw new UpdateError('POLICY_PRODUCT_MISMATCH', `the probe runs ${inst.product}; the pack is ${m.product}`);
    }
    if (m.kind === 'servicepack' && !inst) {
      throw new UpdateError('POLICY_NO_BASE_RELEASE', `servicepack ${m.version} needs an installed release in ${m.requires}; the probe has none`);
    }
    // Before `requires`: a servicepack's range usually excludes its own version, and a duplicate
    // drop must read as "nothing to do", not as "install the intermediate release first".
    if (inst && semver.eq(inst.version, m.version)) {
      throw new UpdateError('ALREADY_INSTALLED', `${m.product} ${m.version} is already installed`);
    }
    if (inst && m.requires && !semver.satisfies(inst.version, m.requires, { includePrerelease: true })) {
      throw new UpdateError('POLICY_REQUIRES_UNMET', `${m.product} ${m.version} applies to ${m.requires}; the probe runs ${inst.version}`);
    }
    if (inst && semver.lt(m.version, inst.version)) {
      // The allowance names the one release it may replace: replayed against another, it is void.
      if (!m.allowDowngrade) throw new UpdateError('POLICY_DOWNGRADE', `${m.version} is older than the installed ${inst.version}, and the pack carries no signed downgrade allowance`);
      if (m.downgradeFrom !== inst.version) {
        throw new UpdateError(
          'POLICY_DOWNGRADE',
          `${m.version} is older than the installed ${inst.version}, and its signed downgrade allowance ${m.downgradeFrom === undefined ? 'names no release' : `is for ${m.downgradeFrom} only`}`,
        );
      }
    }
    // No allowance crosses the security floor: a fixed vulnerability never comes back.
    if (m.securityVersion < f.securityFloor) {
      throw new UpdateError('POLICY_SECURITY_DOWNGRADE', `securityVersion ${m.securityVersion} is below the probe's floor ${f.securityFloor}`);
    }
    if (f.newestCreatedAtSameSecurity !== null && Date.parse(m.createdAt) < Date.parse(f.newestCreatedAtSameSecurity)) {
      throw new UpdateError('POLICY_STALE_PACK', `the pack was created ${m.createdAt}, before a pack of the same securityVersion already installed (${f.newestCreatedAtSameSecurity})`);
    }
  }
  // An agent pack replaces the agent: newer only, unless signed to replace exactly this one.
  if (m.kind === 'agent') {
    if (semver.eq(m.version, f.agentVersion)) throw new UpdateError('ALREADY_INSTALLED', `agent ${m.version} is already running`);
    if (semver.lt(m.version, f.agentVersion) && !(m.allowDowngrade && m.downgradeFrom === f.agentVersion)) {
      throw new UpdateError('POLICY_DOWNGRADE', `agent ${m.version} is older than the running agent ${f.agentVersion}, and the pack carries no signed downgrade allowance for it`);
    }
  }
  // Licence and trust packs follow the same anti-replay rule as releases: an older pack of the
  // kind already applied would take back what a newer one changed (a licence, a root set).
  if ((m.kind === 'license' || m.kind === 'trust') && f.newestAppliedSameKind !== null && Date.parse(m.createdAt) < Date.parse(f.newestAppliedSameKind)) {
    throw new UpdateError('POLICY_STALE_PACK', `the ${m.kind} pack was created ${m.createdAt}, before the ${m.kind} pack already applied (${f.newestAppliedSameKind})`);
  }
  if (f.freeBytes < f.requiredBytes) {
    throw new UpdateError('POLICY_DISK_SPACE', `the install needs ${Math.ceil(f.requiredBytes / MiB)} MiB free; ${Math.floor(f.freeBytes / MiB)} MiB are`);
  }
  if (f.busyReason !== null) {
    throw new UpdateError('POLICY_BUSY', `the app asked not to be interrupted: ${f.busyReason.slice(0, 200)}`);
  }
  if (f.maintenanceWindow && !insideWindow(f.maintenanceWindow, f.now)) {
    throw new UpdateError('POLICY_MAINTENANCE_WINDOW', `installs are allowed ${f.maintenanceWindow.start}-${f.maintenanceWindow.end} only`);
  }
}

/** Bytes an install needs: every payload unpacked, two copies of the database, and a margin. */
export function requiredBytes(m: Manifest, dbBytes: number): number {
  // A system image goes to its slot's device, not to this file system (its size is checked against the device).
  const unpacked = m.payloads.reduce((n, p) => n + (p.type === 'system' ? 0 : p.unpackedSize), 0);
  return Math.ceil((unpacked + 2 * dbBytes) * 1.1) + 16 * MiB;
}
