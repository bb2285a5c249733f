import { rolloutTransfer } from '../rollouts/transfer.js';
import type { Store } from '../store/types.js';

/**
 * What an export carries besides packs, by name (issue 5: "export writes chosen packs and rollout
 * definitions to one file"). export() is given the packs being exported and returns JSON data.
 * On the other server check() judges that data before anything is imported (a malformed section
 * refuses the whole file, ARCHIVE_INVALID, and nothing changes); import() gets it after the packs
 * were imported, and says what it took and what it left out, with why.
 */
export interface TransferSection {
  readonly name: string;
  export(store: Store, packs: readonly string[]): Promise<unknown>;
  check(data: unknown): void;
  import(store: Store, data: unknown, importedBy: string): Promise<SectionImport>;
}

export interface SectionImport {
  readonly imported: number;
  /** What was not taken, one line each ("ro-…: ROLLOUT_TARGET_EMPTY …"). */
  readonly notes: readonly string[];
}

export const TRANSFER_SECTIONS: readonly TransferSection[] = Object.freeze([rolloutTransfer]);
