import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureSamples } from '../../lxc/src/golden.js';
import { LAB_HOME, LAB_SKIP, openLab, sonde, SONDE_JS, waitUntil } from '../helpers/lab.js';

/**
 * `sonde lab up --server URL --token T`: the probes join a fleet server the user runs. It listens
 * on another address of this machine (a veth made for the test), and each probe gets a host
 * route to it through the bridge, never a default route. A server that offers probes only
 * loopback is refused with LAB_SERVER_FAILED.
 */
const LAB = 'eext';
const LAB2 = 'eextlo';
const ADDR = '10.233.91.1';

function portFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const s = createServer();
    s.once('error', () => done(false));
    s.listen(port, '127.0.0.1', () => s.close(() => done(true)));
  });
}

/** A port P with P + 1 (the server's MQTT port) free too. */
async function freePair(): Promise<number> {
  for (;;) {
    const p = 21000 + Math.floor(Math.random() * 9000);
    if ((await portFree(p)) && (await portFree(p + 1))) return p;
  }
}

async function startServer(data: string, listen: string[], keyring: string): Promise<{ child: ChildProcess; url: string; token: string }> {
  const port = await freePair();
  const child = spawn(process.execPath, [SONDE_JS, 'server', '--data', data, '--port', String(port), '--keyring', keyring, ...listen.flatMap((a) => ['--listen', a])], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  const token = await waitUntil('the admin token', async () => /^admin token: (\S+)$/m.exec(out)?.[1], 60_000, 50);
  return { child, url: `http://127.0.0.1:${port}`, token };
}

describe.skipIf(LAB_SKIP)('lab probes joining a fleet server of the user', () => {
  let scratch = '';
  const servers: ChildProcess[] = [];

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'sonde-eext-'));
    try {
      execFileSync('ip', ['link', 'del', 'slxt0'], { stdio: 'ignore' });
    } catch {
      // not there
    }
    execFileSync('ip', ['link', 'add', 'slxt0', 'type', 'veth', 'peer', 'name', 'slxt1']);
    execFileSync('ip', ['addr', 'add', `${ADDR}/32`, 'dev', 'slxt0']);
    execFileSync('ip', ['link', 'set', 'slxt0', 'up']);
    execFileSync('ip', ['link', 'set', 'slxt1', 'up']);
    await sonde(['lab', 'down', '--all', '--lab', LAB]);
    await sonde(['lab', 'down', '--all', '--lab', LAB2]);
  }, 120_000);

  afterAll(async () => {
    await sonde(['lab', 'down', '--all', '--lab', LAB]);
    await sonde(['lab', 'down', '--all', '--lab', LAB2]);
    for (const s of servers) s.kill('SIGTERM');
    try {
      execFileSync('ip', ['link', 'del', 'slxt0'], { stdio: 'ignore' });
    } catch {
      // gone
    }
    await rm(scratch, { recursive: true, force: true });
  }, 120_000);

  it('brings probes up on a server listening on another address of this machine, reached by a host route', async () => {
    const samples = await ensureSamples(join(LAB_HOME, 'images'), () => undefined);
    const server = await startServer(join(scratch, 'srv'), [ADDR], samples.rootCert);
    servers.push(server.child);
    const up = await sonde(['lab', 'up', '--count', '1', '--line', 'beta', '--lab', LAB, '--server', server.url, '--token', server.token]);
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout.trim()).toBe(`${LAB}-01`);
    // The server itself says so (the lab's ls reads it from there).
    const ls = JSON.parse((await sonde(['lab', 'ls', '--json', '--lab', LAB])).stdout) as { server: { own: boolean; url: string }; probes: { online: boolean; version: string; health: string }[] };
    expect(ls.server).toMatchObject({ own: false, url: server.url });
    expect(ls.probes[0]).toMatchObject({ online: true, version: '1.1.1', health: 'ok' });
    const lab = await openLab(LAB);
    const state = (await lab.state())!;
    const routes = await lab.exec(`${LAB}-01`, ['/usr/bin/busybox', 'ip', 'route']);
    expect(routes.stdout).toContain(`${ADDR} via ${state.net.hostIp} dev eth0`);
    expect(routes.stdout).not.toMatch(/default/);
    // down --all leaves the user's server running.
    expect((await sonde(['lab', 'down', '--all', '--lab', LAB])).code).toBe(0);
    expect(server.child.exitCode).toBeNull();
  }, 240_000);

  it('refuses a server that offers probes only loopback, with LAB_SERVER_FAILED', async () => {
    const samples = await ensureSamples(join(LAB_HOME, 'images'), () => undefined);
    const server = await startServer(join(scratch, 'srv-lo'), [], samples.rootCert);
    servers.push(server.child);
    const up = await sonde(['lab', 'up', '--count', '1', '--line', 'stable', '--lab', LAB2], { SONDE_SERVER: server.url, SONDE_TOKEN: server.token });
    expect(up.code).toBe(1);
    expect(up.stderr).toMatch(/error LAB_SERVER_FAILED: .*127\.0\.0\.1.*--listen/);
  }, 240_000);
});
