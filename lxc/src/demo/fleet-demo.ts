import { execFile } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { packSampleRecipe, sampleKeyPaths, sampleRelease, writeReleaseRecipe } from '../../../images/src/samples/index.js';
import { SAMPLES_FORMAT } from '../golden.js';
import { Lab, REPO_DIR } from '../lab.js';
import type { LabServerClient } from '../lab-server.js';
import { localFleetDir, startLocalFleet, stopLocalFleet } from './local-fleet.js';

/**
 * `npm run demo` (issue 6): the fleet server with its embedded broker, three LXC probes on the
 * stable line, the next service pack (1.1.1) built, signed, encrypted and uploaded, a canary-then-
 * all rollout with its progress, and every probe healthy on the new version at the end. The lab
 * stays up afterwards so the operator can look; the next run starts it afresh.
 */
export const DEMO_LAB = 'demo';
const PROBES = 3;

interface WaveView {
  wave: number;
  kind: 'canary' | 'wave';
  size: number;
  committed: number;
  failed: number;
  rolledBack: number;
  installing: number;
  started: boolean;
}
interface RolloutView {
  id: string;
  state: string;
  pausedReason: string | null;
  waves: WaveView[];
  progress: { size: number; committed: number; failed: number; rolledBack: number };
}

function sondeCli(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((done, fail) => {
    execFile(process.execPath, [join(REPO_DIR, 'dist', 'cli', 'src', 'sonde.js'), ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      if (err) fail(new Error(`sonde ${args.join(' ')}: ${stderr.trim() || err.message}`));
      else done(stdout);
    });
  });
}

async function watchRollout(client: LabServerClient, id: string, log: (l: string) => void, timeoutMs: number): Promise<RolloutView> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (;;) {
    const { body } = await client.api.json<RolloutView>('GET', `/api/v1/rollouts/${id}`);
    const line = body.waves
      .map((w) => `${w.kind === 'canary' ? 'canary' : `wave ${w.wave}`} ${w.started ? `${w.committed}/${w.size} committed${w.installing ? `, ${w.installing} installing` : ''}${w.failed + w.rolledBack ? `, ${w.failed + w.rolledBack} failed` : ''}` : 'not started'}`)
      .join(' | ');
    const text = `   rollout ${body.state}${body.pausedReason ? ` (${body.pausedReason})` : ''}: ${line}`;
    if (text !== last) log(text);
    last = text;
    if (['completed', 'paused', 'aborted'].includes(body.state)) return body;
    if (Date.now() > deadline) throw new Error(`the rollout did not finish within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

export async function runFleetDemo(outDir: string, log: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<boolean> {
  const t0 = Date.now();
  const out = resolve(outDir);
  await mkdir(out, { recursive: true });
  const since = (): string => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
  const previous = await Lab.open(DEMO_LAB);
  if (await previous.state()) {
    log('0. removing the previous demo lab');
    await previous.down({ all: true });
  }
  const lab = await Lab.open(DEMO_LAB);
  log(`Sonde demo: a fleet server, ${PROBES} virtual probes in LXC containers, a staged rollout (lab folder ${lab.paths.dir})`);

  log(`1-2. starting the fleet server (embedded MQTT broker) and ${PROBES} probes on the stable line (1.1.0)`);
  const probes = await lab.up({ count: PROBES, line: 'stable', log: (l) => log(`   ${l}`) });
  const state = (await lab.state())!;
  const client = (await lab.client(state))!;
  log(`   ${probes.map((p) => `${p.name} ${p.ip}`).join(', ')}: healthy on 1.1.0 at the server (${since()})`);

  return rollOutNextRelease(
    {
      client,
      serverUrl: state.server!.url,
      tokenFile: lab.paths.tokenFile,
      serverLog: lab.paths.serverLog,
      samplesDir: join(lab.paths.images, SAMPLES_FORMAT),
      probes: probes.map((p) => p.name),
      waitHealthy: (want, ms) => lab.waitHealthy(want, ms).then(() => undefined),
      hints: [
        `npx sonde lab ls --lab ${DEMO_LAB}; npx sonde lab logs ${probes[0]!.name} --lab ${DEMO_LAB}; npx sonde lab shell ${probes[0]!.name} --lab ${DEMO_LAB}`,
        `npx sonde lab down --all --lab ${DEMO_LAB}    # removes the probes, the bridge and the server`,
      ],
    },
    out,
    log,
    since,
  );
}

/**
 * The same story where LXC cannot run (not root, no lxc): the same fleet server, on loopback
 * only, and the probes as local processes (lxc/src/demo/local-fleet.ts). The fleet stays up
 * afterwards; `sonde demo --local --stop` stops it and the next run starts it afresh.
 */
export async function runLocalFleetDemo(outDir: string, log: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<boolean> {
  const t0 = Date.now();
  const out = resolve(outDir);
  const dir = localFleetDir(out);
  await mkdir(out, { recursive: true });
  const since = (): string => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
  const stopped = await stopLocalFleet(dir);
  if (stopped.length) {
    log('0. stopping the previous local fleet');
    for (const s of stopped) log(`   ${s}`);
  }
  log(`Sonde demo: a fleet server, ${PROBES} probes as local processes on this machine (no containers), a staged rollout (folder ${dir})`);
  log('   each probe is a folder with its own root, an agent process (sonde agent run) and the app it starts; all talk to the server on 127.0.0.1');

  log(`1-2. starting the fleet server (embedded MQTT broker) and ${PROBES} probes on the stable line (1.1.0)`);
  const fleet = await startLocalFleet(dir, PROBES, (l) => log(`   ${l}`));
  log(`   ${fleet.probes.join(', ')}: local processes, healthy on 1.1.0 at the server (${since()})`);
  return rollOutNextRelease(fleet, out, log, since);
}

/** What steps 3 to 7 need of a fleet, however its probes run (LXC, or local processes). */
export interface DemoFleet {
  readonly client: LabServerClient;
  readonly serverUrl: string;
  readonly tokenFile: string;
  readonly serverLog: string;
  /** The sample packs and keys (`samples-2`): the vendor's signer and the fleet key. */
  readonly samplesDir: string;
  readonly probes: readonly string[];
  waitHealthy(want: readonly { name: string; version: string }[], timeoutMs: number): Promise<void>;
  /** Lines printed at the end under "where to look". */
  readonly hints: readonly string[];
}

/** Steps 3 to 7: build and upload 1.1.1, roll it out canary first, watch, check, point the way. */
export async function rollOutNextRelease(fleet: DemoFleet, out: string, log: (line: string) => void, since: () => string): Promise<boolean> {
  const { client } = fleet;
  log('3. the vendor builds the next service pack, 1.1.1: signed, and encrypted for the fleet key');
  const samplesDir = fleet.samplesDir;
  const recipe = await writeReleaseRecipe(join(out, 'recipe-1.1.1'), sampleRelease('1.1.1'));
  const packPath = join(out, 'probe-app-1.1.1.spk');
  const written = await packSampleRecipe(recipe, packPath, sampleKeyPaths(join(samplesDir, 'keys')));
  log(`   ${packPath}: ${written.manifest.kind} ${written.manifest.version}, requires ${written.manifest.requires}, ${written.size} bytes`);
  const { body: pack } = await client.api.upload<{ sha256: string; version: string }>('/api/v1/packs', packPath);
  log(`   uploaded: the server verified it against its keyring and stored it as ${pack.sha256.slice(0, 16)}…`);

  log('4. a rollout: one canary probe first, then all the others once the canary committed');
  const { body: rollout } = await client.api.json<{ id: string }>('POST', '/api/v1/rollouts', {
    name: 'demo: 1.1.1, canary then all',
    packSha256: pack.sha256,
    target: { channel: 'stable' },
    strategy: { canary: { probes: 1 }, waves: [100], successThreshold: 1, errorThreshold: 0, advance: { mode: 'wait', seconds: 2 } },
  });
  log(`   ${rollout.id} started`);

  log('5. progress (a probe counts only once its own install-outcome says committed)');
  const end = await watchRollout(client, rollout.id, log, 180_000);

  log('6. every probe healthy on the new version?');
  let ok = end.state === 'completed';
  if (ok) {
    try {
      await fleet.waitHealthy(fleet.probes.map((name) => ({ name, version: '1.1.1' })), 60_000);
    } catch (e) {
      ok = false;
      log(`   ${(e as Error).message}`);
    }
  }
  const env = { SONDE_SERVER: fleet.serverUrl, SONDE_TOKEN: (await readFile(fleet.tokenFile, 'utf8')).trim() };
  const table = await sondeCli(['probes'], env).catch((e: Error) => `(sonde probes failed: ${e.message})\n`);
  log(`   ${ok ? `yes: all ${fleet.probes.length} probes committed 1.1.1 and report healthy (${since()})` : 'NO: see above'}`);

  log('7. where to look');
  log('   sonde probes:');
  for (const l of table.trimEnd().split('\n')) log(`     ${l}`);
  log(`   the dashboard: open it: ${fleet.serverUrl}/ and sign in with the token ${env.SONDE_TOKEN} (the lab's admin token, kept in ${fleet.tokenFile}; docs/dashboard.md)`);
  log(`   the fleet server: ${fleet.serverUrl} (API: docs/http-api.md), log ${fleet.serverLog}`);
  log(`   export SONDE_SERVER=${fleet.serverUrl} SONDE_TOKEN=$(cat ${fleet.tokenFile})`);
  log(`   npx sonde probes; npx sonde rollout status ${rollout.id}`);
  for (const h of fleet.hints) log(`   ${h}`);
  log(ok ? `demo finished in ${since()}` : 'demo FAILED');
  return ok;
}
