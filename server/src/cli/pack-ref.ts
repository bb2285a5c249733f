import { CliError } from '../../../base/src/cli/cli-error.js';
import { ServerError } from '../errors.js';

/**
 * A pack named on the command line: its sha256, or a prefix of at least 6 hex digits, as
 * `sonde packs` prints it (16). A prefix must name exactly one pack of `known`.
 */
export async function resolvePackRef(ref: string, known: () => Promise<readonly string[]>): Promise<string> {
  const id = ref.trim().toLowerCase();
  if (/^[0-9a-f]{64}$/.test(id)) return id;
  if (!/^[0-9a-f]{6,63}$/.test(id)) {
    throw new ServerError('PACK_ID_INVALID', `${JSON.stringify(ref.slice(0, 80))} is not a pack id: give its sha256, or at least its first 6 hex digits as \`sonde packs\` prints them`);
  }
  const matches = (await known()).filter((sha) => sha.startsWith(id));
  if (matches.length === 0) throw new ServerError('PACK_NOT_FOUND', `no pack's id begins with ${id}`);
  if (matches.length > 1) throw new CliError('USAGE', `${id} names ${matches.length} packs (${matches.map((m) => m.slice(0, 16)).join(', ')}): give more digits`);
  return matches[0]!;
}
