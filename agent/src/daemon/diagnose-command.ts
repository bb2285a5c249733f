import type { Logger } from 'pino';
import { isSondeError } from '../../../base/src/errors/sonde-error.js';
import type { Command, ProbeState } from '../../../base/src/protocol/messages.js';
import type { Outbox } from '../link/outbox.js';
import type { Engine } from '../update/engine.js';
import type { CommandStore } from './commands.js';
import type { AgentConfig } from './config.js';
import { isLoopbackUrl, type Credentials } from './credentials.js';
import type { RecentLog } from './recent-log.js';

/** What a diagnose command needs from the daemon. */
export interface DiagnoseContext {
  readonly engine: Engine;
  readonly config: AgentConfig;
  readonly creds: Credentials;
  readonly log: Logger;
  readonly commands: CommandStore;
  readonly recentLog: RecentLog | null;
  readonly state: () => Promise<ProbeState>;
  readonly event: (e: Parameters<Outbox['add']>[0]) => void;
}

/**
 * `diagnose` (docs/mqtt.md): collect a diagnostics bundle (agent/src/diagnostics/bundle.ts) and
 * upload it to the URL the command names, with the probe's token. It runs beside an install (it
 * only reads). The server marks the command succeeded once the whole bundle has arrived; a
 * failure here is a `command-refused` with its code. The bundle's modules load only now.
 */
export async function runDiagnose(c: Extract<Command, { type: 'diagnose' }>, x: DiagnoseContext): Promise<void> {
  x.commands.set(c.commandId, 'running');
  const started = Date.now();
  let cleanup: (() => Promise<void>) | null = null;
  try {
    // The token goes with the upload: off loopback only over TLS, as for downloads.
    const url = new URL(c.upload.url);
    if (url.protocol === 'http:' && !isLoopbackUrl(c.upload.url)) {
      const { DiagnosticsError } = await import('../diagnostics/errors.js');
      throw new DiagnosticsError('DIAGNOSTICS_UPLOAD_FAILED', `${url.protocol}//${url.host} is off loopback: diagnostics are uploaded over https: there`);
    }
    const [{ collectBundle }, { uploadBundle }] = await Promise.all([import('../diagnostics/bundle.js'), import('../diagnostics/upload.js')]);
    const bundle = await collectBundle({
      engine: x.engine,
      probeId: x.creds.probeId,
      state: x.state,
      recentLog: x.recentLog ? (n) => x.recentLog!.text(n) : null,
      agentConfig: x.config,
      maxBytes: c.upload.maxBytes,
    });
    cleanup = bundle.cleanup;
    const sent = await uploadBundle({ url: c.upload.url, file: bundle.path, token: x.creds.token, ...(x.creds.ca ? { ca: x.creds.ca } : {}) });
    x.commands.set(c.commandId, 'done');
    x.log.info({ commandId: c.commandId, bytes: sent.bytes, files: bundle.files.length, attempts: sent.attempts, ms: Date.now() - started }, 'diagnostics bundle uploaded');
  } catch (e) {
    const code = isSondeError(e) ? e.code : 'DIAGNOSTICS_FAILED';
    const message = isSondeError(e) ? e.message.slice(0, 1000) : 'collecting diagnostics failed on an error the agent does not know; its log has the details';
    x.commands.set(c.commandId, 'refused');
    x.event({ type: 'command-refused', commandId: c.commandId, code, message });
    x.log.warn({ commandId: c.commandId, code, err: (e as Error).message }, 'diagnostics failed');
  } finally {
    await cleanup?.();
  }
}
