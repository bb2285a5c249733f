import { mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { Command } from '../../../base/src/protocol/messages.js';
import { LinkError } from '../link/errors.js';
import { stricter } from '../link/download-pace.js';
import { ProgressPacer } from './progress-pacer.js';
import type { Outbox } from '../link/outbox.js';
import type { AgentConfig } from './config.js';
import { isLoopbackUrl, type Credentials } from './credentials.js';

/** What fetching a pack needs from the daemon: where it goes, how, and where its events go. */
export interface FetchContext {
  readonly staging: string;
  readonly config: AgentConfig;
  readonly creds: Credentials;
  readonly log: Logger;
  readonly event: (e: Parameters<Outbox['add']>[0]) => void;
}

/**
 * Downloads the pack an install command names into staging/downloads/<sha256>.spk, resuming a
 * .part a stop or a crash left, with download-started/progress (every tenth)/complete events.
 * Returns the path; throws a LinkError (or the abort's reason) when it cannot.
 */
/** Where the pack a command names is downloaded (its partial file: the same path and `.part`). */
export function downloadPath(staging: string, sha256: string): string {
  return join(staging, 'downloads', `${sha256}.spk`);
}

export async function fetchPack(c: Extract<Command, { type: 'install' }>, resumed: boolean, signal: AbortSignal, x: FetchContext): Promise<string> {
  const dest = downloadPath(x.staging, c.pack.sha256);
  await mkdir(dirname(dest), { recursive: true });
  // The bearer token (also the MQTT password) goes with the request: off loopback only over
  // TLS, as for the server's own URLs (credentials.ts).
  const url = new URL(c.pack.url);
  if (url.protocol === 'http:' && !isLoopbackUrl(c.pack.url)) {
    throw new LinkError('DOWNLOAD_FAILED', `${url.protocol}//${url.host} is off loopback: packs are fetched over https: there`);
  }
  x.event({ type: 'download-started', commandId: c.commandId, packSha256: c.pack.sha256, totalBytes: c.pack.size, ...(resumed ? { message: 'resumed after a restart' } : {}) });
  // Progress at a bounded rate however slow or fast the link (progress-pacer.ts).
  const pacer = new ProgressPacer();
  const progress = (bytes: number, total: number, message?: string): void => {
    if (pacer.due(bytes, total, message)) x.event({ type: 'download-progress', commandId: c.commandId, bytes, totalBytes: total, ...(message ? { message } : {}) });
  };
  // The probe's own limits (agent config) and the rollout's (the command): the stricter applies.
  const pace = stricter(x.config.download, c.download);
  const { download } = await import('../link/download.js');
  const got = await download({
    url: c.pack.url,
    sha256: c.pack.sha256,
    size: c.pack.size,
    dest,
    token: x.creds.token,
    ...(x.creds.ca ? { ca: x.creds.ca } : {}),
    signal,
    retry: { attempts: x.config.download.attempts, maxDelayMs: x.config.download.maxDelayMs },
    idleTimeoutMs: x.config.download.idleTimeoutMs,
    onInterrupted: (reason, keptBytes, waitMs) => x.log.warn({ commandId: c.commandId, reason, keptBytes, waitMs }, 'download interrupted; resuming from the bytes kept'),
    pace,
    onProgress: (bytes, total) => progress(bytes, total),
    onPaused: (waitMs, kept) => {
      x.log.info({ commandId: c.commandId, waitMs, keptBytes: kept }, 'download waits for its window');
      progress(kept, c.pack.size, `waiting for its download window: opens in ${Math.ceil(waitMs / 60_000)} min`);
    },
  });
  x.log.info({ commandId: c.commandId, requests: got.requests, resumedFrom: got.resumedFrom }, 'download complete');
  x.event({ type: 'download-complete', commandId: c.commandId, packSha256: c.pack.sha256 });
  return dest;
}
