import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { isSondeError } from '../../../base/src/errors/sonde-error.js';
import type { ProbeState } from '../../../base/src/protocol/messages.js';
import { diagnosticsRequests, loadKeyring } from '../../../pack/src/index.js';
import type { Engine } from '../update/engine.js';
import { collectBundle } from './bundle.js';

/**
 * A diagnostics request dropped on the FTP drop (docs/ftp-drop.md, "Diagnostics through the
 * drop"): `NAME.sdr`, signed by a code-signing key the probe's keyring trusts and addressed to
 * this probe. The answer is the same bundle `sonde probe ID diagnose` collects, sealed to the
 * recipient certificate the request names, written to the drop's outbox as
 * `diagnostics-<probe>-<time>.tar.gz.sealed` (temporary name first, then a rename) for an
 * operator to fetch; `sonde diagnostics open` unseals it with the recipient's key.
 */
/** A bundle through the drop may be larger than one over a link: nothing meters the FTP side. */
const DROP_BUNDLE_MAX_BYTES = 16 * 1024 * 1024;

export interface DropRequestContext {
  readonly engine: Engine;
  readonly probeId: string;
  readonly state: () => Promise<ProbeState>;
  readonly recentLog: ((maxBytes: number) => string) | null;
  readonly agentConfig: unknown;
  /** The agent config's `keyring`, which seeds the probe's keyring at its first install. */
  readonly seedKeyring: string | undefined;
  /** Where answers go (the agent config's `drop.outbox`). */
  readonly outbox: string;
  readonly log: Logger;
}

export type DropAnswer =
  | { readonly ok: true; readonly file: string; readonly bytes: number; readonly signer: string }
  | { readonly ok: false; readonly code: string; readonly message: string };

export async function answerDropRequest(path: string, x: DropRequestContext): Promise<DropAnswer> {
  let cleanup: (() => Promise<void>) | null = null;
  try {
    const { verifyDiagnosticsRequest, sealFile, MAX_REQUEST_BYTES } = await diagnosticsRequests();
    const size = (await stat(path)).size;
    if (size > MAX_REQUEST_BYTES) return { ok: false, code: 'DIAGNOSTICS_REQUEST_INVALID', message: `a diagnostics request is at most ${MAX_REQUEST_BYTES} bytes; this one has ${size}` };
    const ctx = x.engine.context;
    // The probe's keyring; before its first install, the one the agent config seeds it from.
    const held = await readdir(ctx.layout.keyring).then((n) => n.length > 0, () => false);
    const keyringPath = held ? ctx.layout.keyring : x.seedKeyring;
    if (keyringPath === undefined) return { ok: false, code: 'KEYRING_INVALID', message: `the probe has no keyring at ${ctx.layout.keyring} to judge the request with` };
    const request = verifyDiagnosticsRequest(await readFile(path), await loadKeyring(keyringPath), { probeId: x.probeId, now: new Date(), timeFloor: ctx.journal.timeFloor() });
    const bundle = await collectBundle({ engine: x.engine, probeId: x.probeId, state: x.state, recentLog: x.recentLog, agentConfig: x.agentConfig, maxBytes: DROP_BUNDLE_MAX_BYTES });
    cleanup = bundle.cleanup;
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
    const name = `diagnostics-${x.probeId}-${stamp}.tar.gz.sealed`;
    await mkdir(x.outbox, { recursive: true, mode: 0o755 });
    const temp = join(x.outbox, `.${name}.tmp`);
    const bytes = await sealFile(bundle.path, temp, request.recipient).catch(async (e: unknown) => {
      await rm(temp, { force: true });
      throw e;
    });
    await rename(temp, join(x.outbox, name));
    x.log.info({ file: name, bytes, signer: request.signer, reason: request.body.reason }, 'diagnostics request from the drop answered');
    return { ok: true, file: name, bytes, signer: request.signer };
  } catch (e) {
    if (!isSondeError(e)) x.log.error({ err: (e as Error).stack }, 'diagnostics request failed');
    return isSondeError(e)
      ? { ok: false, code: e.code, message: e.message.slice(0, 1000) }
      : { ok: false, code: 'DIAGNOSTICS_FAILED', message: 'answering the diagnostics request failed on an error the agent does not know; its log has the details' };
  } finally {
    await cleanup?.();
  }
}
