import { DropInbox, installWithEngine } from '../drop/index.js';
import type { DropEvent } from '../drop/drop-types.js';
import type { AgentDaemon, DropSource } from './daemon.js';
import { assertNever } from '../../../base/src/errors/sonde-error.js';

/**
 * The FTP drop as the daemon runs it: installs go through the daemon's one-at-a-time lock, and
 * every drop event and install outcome goes to the server through the outbox, so installs done
 * offline reach the server when it next connects.
 */
function toEvent(daemon: AgentDaemon, e: DropEvent): void {
  switch (e.type) {
    case 'drop-received':
      daemon.event({ type: 'drop-received', message: e.name, packSha256: e.sha256, bytes: e.size });
      return;
    case 'drop-duplicate':
      daemon.event({ type: 'drop-duplicate', message: e.name, ...(e.version ? { version: e.version } : {}), ...(e.sha256 ? { packSha256: e.sha256 } : {}) });
      return;
    case 'drop-rejected':
      daemon.event({
        type: 'drop-rejected',
        message: `${e.name}: ${e.message ?? e.outcome}`.slice(0, 1000),
        ...(e.code ? { code: e.code } : {}),
        ...(e.deploymentId ? { deploymentId: e.deploymentId } : {}),
        ...(e.version ? { version: e.version } : {}),
      });
      return;
    case 'drop-answered':
      daemon.log.info({ event: e.type, name: e.name, detail: e.message }, 'ftp drop: diagnostics request answered');
      return;
    case 'drop-incomplete':
    case 'drop-deferred':
    case 'drop-error':
    case 'drop-installed':
      daemon.log.info({ event: e.type, name: e.name }, 'ftp drop');
      return;
    default:
      return assertNever(e, 'drop event');
  }
}

export function dropSourceFor(daemon: AgentDaemon): DropSource {
  const install = installWithEngine(daemon.installer);
  const inbox = new DropInbox({
    root: daemon.config.root,
    state: daemon.config.state,
    ...(daemon.config.inbox ? { inbox: daemon.config.inbox } : {}),
    stableMs: daemon.config.drop.stableMs,
    incompleteExpiryMs: daemon.config.drop.incompleteExpiryMs,
    retention: { maxCount: daemon.config.retention.maxCount, maxAgeMs: daemon.config.retention.maxAgeDays * 86_400_000 },
    install: (path) =>
      daemon.withInstallLock(async () => {
        const r = await install(path);
        // An agent pack on trial: the new agent reports its outcome.
        if (!r.onTrial) daemon.reportOutcome(r.deploymentId, r.outcome, r.errorCode, r.errorMessage, r.version);
        return r;
      }),
    answer: (path) => daemon.answerDropRequest(path),
    onEvent: (e) => toEvent(daemon, e),
  });
  return {
    scan: () => inbox.scan(),
    status: () => {
      const s = inbox.status();
      return { waiting: s.waiting.length, incomplete: s.incomplete.length };
    },
    start: (ms) => inbox.start(ms),
    stop: () => inbox.stop(),
  };
}
