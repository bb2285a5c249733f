import type { Store } from '../store/types.js';

/**
 * What an export carries besides packs, by name: the rollouts module adds its definitions here
 * (issue 5: "export writes chosen packs and rollout definitions to one file"). export() is given
 * the packs being exported and returns JSON data; import() gets that data back on the other
 * server, after the packs were imported.
 */
export interface TransferSection {
  readonly name: string;
  export(store: Store, packs: readonly string[]): Promise<unknown>;
  import(store: Store, data: unknown): Promise<{ readonly imported: number }>;
}

export const TRANSFER_SECTIONS: TransferSection[] = [];
