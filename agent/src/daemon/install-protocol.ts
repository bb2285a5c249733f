import type { Deployment } from '../update/journal.js';

/** What the daemon tells its installer process (installer.ts, install-child.ts): plain JSON. */
export interface ChildEngineOptions {
  readonly root: string;
  readonly state?: string;
  readonly keyring?: string;
  /** A path: the child reads the key itself, so no key material crosses the channel. */
  readonly recipientKey?: string;
  readonly model?: string;
  readonly health?: Record<string, number>;
  /** Installs start only inside it (HH:MM to HH:MM, local time). */
  readonly maintenanceWindow?: { readonly start: string; readonly end: string };
  /** An agent pack's trial: its window, and whether the new agent must reach the server or pass its self-check. */
  readonly selfUpdate?: { readonly windowSeconds: number; readonly confirm: 'connect' | 'self-check' };
}

export type ChildRequest =
  | { readonly op: 'install'; readonly pack: string; readonly engine: ChildEngineOptions }
  | { readonly op: 'rollback'; readonly engine: ChildEngineOptions }
  | { readonly op: 'recover'; readonly engine: ChildEngineOptions }
  /** The new agent on trial confirms itself (engine.confirmAgent). */
  | { readonly op: 'confirm-agent'; readonly engine: ChildEngineOptions };

export type ChildReply =
  | { readonly type: 'progress'; readonly progress: { deploymentId: string; state: string; detail?: string } }
  | { readonly type: 'outcome'; readonly deployment: Deployment; readonly committed: boolean }
  | { readonly type: 'recovered'; readonly deployment: Deployment | null }
  | { readonly type: 'error'; readonly code: string | null; readonly message: string; readonly stack: string | null };
