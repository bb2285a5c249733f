import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localFleetDir, stopLocalFleet } from '../../lxc/src/demo/local-fleet.js';
import { scratch } from '../helpers/packs.js';

/**
 * `npm run demo` where LXC cannot run (issue 6): the real CLI, with `--local`, brings up the fleet
 * server on loopback and three probes as local processes, rolls 1.1.1 out canary first, and
 * `--stop` leaves nothing of its folder running.
 */
const CLI = fileURLToPath(new URL('../../dist/cli/src/sonde.js', import.meta.url));

function sonde(args: string[], timeoutMs: number): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      done({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

/** Live (not zombie) processes whose command line or PROBE_ROOT names a path under `dir`. */
async function processesUnder(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of (await readdir('/proc')).filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid)) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    if (!stat || /^\d+ \(.*\) [ZX]/s.test(stat)) continue;
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ');
    const env = await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '');
    if (cmd.includes(dir) || env.split('\0').some((e) => e.startsWith(`PROBE_ROOT=${dir}`))) found.push(`${pid}: ${cmd}`);
  }
  return found;
}

let tmp: { dir: string; cleanup: () => Promise<void> };

beforeAll(async () => {
  tmp = await scratch('sonde-local-demo-');
});

afterAll(async () => {
  // Whatever a failed assertion left running.
  await stopLocalFleet(localFleetDir(tmp.dir)).catch(() => undefined);
  await tmp.cleanup();
});

describe('sonde demo --local', () => {
  let demo: { code: number; stdout: string; stderr: string };
  let recorded: { server: { pid: number } | null; probes: { agentPid: number | null; root: string }[] };

  it('rolls 1.1.1 out, canary first, to three probes that run as local processes', async () => {
    demo = await sonde(['demo', '--local', '--out', tmp.dir], 150_000);
    expect(demo.stderr).toBe('');
    expect(demo.code).toBe(0);
    expect(demo.stdout).toMatch(/probes run as local processes/);
    expect(demo.stdout).toMatch(/local-01, local-02, local-03: local processes, healthy on 1\.1\.0 at the server/);
    expect(demo.stdout).toMatch(/rollout completed: canary 1\/1 committed \| wave 1 2\/2 committed/);
    expect(demo.stdout).toContain('yes: all 3 probes committed 1.1.1');
    expect(demo.stdout).toMatch(/demo finished in/);
    recorded = JSON.parse(await readFile(join(localFleetDir(tmp.dir), 'fleet.json'), 'utf8'));
    expect(recorded.server).not.toBeNull();
    expect(recorded.probes.map((p) => p.agentPid)).not.toContain(null);
    expect(await processesUnder(tmp.dir)).not.toEqual([]);
  }, 170_000);

  it('prints the dashboard URL and a token that signs in to it, and says to open it', async () => {
    expect(demo?.code).toBe(0);
    const m = /the dashboard: open it: (http:\/\/127\.0\.0\.1:\d+)\/ and sign in with the token (\S+) /.exec(demo.stdout);
    expect(m, demo.stdout).not.toBeNull();
    const page = await fetch(`${m![1]}/`);
    expect([page.status, page.headers.get('content-type')]).toEqual([200, 'text/html; charset=utf-8']);
    const session = await fetch(`${m![1]}/api/v1/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token: m![2] }) });
    expect(session.status).toBe(201);
    expect(session.headers.get('set-cookie')).toMatch(/^sonde_session=/);
  });

  it('--stop stops every agent, app and the server it started, and leaves none of its folder running', async () => {
    expect(demo?.code).toBe(0);
    const apps = await Promise.all(recorded.probes.map(async (p) => Number((await readFile(join(p.root, 'run', 'app.pid'), 'utf8')).trim())));
    const stop = await sonde(['demo', '--local', '--stop', '--out', tmp.dir], 60_000);
    expect(stop.code).toBe(0);
    for (const name of ['local-01', 'local-02', 'local-03']) {
      expect(stop.stdout).toContain(`agent ${name}`);
      expect(stop.stdout).toContain(`app ${name}`);
    }
    expect(stop.stdout).toContain('fleet server');
    expect(await processesUnder(tmp.dir)).toEqual([]);
    for (const pid of [recorded.server!.pid, ...recorded.probes.map((p) => p.agentPid!), ...apps]) {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
      expect(stat === '' || /^\d+ \(.*\) [ZX]/s.test(stat), `pid ${pid} still runs`).toBe(true);
    }
    // A second stop finds nothing to do.
    expect((await sonde(['demo', '--local', '--stop', '--out', tmp.dir], 60_000)).stdout).toMatch(/^nothing runs in /);
  }, 60_000);
});
