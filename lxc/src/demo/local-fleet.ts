import { spawn } from 'node:child_process';
import { processExists } from '../../../base/src/os/process-alive.js';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { parseAgentConfig } from '../../../agent/src/daemon/config.js';
import { writeFileAtomic } from '../../../base/src/fs/atomic.js';
import { Engine } from '../../../agent/src/update/engine.js';
import { layoutOf } from '../../../agent/src/update/layout.js';
import { ProcessRunner } from '../../../agent/src/update/runner/process-runner.js';
import { setSiteVar } from '../../../agent/src/update/site-vars.js';
import { LabError } from '../errors.js';
import { ensureSamples, type Samples } from '../golden.js';
import { REPO_DIR } from '../lab.js';
import { LabServerClient, startLabServer } from '../lab-server.js';
import { loadPrivateKey } from '../../../pack/src/index.js';
import { labAgentConfig } from '../../../images/src/lab/probe-image.js';
import { COLLECTOR_PASSWORD_VAR } from '../../../images/src/samples/index.js';
import type { DemoFleet } from './fleet-demo.js';

/**
 * The demo's fleet where LXC cannot run: the same fleet server (loopback only, there is no
 * bridge) and probes as local processes. Each probe is a folder on this machine: a probe root
 * installed to 1.1.0 by the real Engine (1.0.0, then the 1.1.0 service pack), an enrollment file,
 * an agent config with the lab's quick settings, and `sonde agent run` as a detached process that
 * starts the probe's app and joins the server. Everything lives under one folder; `fleet.json`
 * there names every process started, and is written before each one starts so that
 * stopLocalFleet always finds them.
 *
 * <dir>/images/samples-2/            the sample packs and keys (kept between runs)
 * <dir>/server/, server.log, server.token
 * <dir>/probes/NAME/root/            the probe root (state in root/var/sonde, the default)
 * <dir>/probes/NAME/agent.json, enrollment.json (0600), inbox/, agent.log
 */
const SONDE_JS = join(REPO_DIR, 'dist', 'cli', 'src', 'sonde.js');
export const LOCAL_FLEET_FOLDER = 'local-fleet';
const FLEET_FILE = 'fleet.json';
const CHANNEL = 'stable';

const fleetSchema = z
  .object({
    format: z.literal('sonde-local-fleet-1'),
    server: z.object({ pid: z.number().int().positive(), data: z.string() }).strict().nullable(),
    probes: z.array(z.object({ name: z.string(), root: z.string(), config: z.string(), agentPid: z.number().int().positive().nullable() }).strict()),
  })
  .strict();
type FleetFile = z.infer<typeof fleetSchema>;

export interface LocalFleet extends DemoFleet {
  readonly dir: string;
}

/** Where `sonde demo --local --out OUT` keeps its fleet. */
export function localFleetDir(out: string): string {
  return join(out, LOCAL_FLEET_FOLDER);
}

export interface LocalProbePaths {
  readonly name: string;
  readonly dir: string;
  readonly root: string;
  readonly state: string;
  readonly config: string;
  readonly credentials: string;
  readonly inbox: string;
  readonly log: string;
}

export function localProbePaths(dir: string, name: string): LocalProbePaths {
  const p = join(dir, 'probes', name);
  const root = join(p, 'root');
  return {
    name,
    dir: p,
    root,
    state: layoutOf(root).state,
    config: join(p, 'agent.json'),
    credentials: join(p, 'enrollment.json'),
    inbox: join(p, 'inbox'),
    log: join(p, 'agent.log'),
  };
}

function serverPaths(dir: string) {
  return { serverData: join(dir, 'server'), serverLog: join(dir, 'server.log'), serverOut: join(dir, 'server.out'), tokenFile: join(dir, 'server.token') };
}

async function readFleet(dir: string): Promise<FleetFile | null> {
  let text: string;
  try {
    text = await readFile(join(dir, FLEET_FILE), 'utf8');
  } catch {
    return null;
  }
  const r = fleetSchema.safeParse(JSON.parse(text));
  if (!r.success) throw new LabError('LAB_PROBE_FAILED', `${join(dir, FLEET_FILE)} is not a local fleet file: remove ${dir} by hand`);
  return r.data;
}

async function writeFleet(dir: string, fleet: FleetFile): Promise<void> {
  await writeFileAtomic(join(dir, FLEET_FILE), `${JSON.stringify(fleet, null, 2)}\n`);
}

/** A free TCP port on loopback, not one of `taken`. */
async function freePort(taken: Set<number>): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((done, fail) => {
      const s = createServer();
      s.once('error', fail);
      s.listen(0, '127.0.0.1', () => {
        const a = s.address();
        s.close(() => done(typeof a === 'object' && a ? a.port : 0));
      });
    });
    if (port > 0 && !taken.has(port)) {
      taken.add(port);
      return port;
    }
  }
}


/**
 * Stops `pid` (SIGTERM, then SIGKILL after `graceMs`) only while its command line still holds
 * `arg`: a pid recorded by an earlier run may since belong to someone else.
 */
async function stopOwned(pid: number, arg: string, graceMs: number): Promise<boolean> {
  const ours = async (): Promise<boolean> => {
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    return cmd.split('\0').includes(arg) && !/^\d+ \(.*\) [ZX]/s.test(await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '0 () X'));
  };
  if (!(await ours())) return false;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return false;
  }
  const deadline = Date.now() + graceMs;
  while (processExists(pid) && (await ours()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (processExists(pid) && (await ours())) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }
  return true;
}

/**
 * Stops what a local fleet in `dir` started: the agents first (so none restarts an app), then
 * their apps (the Engine's runner finds them by pid file and by PROBE_ROOT), then the server.
 * Returns what it stopped, one line each. Files stay for a look.
 */
export async function stopLocalFleet(dir: string): Promise<string[]> {
  const fleet = await readFleet(dir);
  const stopped: string[] = [];
  // Probe folders fleet.json may not list (a run killed mid-start) still get their apps stopped.
  const names = new Set([...(fleet?.probes.map((p) => p.name) ?? []), ...(await readdir(join(dir, 'probes')).catch(() => []))]);
  // All at once: an agent takes about 2 s to exit.
  const agents = await Promise.all(
    (fleet?.probes ?? []).map(async (p) =>
      // A draining agent lets a running install reach its outcome; past the health window it is killed.
      p.agentPid && (await stopOwned(p.agentPid, p.config, 25_000)) ? `agent ${p.name} (pid ${p.agentPid})` : null,
    ),
  );
  const apps = await Promise.all(
    [...names].map(async (name) => {
      const runner = new ProcessRunner(layoutOf(localProbePaths(dir, name).root));
      const pid = await runner.running();
      await runner.stop();
      return pid !== null ? `app ${name} (pid ${pid})` : null;
    }),
  );
  for (const line of [...agents, ...apps]) if (line) stopped.push(line);
  if (fleet?.server && (await stopOwned(fleet.server.pid, fleet.server.data, 10_000))) stopped.push(`fleet server (pid ${fleet.server.pid})`);
  return stopped;
}

/** Polls the server until each probe is online, healthy and at its version. */
async function waitHealthy(client: LabServerClient, dir: string, want: readonly { name: string; version: string }[], timeoutMs: number): Promise<void> {
  await client.waitHealthy(want, timeoutMs, `see ${localProbePaths(dir, want[0]?.name ?? 'local-01').log}`);
}

/** The probe root as the field installs it: its app port, a site secret, 1.0.0 then 1.1.0. */
async function installProbe(p: LocalProbePaths, samples: Samples, port: number): Promise<void> {
  await mkdir(join(p.root, 'etc'), { recursive: true });
  // The sample app serves health on 127.0.0.1:<port>; each local probe needs its own.
  await writeFileAtomic(join(p.root, 'etc', 'config.json'), `${JSON.stringify({ port })}\n`);
  // 1.1.0's config ops fill the collector password from this site variable.
  await setSiteVar(layoutOf(p.root).siteVars, COLLECTOR_PASSWORD_VAR, randomBytes(12).toString('base64url'));
  const engine = await Engine.open({
    root: p.root,
    state: p.state,
    keyring: samples.rootCert,
    recipientKey: await loadPrivateKey(samples.fleetKey),
    health: { required: 2, intervalMs: 300, windowMs: 20_000 },
  });
  try {
    for (const version of ['1.0.0', '1.1.0'] as const) {
      const r = await engine.install(samples.pack(version));
      if (!r.committed) {
        const d = r.deployment;
        throw new LabError('LAB_PROBE_FAILED', `${p.name}: installing ${version} ended ${d.state}${d.errorCode ? ` ${d.errorCode}: ${d.errorMessage}` : ''}`);
      }
    }
  } finally {
    // The agent starts the app when it boots, as on a probe after a power cut.
    await engine.context.runner.stop().catch(() => undefined);
    engine.close();
  }
}

async function writeAgentConfig(p: LocalProbePaths): Promise<void> {
  await mkdir(p.inbox, { recursive: true });
  const config = { ...labAgentConfig(), root: p.root, state: p.state, credentials: p.credentials, inbox: p.inbox };
  parseAgentConfig(config, p.dir); // refused here, with the key named, rather than in an agent log
  await writeFileAtomic(p.config, `${JSON.stringify(config, null, 2)}\n`);
}

function spawnAgent(p: LocalProbePaths): number {
  const out = openSync(p.log, 'a', 0o600);
  // Not the operator's server, token or systemd socket: this agent has its own config.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !['SONDE_SERVER', 'SONDE_TOKEN', 'SONDE_CA', 'NOTIFY_SOCKET'].includes(k)));
  try {
    const child = spawn(process.execPath, [SONDE_JS, 'agent', 'run', '--config', p.config], { cwd: p.dir, detached: true, stdio: ['ignore', out, out], env });
    if (!child.pid) throw new LabError('LAB_PROBE_FAILED', `${p.name}: the agent did not start`);
    child.unref();
    return child.pid;
  } finally {
    closeSync(out);
  }
}

/**
 * Starts a fresh local fleet in `dir` (the demo's is localFleetDir(out)): what an earlier one left running is stopped and its files
 * removed (the sample packs are kept), then the server, `count` probes on 1.1.0 and their agents.
 * Returns once the server reports every probe healthy.
 */
export async function startLocalFleet(dir: string, count: number, log: (line: string) => void): Promise<LocalFleet> {
  const stopped = await stopLocalFleet(dir);
  if (stopped.length) log(`stopped the previous local fleet: ${stopped.join(', ')}`);
  for (const entry of await readdir(dir).catch(() => [])) {
    if (entry !== 'images') await rm(join(dir, entry), { recursive: true, force: true });
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const samples = await ensureSamples(join(dir, 'images'), log);

  const sp = serverPaths(dir);
  const fleet: FleetFile = { format: 'sonde-local-fleet-1', server: null, probes: [] };
  await writeFleet(dir, fleet);
  log('starting the fleet server on loopback (embedded broker)');
  const { ref, token } = await startLabServer(sp, { sondeJs: SONDE_JS, keyring: samples.rootCert });
  fleet.server = { pid: ref.pid!, data: sp.serverData };
  await writeFleet(dir, fleet);
  const client = new LabServerClient(ref.url, token);
  log(`fleet server ${ref.url}`);

  const probes = Array.from({ length: count }, (_, i) => localProbePaths(dir, `local-${String(i + 1).padStart(2, '0')}`));
  fleet.probes = probes.map((p) => ({ name: p.name, root: p.root, config: p.config, agentPid: null }));
  await writeFleet(dir, fleet);
  log(`installing ${count} probe roots with the real Engine, 1.0.0 then 1.1.0: ${probes.map((p) => p.name).join(', ')}`);
  const ports = new Set<number>();
  await Promise.all(
    probes.map(async (p) => {
      await installProbe(p, samples, await freePort(ports));
      await writeFileAtomic(p.credentials, await client.enroll(p.name), { mode: 0o600 });
      await client.setChannel(p.name, CHANNEL);
      await writeAgentConfig(p);
    }),
  );
  log(`starting ${count} agents (sonde agent run), each starts its probe's app and joins the server`);
  for (const [i, p] of probes.entries()) {
    const pid = spawnAgent(p);
    fleet.probes[i] = { ...fleet.probes[i]!, agentPid: pid };
    await writeFleet(dir, fleet);
  }
  log('waiting for every probe to report healthy to the fleet server');
  await waitHealthy(client, dir, probes.map((p) => ({ name: p.name, version: '1.1.0' })), 60_000);

  const first = probes[0]!;
  return {
    dir,
    client,
    serverUrl: ref.url,
    tokenFile: sp.tokenFile,
    serverLog: sp.serverLog,
    samplesDir: samples.dir,
    probes: probes.map((p) => p.name),
    waitHealthy: (want, ms) => waitHealthy(client, dir, want, ms),
    hints: [
      `npx sonde agent status --root ${first.root}; tail ${first.log}    # one probe (agent log: JSON lines)`,
      `cp PACK.spk ${first.inbox}/    # the probe's FTP drop is this folder`,
      `npx sonde demo --local --stop --out ${dirname(dir)}    # stops the agents, their apps and the server`,
    ],
  };
}
