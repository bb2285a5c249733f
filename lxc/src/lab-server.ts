import { spawn } from 'node:child_process';
import { processExists } from '../../base/src/os/process-alive.js';
import { closeSync, openSync } from 'node:fs';
import { chmod, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { ApiClient, ApiError } from '../../server/src/cli/api-client.js';
import { LabError } from './errors.js';
import type { LabPaths, LabServerRef } from './lab-state.js';

/**
 * The fleet server a lab's probes join: either one named by the user (`--server URL --token T`,
 * or SONDE_SERVER / SONDE_TOKEN), or the lab's own, started with the embedded defaults and
 * listening on loopback and the lab bridge. The lab's own server runs detached: `lab up` returns
 * and the fleet stays; `lab down --all` stops it. Without a bridge address (the demo's probes as
 * local processes, lxc/src/demo/local-fleet.ts) the server listens on loopback only.
 */
export interface ServerProbe {
  readonly id: string;
  readonly online: boolean;
  readonly version: string | null;
  readonly health: string | null;
  readonly lastDeployment: { outcome: string; errorCode: string | null; version: string | null } | null;
}

function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

/** 8440 (the server's default) when it and 8441 are free on every address, else another pair. */
async function pickPorts(bridgeIp: string | undefined, avoidDefault: boolean): Promise<number> {
  const ok = async (p: number): Promise<boolean> =>
    (await portFree(p, '127.0.0.1')) && (await portFree(p + 1, '127.0.0.1')) && (!bridgeIp || ((await portFree(p, bridgeIp)) && (await portFree(p + 1, bridgeIp))));
  if (!avoidDefault && (await ok(8440))) return 8440;
  for (let i = 0; i < 200; i++) {
    const p = 20000 + 2 * Math.floor(Math.random() * 20000);
    if (await ok(p)) return p;
  }
  throw new LabError('LAB_SERVER_FAILED', 'no free pair of ports for the lab server');
}

export type ServerPaths = Pick<LabPaths, 'serverData' | 'serverLog' | 'serverOut' | 'tokenFile'>;

/** Tries at most this many port pairs: a free pair can be taken between the check and the bind. */
const PORT_ATTEMPTS = 4;

export async function startLabServer(p: ServerPaths, opts: { sondeJs: string; keyring: string; bridgeIp?: string; timeoutMs?: number }): Promise<{ ref: LabServerRef; token: string }> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  for (let attempt = 1; ; attempt++) {
    // Two labs started at the same moment both see 8440 free; the loser binds it second and exits.
    const port = await pickPorts(opts.bridgeIp, attempt > 1);
    const r = await startOnce(p, opts, port, deadline);
    if ('ref' in r) return r;
    if (!r.portTaken || attempt >= PORT_ATTEMPTS) throw r.error;
  }
}

type Attempt = { ref: LabServerRef; token: string } | { error: LabError; portTaken: boolean };

async function startOnce(p: ServerPaths, opts: { sondeJs: string; keyring: string; bridgeIp?: string; timeoutMs?: number }, port: number, deadline: number): Promise<Attempt> {
  const out = openSync(p.serverOut, 'w', 0o600);
  const err = openSync(p.serverLog, 'a', 0o600);
  const logStart = (await stat(p.serverLog)).size;
  const listen = opts.bridgeIp ? ['--listen', opts.bridgeIp] : [];
  const child = spawn(process.execPath, [opts.sondeJs, 'server', '--data', p.serverData, '--port', String(port), ...listen, '--keyring', opts.keyring], {
    detached: true,
    stdio: ['ignore', out, err],
    env: { ...process.env, SONDE_TOKEN: '' },
  });
  closeSync(out);
  closeSync(err);
  child.unref();
  const pid = child.pid;
  if (!pid) throw new LabError('LAB_SERVER_FAILED', 'the lab server did not start');
  let token: string | null = null;
  for (;;) {
    const text = await readFile(p.serverOut, 'utf8').catch(() => '');
    const m = /^admin token: (\S+)$/m.exec(text);
    if (m) token = m[1]!;
    if (token && /^mqtt /m.test(text)) break;
    if (!token && /^mqtt /m.test(text)) {
      // A restart of an existing data folder prints no token: the one saved at the first start.
      token = (await readFile(p.tokenFile, 'utf8').catch(() => '')).trim() || null;
      if (!token) throw new LabError('LAB_SERVER_FAILED', `the lab server in ${p.serverData} has no saved admin token (${p.tokenFile})`);
      break;
    }
    if (!processExists(pid)) {
      const log = (await readFile(p.serverLog, 'utf8').catch(() => '')).slice(logStart);
      const error = new LabError('LAB_SERVER_FAILED', `the lab server exited at its start: ${log.trim().split('\n').slice(-2).join(' / ')}`);
      return { error, portTaken: /EADDRINUSE/.test(log) };
    }
    if (Date.now() > deadline) {
      stopPid(pid);
      throw new LabError('LAB_TIMEOUT', `the lab server did not start within ${opts.timeoutMs ?? 60_000} ms (log: ${p.serverLog})`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  await writeFile(p.tokenFile, `${token}\n`, { mode: 0o600 });
  await chmod(p.tokenFile, 0o600);
  return { ref: { own: true, url: `http://127.0.0.1:${port}`, ...(opts.bridgeIp ? { probeUrl: `https://${opts.bridgeIp}:${port}` } : {}), pid, port }, token };
}

function stopPid(pid: number): void {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    // gone
  }
}

/** Stops the lab's own server and waits for it to exit (SIGKILL after 10 s). */
export async function stopLabServer(ref: LabServerRef | null): Promise<void> {
  if (!ref?.own || !ref.pid || !processExists(ref.pid)) return;
  if (!(await isLabServer(ref.pid))) return; // the pid was recycled: not ours to kill
  stopPid(ref.pid);
  const deadline = Date.now() + 10_000;
  while (processExists(ref.pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (processExists(ref.pid)) process.kill(ref.pid, 'SIGKILL');
}

async function isLabServer(pid: number): Promise<boolean> {
  const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmd.split('\0').includes('server');
}

export function serverRunning(ref: LabServerRef | null): boolean {
  return !!ref?.own && !!ref.pid && processExists(ref.pid);
}

export class LabServerClient {
  readonly api: ApiClient;

  constructor(
    readonly url: string,
    token: string,
  ) {
    this.api = new ApiClient({ server: url, token });
  }

  /** The credential file for a probe (a new probe, or a re-key of an existing one). */
  async enroll(probeId: string, serverUrl?: string): Promise<string> {
    const { body } = await this.api.json<object>('POST', `/api/v1/probes/${probeId}/enroll`, serverUrl ? { serverUrl } : {});
    return `${JSON.stringify(body, null, 2)}\n`;
  }

  async setChannel(probeId: string, channel: string): Promise<void> {
    await this.api.json('PATCH', `/api/v1/probes/${probeId}`, { channel });
  }

  async probes(): Promise<Map<string, ServerProbe>> {
    const { body } = await this.api.json<ServerProbe[]>('GET', '/api/v1/probes?limit=10000');
    return new Map(body.map((x) => [x.id, x]));
  }

  /**
   * Polls until the server reports each probe online, health `ok`, at its version. Past
   * `timeoutMs`, LAB_TIMEOUT names up to five with what the server saw, and `hint` where to look.
   */
  async waitHealthy(want: readonly { name: string; version: string }[], timeoutMs: number, hint: string): Promise<Map<string, ServerProbe>> {
    const deadline = Date.now() + timeoutMs;
    let last = new Map<string, ServerProbe>();
    for (;;) {
      try {
        last = await this.probes();
      } catch {
        // the server may be busy starting: try again
      }
      const pending = want.filter((w) => {
        const s = last.get(w.name);
        return !(s && s.online && s.health === 'ok' && s.version === w.version);
      });
      if (pending.length === 0) return last;
      if (Date.now() > deadline) {
        const what = pending.slice(0, 5).map((w) => {
          const s = last.get(w.name);
          return s ? `${w.name}: ${s.online ? 'online' : 'offline'}, ${s.version ?? 'no version'}, health ${s.health ?? 'unknown'} (want ${w.version})` : `${w.name}: never reported`;
        });
        throw new LabError('LAB_TIMEOUT', `${pending.length} probe(s) not healthy after ${timeoutMs} ms: ${what.join('; ')} (${hint})`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async probe(id: string): Promise<(ServerProbe & { events: { type: string; code?: string }[] }) | null> {
    try {
      return (await this.api.json<ServerProbe & { events: { type: string; code?: string }[] }>('GET', `/api/v1/probes/${id}`)).body;
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return null;
      throw e;
    }
  }
}

export async function readToken(p: LabPaths): Promise<string | null> {
  return (await readFile(p.tokenFile, 'utf8').catch(() => '')).trim() || null;
}
