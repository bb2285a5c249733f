import type { KeyObject } from 'node:crypto';
import type { Journal } from './journal.js';
import type { Layout } from './layout.js';
import type { HealthPolicy } from './health.js';
import type { MaintenanceWindow } from './policy.js';
import type { AppRunner } from './runner/runner.js';
import type { SlotBackend } from './slots/backend.js';

/** What every step of the engine works with. */
export interface EngineOptions {
  readonly root: string;
  /** Defaults to <root>/var/sonde. */
  readonly state?: string;
  /** A keyring (root file or folder) that seeds <root>/keyring when the probe has none. */
  readonly keyring?: string;
  /** The recipient private key for encrypted packs (the fleet, group or probe key). */
  readonly recipientKey?: KeyObject;
  /** The probe's model, when <root>/etc/probe.json does not name one. */
  readonly model?: string;
  readonly health?: Partial<HealthPolicy>;
  readonly maintenanceWindow?: MaintenanceWindow;
  /** How many snapshots and receipts to keep. */
  readonly retain?: number;
  /** An agent pack's trial (self-update.ts): how long the new agent has to confirm itself, and how. */
  readonly selfUpdate?: { readonly windowSeconds: number; readonly confirm: 'connect' | 'self-check' };
  /** Reports progress (the daemon turns these into events); never receives secret values. */
  readonly onProgress?: (p: { deploymentId: string; state: string; detail?: string }) => void;
}

export interface EngineContext {
  readonly layout: Layout;
  readonly journal: Journal;
  readonly slots: SlotBackend;
  readonly runner: AppRunner;
  readonly options: EngineOptions;
  readonly health: HealthPolicy;
  readonly retain: number;
}
