import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createDataDirs, dataPaths } from '../../server/src/data-dir.js';
import { writeMosquittoConfig } from '../../server/src/mqtt/mosquitto-config.js';
import { SqliteStore } from '../../server/src/store/sqlite-store.js';
import { canConnect } from '../../base/src/net/can-connect.js';

/**
 * A real Mosquitto 2.0 child process running the files `sonde server mosquitto-config` writes for
 * a data directory (loopback only, a free port, its PID tracked; notes/machine-facts.md §3).
 */
export const MOSQUITTO = '/usr/sbin/mosquitto';

export interface Mosquitto {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  log(): string;
  /** Rewrites nothing; asks Mosquitto to reload its password file and ACLs (after an enrollment). */
  reload(): Promise<void>;
  close(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Writes the config for `dataDir` (creating the directory's database if needed) and starts Mosquitto on it. */
export async function startMosquitto(dataDir: string, configDir = join(dataDir, '..', 'mosquitto')): Promise<Mosquitto> {
  const paths = dataPaths(dataDir);
  await createDataDirs(paths);
  const store = SqliteStore.open(paths.db);
  const port = await freePort();
  let files;
  try {
    // Running as root, Mosquitto would drop to its own user, which cannot read the temp files.
    files = await writeMosquittoConfig(store, paths, { out: configDir, port, runAs: 'root' });
  } finally {
    await store.close();
  }
  const child: ChildProcess = spawn(MOSQUITTO, ['-v', '-c', files.conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const until = Date.now() + 10_000;
  while (!(await canConnect(port))) {
    if (child.exitCode !== null) throw new Error(`mosquitto exited (${child.exitCode}): ${out}`);
    if (Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`mosquitto did not listen: ${out}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    dir: configDir,
    log: () => out,
    async reload() {
      child.kill('SIGHUP');
      await new Promise((r) => setTimeout(r, 300));
    },
    async close() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

