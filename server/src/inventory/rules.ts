import type { ProbeEvent } from '../../../base/src/protocol/messages.js';
import { assertNever } from '../../../base/src/errors/sonde-error.js';
import { TERMINAL_STATUSES, type CommandStatus } from '../store/types.js';

/**
 * What a probe's events mean for the server, as pure functions (any store applies them the same
 * way). The one rule that matters most (issue 5): a command counts as succeeded, and the probe as
 * updated, only on its `install-outcome` event with outcome `committed`, never on an
 * install-state such as staged or switched.
 */

/** The code an agent reports for a command it stopped on the server's cancel (docs/errors.md). */
export const CANCELLED_ON_PROBE = 'COMMAND_CANCELLED';

export interface CommandUpdate {
  readonly status: CommandStatus;
  readonly errorCode: string | null;
}

export function commandUpdateFor(e: ProbeEvent): CommandUpdate | null {
  // The probe's word that it stopped a command the server cancelled (queued, or downloading).
  if ((e.type === 'command-refused' || e.type === 'download-failed') && e.code === CANCELLED_ON_PROBE) return { status: 'cancelled', errorCode: CANCELLED_ON_PROBE };
  switch (e.type) {
    case 'command-accepted':
      return { status: 'accepted', errorCode: null };
    case 'command-refused':
      return { status: 'refused', errorCode: e.code ?? null };
    case 'download-started':
    case 'download-progress':
    case 'download-complete':
      return { status: 'running', errorCode: null };
    case 'download-failed':
      return { status: 'failed', errorCode: e.code ?? 'DOWNLOAD_FAILED' };
    case 'install-outcome':
      return e.outcome === 'committed' ? { status: 'succeeded', errorCode: null } : { status: 'failed', errorCode: e.code ?? e.outcome ?? null };
    case 'install-state':
    case 'drop-received':
    case 'drop-rejected':
    case 'drop-duplicate':
    case 'online':
    case 'offline':
      return null;
    default:
      return assertNever(e.type, 'event type');
  }
}

const RANK: Readonly<Record<CommandStatus, number>> = {
  pending: 0,
  sent: 1,
  accepted: 2,
  running: 3,
  succeeded: 4,
  failed: 4,
  refused: 4,
  cancelled: 4,
  delivered: 4,
};

/**
 * Whether an event may move a command from `from` to `to`. Statuses only move forward (events
 * redelivered late change nothing), and a final status stays, except that the probe's own
 * outcome overrides a server-side cancel: what the probe did is the truth.
 */
export function mayMove(from: CommandStatus, to: CommandStatus, e: ProbeEvent): boolean {
  if (TERMINAL_STATUSES.has(from)) return from === 'cancelled' && e.type === 'install-outcome';
  return RANK[to] >= RANK[from];
}

/**
 * The agent's link names its `online` event and its last will `online-<conn>` and
 * `offline-<conn>` for the same connection. aedes publishes the old connection's will when a new
 * connection of the same client takes over, possibly after the new one said `online`; such a
 * will speaks of a connection that is already gone and must not mark the probe offline.
 */
export function connectionOf(eventId: string, prefix: 'online-' | 'offline-'): string | null {
  return eventId.startsWith(prefix) && eventId.length > prefix.length ? eventId.slice(prefix.length) : null;
}

export function offlineIsStale(e: ProbeEvent, currentConnection: string | null): boolean {
  const conn = connectionOf(e.id, 'offline-');
  return conn !== null && currentConnection !== null && conn !== currentConnection;
}
