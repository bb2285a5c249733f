import type { DropOutcome } from './receipt.js';

/**
 * What the inbox hands in and gets out: the install function the daemon passes (the engine,
 * through installWithEngine), the events it reports, and the status it shows. Events carry
 * names, codes, hashes and the engine's messages, never a site variable or a key (STYLE.md 12).
 */
export interface DropInstallResult {
  readonly committed: boolean;
  /** An agent pack: installed and on trial; the agent restarts into it. */
  readonly onTrial?: boolean;
  /** A system image, on trial: the probe reboots into its slot (docs/slots.md). */
  readonly reboots?: boolean;
  /** The deployment's recorded outcome (agent/src/update/journal.ts). */
  readonly outcome: 'committed' | 'rolled-back' | 'failed' | null;
  readonly errorCode: string | null;
  readonly errorMessage: string | null;
  readonly deploymentId: string;
  readonly version: string | null;
}

export type DropInstall = (path: string) => Promise<DropInstallResult>;

/** A signed diagnostics request (NAME.sdr) answered into the outbox, or refused with its code. */
export type DropRequestAnswer = (path: string) => Promise<{ readonly ok: true; readonly file: string } | { readonly ok: false; readonly code: string; readonly message: string }>;

export type DropEvent =
  /** A complete upload was found and is about to be handled. */
  | { readonly type: 'drop-received'; readonly name: string; readonly size: number; readonly sha256: string }
  /** An upload ends early (cut off); it stays in the inbox until it grows or expires. */
  | { readonly type: 'drop-incomplete'; readonly name: string; readonly size: number; readonly needBytes: number | null }
  /** Installed and committed; moved to processed/. */
  | { readonly type: 'drop-installed'; readonly name: string; readonly movedTo: string; readonly deploymentId: string | null; readonly version: string | null; readonly sha256: string | null }
  /** Already installed (same bytes, or the engine's ALREADY_INSTALLED); moved to processed/. */
  | { readonly type: 'drop-duplicate'; readonly name: string; readonly movedTo: string; readonly deploymentId: string | null; readonly version: string | null; readonly sha256: string | null }
  /** A diagnostics request answered (the sealed bundle is in the outbox); moved to processed/. */
  | { readonly type: 'drop-answered'; readonly name: string; readonly movedTo: string; readonly message: string | null }
  /** Refused, failed, rolled back or expired incomplete; moved to rejected/. */
  | {
      readonly type: 'drop-rejected';
      readonly name: string;
      readonly movedTo: string;
      readonly outcome: DropOutcome;
      readonly code: string | null;
      readonly message: string | null;
      readonly deploymentId: string | null;
      readonly version: string | null;
    }
  /** Another install holds the probe (INSTALL_LOCKED); the pack is tried again on the next scan. */
  | { readonly type: 'drop-deferred'; readonly name: string; readonly code: string; readonly message: string }
  /** The inbox could not do its job for a file (or at all, name null): a pack cannot be moved, the inbox cannot be listed. */
  | { readonly type: 'drop-error'; readonly name: string | null; readonly code: string; readonly message: string };

export type WaitingReason =
  /** Named `*.part`: the uploader renames it when it is done. */
  | 'part'
  /** Size or mtime changed within the last stableMs. */
  | 'unstable'
  /** A process holds it open for writing. */
  | 'open-writer'
  /** Complete, but another install was running. */
  | 'deferred'
  /** It could not be read or moved; it is tried again when it changes. */
  | 'unreadable';

export interface WaitingUpload {
  readonly name: string;
  readonly size: number;
  /** When this agent first saw the file. */
  readonly since: string;
  readonly reason: WaitingReason;
}

export interface IncompleteUpload {
  readonly name: string;
  readonly size: number;
  /** The last write to the file (its mtime): expiry counts from here. */
  readonly since: string;
  /** Bytes the pack's tar headers say it needs at least (null when the engine found it cut short). */
  readonly needBytes: number | null;
  readonly expiresAt: string;
}

export interface DropStatus {
  readonly inbox: string;
  readonly lastScanAt: string | null;
  /** The pack being installed right now, if any. */
  readonly installing: string | null;
  readonly waiting: readonly WaitingUpload[];
  readonly incomplete: readonly IncompleteUpload[];
}
