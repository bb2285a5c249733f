import { spawn } from 'node:child_process';
import { chmod, mkdir, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processAlive } from '../../base/src/os/process-alive.js';
import { layoutOf } from '../../agent/src/update/layout.js';
import { ProcessRunner } from '../../agent/src/update/runner/process-runner.js';
import { scratch } from '../helpers/packs.js';

/**
 * An `exec` app is often a shell script that ends in `exec` (`exec busybox httpd -f ...`). For an
 * instant inside that execve the kernel shows the process with an empty environment, and the agent
 * recognises its app by the PROBE_ROOT in it: a health check landing in that instant took a healthy
 * app for dead and rolled the release back (CI, exec-runner.test.ts, once). Here an app exec-ing
 * itself 1500 times is asked for all along: it must never read as gone, and a stop with no pid file
 * must still find it.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
let root: string;
const started: number[] = [];

const REEXEC = `#!/bin/sh
n=$1
[ "$n" -gt 0 ] && exec "$0" $((n-1))
: > "$PROBE_ROOT/settled"
exec sleep 60
`;

async function startChurning(times: number): Promise<number> {
  const script = join(tmp.dir, 'reexec.sh');
  await writeFile(script, REEXEC);
  await chmod(script, 0o755);
  const child = spawn(script, [String(times)], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', PROBE_ROOT: root }, stdio: 'ignore', detached: true });
  child.unref();
  started.push(child.pid!);
  return child.pid!;
}

const settled = (): Promise<boolean> => stat(join(root, 'settled')).then(() => true, () => false);

beforeAll(async () => {
  tmp = await scratch('sonde-exec-instant-');
  root = join(tmp.dir, 'probe');
  await mkdir(join(root, 'run'), { recursive: true });
});

afterAll(async () => {
  for (const pid of started) if (processAlive(pid)) process.kill(pid, 'SIGKILL');
  await tmp.cleanup();
});

describe('an app caught inside an exec', () => {
  it('is never taken for gone by the health gate\'s liveness check while it execs', async () => {
    const layout = layoutOf(root);
    const pid = await startChurning(1500);
    await writeFile(join(layout.run, 'app.pid'), `${pid}\n`);
    const runner = new ProcessRunner(layout);
    let asks = 0;
    let gone = 0;
    const deadline = Date.now() + 60_000;
    while (!(await settled()) && Date.now() < deadline) {
      asks++;
      if ((await runner.running()) === null) gone++;
    }
    expect(await settled(), 'the script reached its last exec').toBe(true);
    expect(asks).toBeGreaterThan(200);
    expect(gone, `${gone} of ${asks} asks said the app was gone`).toBe(0);
    expect(await runner.running()).toBe(pid);
    await runner.stop(2000);
    expect(processAlive(pid)).toBe(false);
  }, 90_000);

  it('is found and stopped by its PROBE_ROOT when no pid file names it, mid-exec or not', async () => {
    await rm(join(root, 'settled'), { force: true });
    const layout = layoutOf(root);
    const runner = new ProcessRunner(layout);
    for (let i = 0; i < 60; i++) {
      const pid = await startChurning(100_000);
      await new Promise((r) => setTimeout(r, 5 + (i % 10) * 7));
      await runner.stop(2000);
      expect(processAlive(pid), `stop ${i + 1} left the app running`).toBe(false);
    }
  }, 90_000);
});
