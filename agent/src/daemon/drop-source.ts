import type { AgentDaemon, DropSource } from './daemon.js';

/**
 * The FTP drop as the daemon sees it. Until the inbox watcher lands this is an empty source: the
 * daemon runs without a drop.
 */
export function dropSourceFor(_daemon: AgentDaemon): DropSource {
  return {
    scan: async () => undefined,
    status: () => ({ waiting: 0, incomplete: 0 }),
    start: () => undefined,
    stop: () => undefined,
  };
}
