import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { basename, join } from 'node:path';
import { writeFileAtomic } from '../../base/src/fs/atomic.js';
import { LabError } from './errors.js';
import { tryRun } from './host.js';
import { processAlive, processExists } from '../../base/src/os/process-alive.js';
import { withLock } from './lab-state.js';

/**
 * A lab's own podman engine (notes/machine-facts.md §5): `podman system service` on a unix socket
 * in the lab's folder, serving the Docker-compatible API that testcontainers speaks. Its storage,
 * run state, locks, events and network configs live in that folder too, so a lab never touches
 * /var/lib/containers, /run/libpod, /dev/shm/libpod_lock or /etc/cni, and two labs never share a
 * container or a lock. The service is started on first use and stopped, with every conmon and
 * mount it left, when the lab's last container is gone.
 */
interface ServiceRecord {
  readonly pid: number;
  /** The boot the run state belongs to: after a reboot it is stale and is wiped before a start. */
  readonly bootId: string;
  readonly startedAt: string;
}

const START_TIMEOUT_MS = 20_000;

export class PodmanService {
  readonly socket: string;
  readonly url: string;
  private readonly record: string;
  private readonly lock: string;
  private readonly log: string;

  constructor(readonly dir: string) {
    this.socket = join(dir, 'podman.sock');
    this.url = `unix://${this.socket}`;
    this.record = join(dir, 'service.json');
    this.lock = join(dir, 'service.lock');
    this.log = join(dir, 'service.log');
  }

  /**
   * The three fixes this machine needs (root lacks CAP_SYS_RESOURCE so the default ulimits fail;
   * crun refuses hybrid cgroups; podman networks set ip_forward=1), and everything the engine keeps
   * moved into the lab's folder. `no_hosts` and `http_proxy = false` keep the host's /etc/hosts
   * and proxy variables out of the probes, as LXC does. `lock_type = "file"` puts the container
   * locks under tmp_dir instead of the machine-wide /dev/shm/libpod_lock segment. A short
   * `exit_command_delay` lets each exec's conmon go by itself (they are also killed on stop).
   */
  private containersConf(): string {
    const q = (p: string): string => JSON.stringify(join(this.dir, p));
    return [
      '# The lab\'s podman engine (lxc/src/podman-service.ts). Written by sonde lab; do not edit.',
      '[containers]',
      'default_ulimits = ["nofile=20000:20000", "nproc=8192:8192"]',
      'netns = "none"',
      'no_hosts = true',
      'http_proxy = false',
      'pids_limit = 512',
      'log_driver = "k8s-file"',
      '[engine]',
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      `events_logfile_path = ${q('events.log')}`,
      `tmp_dir = ${q('tmp')}`,
      `image_copy_tmp_dir = ${q('tmp')}`,
      'lock_type = "file"',
      'exit_command_delay = 10',
      '[network]',
      `network_config_dir = ${q('net')}`,
      '',
    ].join('\n');
  }

  private storageConf(): string {
    return [
      '[storage]',
      'driver = "overlay"',
      `graphroot = ${JSON.stringify(join(this.dir, 'storage'))}`,
      `runroot = ${JSON.stringify(join(this.dir, 'run'))}`,
      // No metacopy: a probe's upper must hold whole files, since the lab copies layers around.
      '[storage.options.overlay]',
      'mountopt = "nodev"',
      '',
    ].join('\n');
  }

  /** True when our service answers on our socket. */
  async running(): Promise<boolean> {
    const rec = await this.readRecord();
    return rec !== null && this.isOurs(rec.pid) && (await ping(this.socket));
  }

  /** Starts the service unless it runs; safe to call from parallel commands. */
  async ensure(): Promise<void> {
    if (Buffer.byteLength(this.socket) > 100) throw new LabError('LAB_UNSUPPORTED', `the podman socket path ${this.socket} is too long for a unix socket: use a shorter SONDE_LAB_HOME`);
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await withLock(this.lock, `the podman engine of ${this.dir}`, async () => {
      if (await this.running()) return;
      await this.start();
    });
  }

  private async start(): Promise<void> {
    const old = await this.readRecord();
    if (old && this.isOurs(old.pid)) await this.terminate(old.pid); // alive but deaf
    // tmp_dir and runroot must be wiped at boot (podman expects a tmpfs); the lab folder is not one.
    if (old && old.bootId !== bootId()) {
      for (const d of ['run', 'tmp']) await rm(join(this.dir, d), { recursive: true, force: true });
    }
    for (const d of ['storage', 'run', 'tmp', 'net']) await mkdir(join(this.dir, d), { recursive: true, mode: 0o700 });
    await writeFileAtomic(join(this.dir, 'containers.conf'), this.containersConf());
    await writeFileAtomic(join(this.dir, 'storage.conf'), this.storageConf());
    await rm(this.socket, { force: true });
    const out = openSync(this.log, 'a', 0o600);
    const child = spawn('podman', ['system', 'service', '--time=0', this.url], {
      detached: true,
      stdio: ['ignore', out, out],
      // A clean environment: nothing of the caller's reaches the engine or, through it, a probe.
      env: {
        PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
        HOME: '/root',
        CONTAINERS_CONF: join(this.dir, 'containers.conf'),
        CONTAINERS_STORAGE_CONF: join(this.dir, 'storage.conf'),
        TMPDIR: join(this.dir, 'tmp'),
      },
    });
    closeSync(out);
    const spawned = await new Promise<number>((resolve, reject) => {
      child.once('spawn', () => resolve(child.pid ?? 0));
      child.once('error', (e) => reject(new LabError('LAB_PROBE_FAILED', `podman system service: ${e.message}`, { cause: e })));
    });
    child.unref();
    await writeFileAtomic(this.record, `${JSON.stringify({ pid: spawned, bootId: bootId(), startedAt: new Date().toISOString() } satisfies ServiceRecord)}\n`);
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await ping(this.socket))) {
      if (!processExists(spawned) || Date.now() > deadline) {
        const tail = (await readFile(this.log, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' / ');
        if (processExists(spawned)) await this.terminate(spawned);
        throw new LabError('LAB_PROBE_FAILED', `podman system service did not answer on ${this.socket}${tail ? `: ${tail}` : ''}`);
      }
      await sleep(50);
    }
  }

  /**
   * Stops the service when `idle(up)` still holds under the engine's lock (`up`: the service
   * answers), then removes what it leaves behind: the conmon processes of exec sessions (they
   * outlive their containers), any `podman container cleanup` they started, and the storage's own
   * mounts in the lab folder. Also cleans up after a service that died by itself.
   */
  async stopIf(idle: (up: boolean) => Promise<boolean>): Promise<boolean> {
    if (!existsSync(this.dir)) return false;
    return withLock(this.lock, `the podman engine of ${this.dir}`, async () => {
      const up = await this.running();
      if (!(await idle(up))) return false;
      const rec = await this.readRecord();
      if (rec && this.isOurs(rec.pid)) await this.terminate(rec.pid);
      await this.killLeftovers((argv) => argv.some((a) => a.includes(`${this.dir}/`)));
      await unmountUnder(this.dir);
      await rm(this.socket, { force: true });
      await rm(this.record, { force: true });
      return true;
    });
  }

  /**
   * Kills the conmon processes a container's exec sessions left (each waits `exit_command_delay`
   * after its command ended) and their `podman container cleanup --exec`; never the container's
   * own conmon, which may still be cleaning up after the container's exit.
   */
  async killExecLeftovers(containerId: string): Promise<void> {
    await this.killLeftovers((argv) => argv.includes(containerId) && (argv.includes('--exec-process-spec') || argv.includes('--exec')) && argv.some((a) => a.includes(`${this.dir}/`)));
  }

  private async killLeftovers(ours: (argv: readonly string[]) => boolean): Promise<void> {
    const victims: number[] = [];
    for (const entry of await readdir('/proc')) {
      const pid = Number(entry);
      if (!Number.isSafeInteger(pid) || pid <= 1 || pid === process.pid) continue;
      let argv: string[];
      try {
        argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      } catch {
        continue; // gone
      }
      const tool = basename(argv[0] ?? '');
      if ((tool === 'conmon' || tool === 'podman') && ours(argv)) victims.push(pid);
    }
    for (const pid of victims) signal(pid, 'SIGKILL');
    const deadline = Date.now() + 5_000;
    while (victims.some((p) => processAlive(p)) && Date.now() < deadline) await sleep(20);
  }

  private async terminate(pid: number): Promise<void> {
    signal(pid, 'SIGTERM');
    const deadline = Date.now() + 10_000;
    while (processAlive(pid) && Date.now() < deadline) await sleep(50);
    if (processAlive(pid)) signal(pid, 'SIGKILL');
    while (processAlive(pid) && Date.now() < deadline + 5_000) await sleep(20);
  }

  /** The pid is our `podman system service` (and not a recycled pid). */
  private isOurs(pid: number): boolean {
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      return argv.includes('service') && argv.includes(this.url) && !zombie(pid);
    } catch {
      return false;
    }
  }

  private async readRecord(): Promise<ServiceRecord | null> {
    try {
      const r = JSON.parse(await readFile(this.record, 'utf8')) as Partial<ServiceRecord>;
      return typeof r.pid === 'number' && typeof r.bootId === 'string' ? (r as ServiceRecord) : null;
    } catch {
      return null;
    }
  }
}

function ping(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', method: 'GET', timeout: 2_000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode === 200));
    });
    req.on('error', () => resolve(false));
    req.on('timeout', () => {
      req.destroy();
      resolve(false);
    });
    req.end();
  });
}

/** Unmounts every mount at or below `dir`, deepest first (podman bind-mounts its overlay store on itself). */
export async function unmountUnder(dir: string): Promise<void> {
  const points = (await mountPoints()).filter((p) => p === dir || p.startsWith(`${dir}/`)).sort((a, b) => b.length - a.length);
  for (const p of points) {
    if (!(await tryRun('umount', [p]))) await tryRun('umount', ['-l', p]);
  }
}

/** The mount points of this mount namespace, unescaped. */
export async function mountPoints(): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((l) => (l.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}


/** A dead child of some other parent that has not reaped it yet counts as gone. */
function zombie(pid: number): boolean {
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return true;
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone already
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
