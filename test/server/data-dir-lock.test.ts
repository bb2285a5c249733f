import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { dataPaths, lockDataDir } from '../../server/src/data-dir.js';
import { scratch } from '../helpers/packs.js';

/**
 * One server per data directory (server/src/data-dir.ts): server.pid names the holder. A pid file
 * left by a server that died is taken over, also when that server is a zombie nobody has reaped
 * yet (a container's init may reap late or never): it has exited and serves no one.
 */
let tmp: { dir: string; cleanup: () => Promise<void> };
const children: ChildProcess[] = [];

beforeAll(async () => {
  tmp = await scratch('sonde-data-dir-lock-');
});
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await tmp.cleanup();
});

async function pathsWithPid(name: string, pid: number) {
  const p = dataPaths(join(tmp.dir, name));
  await mkdir(p.root, { recursive: true });
  await writeFile(p.pid, `${pid}\n`);
  return p;
}

/** A `sleep 0.05` whose parent (a `sleep 60`, via exec) never reaps it: a zombie with a live parent. */
async function zombiePid(): Promise<number> {
  const parent = spawn('sh', ['-c', 'sleep 0.05 & echo $!; exec sleep 60'], { stdio: ['ignore', 'pipe', 'ignore'] });
  children.push(parent);
  const pid = await new Promise<number>((resolve) => parent.stdout!.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))));
  for (let i = 0; i < 100; i++) {
    const state = (await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')).replace(/^\d+ \(.*\) /s, '')[0];
    if (state === 'Z') return pid;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`process ${pid} did not become a zombie`);
}

describe('the data directory lock', () => {
  it('is refused with DATA_DIR_IN_USE while the pid file names a running process', async () => {
    const holder = spawn('sleep', ['60'], { stdio: 'ignore' });
    children.push(holder);
    const p = await pathsWithPid('held', holder.pid!);
    await expect(lockDataDir(p)).rejects.toMatchObject({ code: 'DATA_DIR_IN_USE' });
    expect((await readFile(p.pid, 'utf8')).trim()).toBe(String(holder.pid));
  });

  it('is taken over from a server that has exited but was never reaped (a zombie)', async () => {
    const pid = await zombiePid();
    const p = await pathsWithPid('zombie', pid);
    const release = await lockDataDir(p);
    expect((await readFile(p.pid, 'utf8')).trim()).toBe(String(process.pid));
    await release();
  });

  it('is taken over from a process that no longer exists', async () => {
    const gone = spawn('true', { stdio: 'ignore' });
    await new Promise((r) => gone.once('exit', r));
    const p = await pathsWithPid('gone', gone.pid!);
    const release = await lockDataDir(p);
    expect((await readFile(p.pid, 'utf8')).trim()).toBe(String(process.pid));
    await release();
  });
});
