import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../probe-app/probe-root.js';
import { killDaemon, makeProbe, spawnDaemon, waitUntil, type DaemonProcess } from '../helpers/daemon-harness.js';
import { scratch } from '../helpers/packs.js';

/**
 * sd_notify (DESIGN.md, "The daemon": READY/WATCHDOG when NOTIFY_SOCKET is set, through the
 * `systemd-notify` binary). systemd is not running here, so a python3 child plays its part: it
 * binds the Unix datagram socket NOTIFY_SOCKET names and prints every datagram it receives.
 */
const SYSTEMD_NOTIFY = '/usr/bin/systemd-notify';

const LISTENER = `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
print("LISTENING", flush=True)
while True:
    data = s.recv(65536)
    print(data.decode("utf-8", "replace").replace("\\n", "|"), flush=True)
`;

let tmp: { dir: string; cleanup: () => Promise<void> };
let listener: ChildProcess | undefined;
let datagrams: string[] = [];
let socketPath: string;
let d: DaemonProcess | undefined;

beforeAll(async () => {
  tmp = await scratch('sonde-daemon-notify-');
  socketPath = join(tmp.dir, 'notify.sock');
  const py = spawn('python3', ['-c', LISTENER, socketPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  listener = py;
  let buf = '';
  py.stdout!.on('data', (c: Buffer) => {
    buf += c.toString();
    const lines = buf.split('\n');
    buf = lines.pop()!;
    datagrams.push(...lines);
  });
  await waitUntil('the notify socket bound', () => datagrams.includes('LISTENING'), 10_000, () => (py.exitCode !== null ? `python3 exited ${py.exitCode}` : null));
  datagrams = [];
});

afterAll(async () => {
  await killDaemon(d);
  listener?.kill('SIGKILL');
  await tmp?.cleanup();
});

describe.skipIf(!existsSync(SYSTEMD_NOTIFY) && !process.env.CI)('daemon: sd_notify', () => {
  it('sends READY=1 once started, WATCHDOG=1 at half of WATCHDOG_USEC, and STOPPING=1 on SIGTERM', async () => {
    // No broker is needed: the daemon is ready once it has started, whether or not MQTT is up.
    const dead = await freePort();
    const p = await makeProbe(tmp.dir, { mqttUrl: `mqtt://127.0.0.1:${dead}`, httpBase: `http://127.0.0.1:${dead}` });
    d = spawnDaemon(p.configPath, { NOTIFY_SOCKET: socketPath, WATCHDOG_USEC: '300000' });
    const daemon = d;
    const pid = daemon.child.pid!;
    const gone = (): string | null => (daemon.child.exitCode !== null ? `the daemon exited: ${daemon.stderr()}` : null);

    const ready = await waitUntil('READY=1', () => datagrams.find((l) => l.split('|').includes('READY=1')), 15_000, gone);
    expect(ready.split('|')).toEqual(expect.arrayContaining([`STATUS=probe ${p.id} ready`, `MAINPID=${pid}`]));
    await waitUntil('the start logged', () => daemon.logs().some((l) => l.msg === 'agent started'), 5000);

    // Every 150 ms: at least 5 in 1.5 s (a margin for process start-up of systemd-notify).
    const from = datagrams.length;
    const t0 = Date.now();
    await waitUntil('five WATCHDOG=1', () => datagrams.slice(from).filter((l) => l.split('|').includes('WATCHDOG=1')).length >= 5, 5000, gone);
    expect(Date.now() - t0).toBeLessThan(2500);
    expect(datagrams.filter((l) => l.includes('WATCHDOG=1')).every((l) => l.split('|').includes(`MAINPID=${pid}`))).toBe(true);

    const signalled = Date.now();
    daemon.child.kill('SIGTERM');
    expect(await daemon.exited).toEqual({ code: 0, signal: null });
    // Nothing it started keeps it alive once drained (no broker to say goodbye to).
    expect(Date.now() - signalled).toBeLessThan(3000);
    expect(datagrams.some((l) => l.split('|').includes('STOPPING=1'))).toBe(true);
    // READY came before any watchdog ping.
    const firstReady = datagrams.findIndex((l) => l.includes('READY=1'));
    const firstWatchdog = datagrams.findIndex((l) => l.includes('WATCHDOG=1'));
    expect(firstReady).toBeLessThan(firstWatchdog);
  });
});
