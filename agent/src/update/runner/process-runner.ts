import { spawn } from 'node:child_process';
import { closeSync, fstatSync, mkdirSync, openSync } from 'node:fs';
import { open, readdir, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../../../../base/src/fs/atomic.js';
import { processAlive } from '../../../../base/src/os/process-alive.js';
import type { Layout } from '../layout.js';
import { readReleaseInfo } from '../release-info.js';
import { UpdateError } from '../errors.js';
import type { AppRunner } from './runner.js';

/**
 * The `process` runner: `node <slot>/app/<entry>` as a detached child, in its own process group,
 * with its output appended to `<root>/run/app.log` and its pid in `<root>/run/app.pid`. The app
 * outlives the agent (an agent crash must not take the probe's service down), so the pid file is
 * how the next agent finds it.
 */
function nodeModulesDir(): string {
  const req = createRequire(import.meta.url);
  // .../node_modules/better-sqlite3/package.json -> .../node_modules
  return dirname(dirname(req.resolve('better-sqlite3/package.json')));
}


async function isOurApp(pid: number, root: string): Promise<boolean> {
  if (!processAlive(pid)) return false;
  try {
    // A recycled pid belongs to someone else: check the environment the app was started with.
    const env = await readFile(`/proc/${pid}/environ`, 'utf8');
    return env.split('\0').includes(`PROBE_ROOT=${root}`);
  } catch {
    return false;
  }
}

export class ProcessRunner implements AppRunner {
  private readonly pidFile: string;
  private readonly logFile: string;
  /** Where app.log ended when this runner last started the app (0: read the tail). */
  private logStart = 0;

  constructor(private readonly layout: Layout) {
    this.pidFile = join(layout.run, 'app.pid');
    this.logFile = join(layout.run, 'app.log');
  }

  async running(): Promise<number | null> {
    let pid: number;
    try {
      pid = Number((await readFile(this.pidFile, 'utf8')).trim());
    } catch {
      return null;
    }
    if (!Number.isSafeInteger(pid) || pid <= 1) return null;
    return (await isOurApp(pid, this.layout.root)) ? pid : null;
  }

  async start(slotDir: string): Promise<void> {
    if (await this.running()) await this.stop();
    const release = await readReleaseInfo(join(slotDir, 'app'));
    mkdirSync(this.layout.run, { recursive: true });
    const log = openSync(this.logFile, 'a');
    this.logStart = fstatSync(log).size;
    try {
      const child = spawn(process.execPath, [join(slotDir, 'app', release.entry)], {
        cwd: join(slotDir, 'app'),
        detached: true,
        stdio: ['ignore', log, log],
        env: {
          PATH: process.env.PATH ?? '/usr/bin:/bin',
          PROBE_ROOT: this.layout.root,
          PROBE_SLOT: slotDir,
          NODE_PATH: nodeModulesDir(),
        },
      });
      const pid = child.pid;
      if (pid === undefined) throw new UpdateError('APP_START_FAILED', `could not start ${release.entry}`);
      child.unref();
      await writeFileAtomic(this.pidFile, `${pid}\n`);
    } finally {
      closeSync(log);
    }
  }

  async lastWords(maxBytes = 2048): Promise<string | null> {
    let fh;
    try {
      fh = await open(this.logFile, 'r');
    } catch {
      return null;
    }
    try {
      const size = (await fh.stat()).size;
      const from = Math.max(this.logStart <= size ? this.logStart : 0, size - maxBytes);
      const buf = Buffer.alloc(size - from);
      const { bytesRead } = await fh.read(buf, 0, buf.length, from);
      let text = buf.subarray(0, bytesRead).toString('utf8');
      // Cut to whole lines when the window started inside one.
      if (from > this.logStart && from > 0) text = text.slice(text.indexOf('\n') + 1);
      text = text.trim();
      return text.length > 0 ? text : null;
    } finally {
      await fh.close();
    }
  }

  async stop(): Promise<void> {
    const named = await this.running();
    // An agent killed between spawning the app and writing app.pid leaves an app that no pid file
    // names, holding the port and the database: it is found by the PROBE_ROOT it was started with.
    const pids = new Set([...(named !== null ? [named] : []), ...(await appsOf(this.layout.root))]);
    for (const pid of pids) await terminate(pid);
    await rm(this.pidFile, { force: true });
  }
}

/** Every live process started with PROBE_ROOT=<root> (Linux /proc; none found elsewhere). */
async function appsOf(root: string): Promise<number[]> {
  let names: string[];
  try {
    names = await readdir('/proc');
  } catch {
    return [];
  }
  const want = `PROBE_ROOT=${root}`;
  const pids: number[] = [];
  for (const name of names) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    const env = await readFile(`/proc/${name}/environ`, 'utf8').catch(() => '');
    if (env.split('\0').includes(want)) pids.push(Number(name));
  }
  return pids;
}

/** SIGTERM, five seconds to stop cleanly, then SIGKILL. */
async function terminate(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    // gone already
  }
  const deadline = Date.now() + 5000;
  while (processAlive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
  if (processAlive(pid)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
    while (processAlive(pid)) await new Promise((r) => setTimeout(r, 10));
  }
}
