import { loadPrivateKey } from '../../../pack/src/index.js';
import { isSondeError } from '../../../base/src/errors/sonde-error.js';
import { Engine } from '../update/engine.js';
import type { ChildReply, ChildRequest } from './install-protocol.js';

/**
 * The installer process (installer.ts forks it): one install or one recovery, then exit. The
 * daemon hands it the engine's options and gets back progress, then the outcome, over the IPC
 * channel. Everything an install loads and allocates (verification, extraction, migrations,
 * V8's grown young generation) goes away with this process, so the daemon stays at the size of
 * its links however many installs it runs.
 *
 * It belongs to the daemon: when the channel closes (the daemon died, even by SIGKILL), it exits
 * at once, as if the power had gone, and the next daemon recovers the deployment by the engine's
 * resume table. SIGTERM and SIGINT are the daemon's to handle (systemd and a terminal send them to
 * the whole group): the daemon drains by letting this install reach its outcome.
 */
process.on('SIGTERM', () => undefined);
process.on('SIGINT', () => undefined);
let answered = false;
process.on('disconnect', () => process.exit(answered ? 0 : 70));

function reply(m: ChildReply): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected) resolve();
    else process.send!(m, undefined, undefined, () => resolve());
  });
}

async function serve(req: ChildRequest): Promise<void> {
  const { engine: o } = req;
  const engine = await Engine.open({
    root: o.root,
    ...(o.state ? { state: o.state } : {}),
    ...(o.keyring ? { keyring: o.keyring } : {}),
    ...(o.recipientKey ? { recipientKey: await loadPrivateKey(o.recipientKey) } : {}),
    ...(o.model ? { model: o.model } : {}),
    ...(o.health ? { health: o.health } : {}),
    ...(o.maintenanceWindow ? { maintenanceWindow: o.maintenanceWindow } : {}),
    ...(o.selfUpdate ? { selfUpdate: o.selfUpdate } : {}),
    onProgress: (p) => void reply({ type: 'progress', progress: p }),
  });
  try {
    if (req.op === 'install' || req.op === 'rollback') {
      const r = req.op === 'install' ? await engine.install(req.pack) : await engine.rollback();
      await reply({ type: 'outcome', deployment: r.deployment, committed: r.committed });
    } else if (req.op === 'confirm-agent') {
      await reply({ type: 'recovered', deployment: await engine.confirmAgent() });
    } else {
      await reply({ type: 'recovered', deployment: await engine.recover() });
    }
  } finally {
    engine.close();
  }
}

if (!process.send || !process.connected) {
  process.stderr.write('install-child: runs only as the agent daemon\'s installer process\n');
  process.exit(2);
}
process.once('message', (req: ChildRequest) => {
  serve(req)
    .catch((e: unknown) => {
      const err = e as Error;
      return reply({ type: 'error', code: isSondeError(e) ? e.code : null, message: err.message, stack: isSondeError(e) ? null : (err.stack ?? null) });
    })
    .finally(() => {
      answered = true;
      if (process.connected) process.disconnect();
    });
});
