import { readFileSync } from 'node:fs';
import { chmod, copyFile, lstat, mkdir, readdir, readFile, readlink, rm, rmdir, stat, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { PassThrough } from 'node:stream';
import type Dockerode from 'dockerode';
import type { ContainerRuntimeClient } from 'testcontainers';
import { writeFileAtomic } from '../../base/src/fs/atomic.js';
import { PROBE_ENV, type ExecResult, type ProbeBackend, type ProbeRunState, type ProbeSpec } from './backend.js';
import { LabError } from './errors.js';
import { tryRun, which } from './host.js';
import { ipForward } from './network.js';
import { ensureBaseImage } from './podman-image.js';
import { PodmanService, mountPoints } from './podman-service.js';
import { checkForwarding, netnsPath, plugProbe, unplugProbe } from './probe-netns.js';

/**
 * Probes as podman containers, driven through testcontainers against the lab's own podman service
 * (podman-service.ts), behind the same interface as LXC (notes/machine-facts.md §5):
 *
 * - Root file system: podman's own overlay, with the base image (podman-image.ts) as the lower
 *   layer and the probe's `upper` folder as the container's layer. Right after testcontainers
 *   creates the container, and before it starts, the container layer's `diff` and `work` folders
 *   (GraphDriver UpperDir and WorkDir in `inspect`) are replaced by symlinks to the probe's upper
 *   and to `olwork` beside it (LXC's place for the overlay workdir). Every write in the probe so
 *   lands in its upper, as with LXC, and podman mounts and unmounts the overlay at start and stop.
 *   (A bind mount of a host overlay at `/` is not an option: podman orders mounts with the same
 *   number of path components arbitrarily, so `/` may come after /proc or /usr.)
 * - PID 1 is busybox init, so the base's inittab starts the agent and vsftpd. /usr is the host's,
 *   read-only; /tmp and /run are tmpfs; the spec's mounts are bind mounts.
 * - Network: a netns per probe with the veth on the lab bridge (probe-netns.ts), joined with
 *   network mode `ns:/run/netns/NAME`; podman networks are never used.
 * - `stop({kill: true})` is SIGKILL to the container's init, which takes its whole pid namespace,
 *   exec'd commands included, with it; `start` restarts the same container on the same upper.
 */
const HALT_TIMEOUT_MS = 10_000;
const TRANSITION_TIMEOUT_MS = 15_000;

type Testcontainers = typeof import('testcontainers');

/** What `create` records so that a later command (another process) can start the probe. */
interface ProbeRecord {
  readonly spec: ProbeSpec;
  readonly image: string;
}

export class PodmanBackend implements ProbeBackend {
  readonly kind = 'podman' as const;
  private readonly service: PodmanService;
  private ready: Promise<ContainerRuntimeClient> | null = null;
  private readonly images = new Map<string, Promise<string>>();

  constructor(private readonly dir: string) {
    this.service = new PodmanService(dir);
  }

  /** Why this machine cannot run podman probes, or null. */
  static available(): string | null {
    if (!which('podman')) return 'podman is not installed (apt-get install podman runc)';
    if (!which('runc')) return 'runc is not installed (apt-get install runc): crun refuses the hybrid cgroup layout';
    if (!which('conmon')) return 'conmon is not installed (apt-get install podman)';
    if (!which('busybox')) return 'busybox is not installed (apt-get install busybox-static)';
    for (const tool of ['ip', 'tar', 'umount']) if (!which(tool)) return `${tool} is not installed`;
    try {
      if (!/\toverlay$/m.test(readFileSync('/proc/filesystems', 'utf8'))) return 'the kernel has no overlayfs';
    } catch {
      return 'cannot read /proc/filesystems';
    }
    try {
      createRequire(import.meta.url).resolve('testcontainers');
    } catch {
      return 'the testcontainers package is not installed (npm install; it is a devDependency)';
    }
    return null;
  }

  private recordPath(name: string): string {
    return join(this.dir, 'probes', `${name}.json`);
  }

  private async readRecord(name: string): Promise<ProbeRecord | null> {
    try {
      return JSON.parse(await readFile(this.recordPath(name), 'utf8')) as ProbeRecord;
    } catch {
      return null;
    }
  }

  // ----- the engine -----

  /** The lab's service, running, and a testcontainers client bound to it. */
  private client(): Promise<ContainerRuntimeClient> {
    this.ready ??= (async () => {
      await this.service.ensure();
      // testcontainers finds its engine in the environment, once per process. Its Ryuk reaper
      // image cannot be pulled here, and the lab removes what it made itself.
      process.env['DOCKER_HOST'] = this.service.url;
      process.env['TESTCONTAINERS_RYUK_DISABLED'] = 'true';
      const client = await (await testcontainers()).getContainerRuntimeClient();
      const socket = (client.container.dockerode.modem as { socketPath?: unknown }).socketPath;
      if (socket !== this.service.socket) {
        throw new LabError('LAB_BUSY', `testcontainers in this process already talks to ${String(socket)}, not ${this.service.socket}: one podman lab per process`);
      }
      return client;
    })().catch((e: unknown) => {
      this.ready = null;
      throw e instanceof LabError ? e : new LabError('LAB_PROBE_FAILED', `podman engine: ${(e as Error).message}`, { cause: e });
    });
    return this.ready;
  }

  private async inspect(name: string): Promise<Dockerode.ContainerInspectInfo | null> {
    const client = await this.client();
    try {
      return await client.container.inspect(client.container.getById(name));
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode === 404) return null;
      throw new LabError('LAB_PROBE_FAILED', `podman inspect ${name}: ${(e as Error).message}`, { cause: e });
    }
  }

  /** Waits until the container is running, or until it is stopped and its root is unmounted. */
  private async settle(name: string, running: boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const info = await this.inspect(name);
      const merged = info ? layerDirs(info).merged : undefined;
      const done = running ? info?.State.Running === true : !info?.State.Running && !(merged && (await mountPoints()).includes(merged));
      if (done) return true;
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  private image(lower: string): Promise<string> {
    let p = this.images.get(lower);
    if (!p) {
      p = this.client().then((c) => ensureBaseImage(c.container.dockerode, lower));
      p.catch(() => this.images.delete(lower));
      this.images.set(lower, p);
    }
    return p;
  }

  // ----- the probe's layer as the container's layer -----

  private static workdir(spec: ProbeSpec): string {
    return join(dirname(spec.upper), 'olwork');
  }

  /** Points a stopped container's layer at the probe's upper (idempotent). */
  private static async attachUpper(info: Dockerode.ContainerInspectInfo, spec: ProbeSpec): Promise<void> {
    const { upper: diff, work } = layerDirs(info);
    if (info.GraphDriver.Name !== 'overlay' || !diff || !work) throw new LabError('LAB_PROBE_FAILED', `podman: ${spec.name} is not on the overlay storage driver (${info.GraphDriver.Name})`);
    const olwork = PodmanBackend.workdir(spec);
    await mkdir(olwork, { recursive: true });
    // overlayfs wants the upper and work folders on one file system.
    if ((await stat(spec.upper)).dev !== (await stat(olwork)).dev) throw new LabError('LAB_PROBE_FAILED', `podman: ${spec.upper} and ${olwork} are on different file systems`);
    for (const [slot, target] of [[diff, spec.upper], [work, olwork]] as const) {
      const s = await lstat(slot).catch(() => null);
      if (s?.isSymbolicLink() && (await readlink(slot)) === target) continue;
      if (s?.isSymbolicLink()) await rm(slot);
      else if (s) await rmdir(slot); // podman's own, still empty: the container never ran
      await symlink(target, slot);
    }
  }

  /** Gives podman back empty folders, so that removing the container cannot reach the upper. */
  private static async detachUpper(info: Dockerode.ContainerInspectInfo): Promise<void> {
    const { upper, work } = layerDirs(info);
    for (const slot of [upper, work]) {
      if (!slot || !(await lstat(slot).catch(() => null))?.isSymbolicLink()) continue;
      await rm(slot);
      await mkdir(slot);
    }
  }

  /**
   * The probe keeps its own /etc/resolv.conf (podman would bind the host's over it): the base's
   * file is copied up into the upper if the upper has none, and bound over itself.
   */
  private static async ownResolvConf(spec: ProbeSpec): Promise<string | null> {
    const mine = join(spec.upper, 'etc', 'resolv.conf');
    if (await lstat(mine).catch(() => null)) return (await lstat(mine)).isFile() ? mine : null;
    const base = join(spec.lower, 'etc', 'resolv.conf');
    if (!(await lstat(base).catch(() => null))?.isFile()) return null;
    await mkdir(dirname(mine), { recursive: true });
    await copyFile(base, mine);
    await chmod(mine, (await stat(base)).mode & 0o7777);
    return mine;
  }

  // ----- the interface -----

  async create(spec: ProbeSpec): Promise<void> {
    if (spec.init === 'systemd') throw new LabError('LAB_UNSUPPORTED', 'probes with systemd as PID 1 run on the lxc backend only');
    await mkdir(join(this.dir, 'probes'), { recursive: true, mode: 0o700 });
    try {
      const image = await this.image(spec.lower);
      // A new definition replaces an old container of that name, as a new LXC config would.
      await this.removeContainer(spec.name);
      await writeFileAtomic(this.recordPath(spec.name), `${JSON.stringify({ spec, image } satisfies ProbeRecord, null, 2)}\n`);
    } catch (e) {
      // Nothing was defined, so no `destroy` will come to stop an engine this started.
      await this.releaseIfIdle().catch(() => undefined);
      throw e;
    }
  }

  async start(name: string): Promise<void> {
    const rec = await this.readRecord(name);
    if (!rec) throw new LabError('LAB_PROBE_FAILED', `podman: probe ${name} has no definition`);
    const client = await this.client();
    const existing = await this.inspect(name);
    if (existing?.State.Running) return;
    const before = ipForward();
    try {
      await plugProbe(rec.spec);
      if (existing) {
        await PodmanBackend.attachUpper(existing, rec.spec);
        await client.container.start(client.container.getById(name));
      } else {
        await this.run(rec);
      }
      if (!(await this.settle(name, true, TRANSITION_TIMEOUT_MS))) throw new Error(`not running after start: ${await consoleTail(rec.spec)}`);
    } catch (e) {
      await this.halt(name, 'SIGKILL').catch(() => undefined);
      await unplugProbe(rec.spec.veth);
      if (e instanceof LabError) throw e;
      throw new LabError('LAB_PROBE_FAILED', `podman: starting ${name}: ${(e as Error).message}`, { cause: e });
    }
    checkForwarding(before, `probe ${name} was started`);
  }

  /** The container, created and started by testcontainers on the probe's first start. */
  private async run(rec: ProbeRecord): Promise<void> {
    const { spec } = rec;
    const tc = await testcontainers();
    const inspect = (id: string): Promise<Dockerode.ContainerInspectInfo | null> => this.inspect(id);
    class ProbeContainer extends tc.GenericContainer {
      /** testcontainers has no setter for the log driver: init's console goes to the spec's file, as with LXC. */
      withConsoleLog(path: string): this {
        this.hostConfig.LogConfig = { Type: 'k8s-file', Config: { path } };
        return this;
      }

      /** Between create and start: the container's layer becomes the probe's upper. */
      protected override async containerCreated(id: string): Promise<void> {
        const info = await inspect(id);
        if (!info) throw new LabError('LAB_PROBE_FAILED', `podman: container ${id} vanished after create`);
        await PodmanBackend.attachUpper(info, spec);
      }
    }
    const resolvConf = await PodmanBackend.ownResolvConf(spec);
    await new ProbeContainer(rec.image)
      .withName(spec.name)
      .withHostname(spec.name)
      .withEntrypoint(['/bin/busybox', 'init'])
      .withEnvironment({ ...PROBE_ENV })
      .withBindMounts([
        { source: '/usr', target: '/usr', mode: 'ro' },
        ...(resolvConf ? [{ source: resolvConf, target: '/etc/resolv.conf', mode: 'rw' as const }] : []),
        ...spec.mounts.map((m) => ({ source: m.host, target: m.target, mode: m.readOnly ? ('ro' as const) : ('rw' as const) })),
      ])
      .withTmpFs({ '/tmp': 'rw,nosuid,nodev,size=256m,mode=1777', '/run': 'rw,nosuid,nodev,size=16m,mode=755' })
      .withNetworkMode(`ns:${netnsPath(spec.veth)}`)
      // Podman drops these, LXC probes keep them: NET_RAW (busybox ping), NET_ADMIN (rcS adds host
      // routes to a server of the user's, in the probe's own namespace), AUDIT_WRITE.
      .withAddedCapabilities('NET_RAW', 'NET_ADMIN', 'AUDIT_WRITE')
      .withResourcesQuota({ memory: 0.75 })
      .withLabels({ 'sonde.lab.probe': spec.name })
      .withAutoCleanup(false)
      .withConsoleLog(spec.consoleLog)
      .start();
  }

  async stop(name: string, opts: { kill: boolean }): Promise<void> {
    const rec = await this.readRecord(name);
    const info = await this.inspect(name);
    if (info?.State.Running) {
      // busybox init halts on SIGUSR1 (its ::shutdown actions run); SIGKILL is the power cut.
      if (opts.kill || !(await this.halt(name, 'SIGUSR1', HALT_TIMEOUT_MS))) {
        if (!(await this.halt(name, 'SIGKILL'))) throw new LabError('LAB_PROBE_FAILED', `podman: ${name} did not stop`);
      }
    }
    if (info) await this.service.killExecLeftovers(info.Id);
    if (rec) await unplugProbe(rec.spec.veth);
  }

  /** Sends `signal` to the container's init and waits for it to stop; false if it did not. */
  private async halt(name: string, signal: 'SIGUSR1' | 'SIGKILL', timeoutMs = TRANSITION_TIMEOUT_MS): Promise<boolean> {
    const client = await this.client();
    try {
      await client.container.getById(name).kill({ signal });
    } catch (e) {
      const code = (e as { statusCode?: number }).statusCode;
      if (code !== 404 && code !== 409 && code !== 304) throw new LabError('LAB_PROBE_FAILED', `podman kill -s ${signal} ${name}: ${(e as Error).message}`, { cause: e });
    }
    return this.settle(name, false, timeoutMs);
  }

  private async removeContainer(name: string): Promise<void> {
    const info = await this.inspect(name);
    if (!info) return;
    if (info.State.Running && !(await this.halt(name, 'SIGKILL'))) throw new LabError('LAB_PROBE_FAILED', `podman: ${name} did not stop`);
    await PodmanBackend.detachUpper(info);
    const client = await this.client();
    try {
      await client.container.getById(name).remove({ force: true, v: true });
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode !== 404) throw new LabError('LAB_PROBE_FAILED', `podman rm ${name}: ${(e as Error).message}`, { cause: e });
    }
    await this.service.killExecLeftovers(info.Id);
  }

  async destroy(name: string): Promise<void> {
    const rec = await this.readRecord(name);
    try {
      if (rec || (await this.service.running())) await this.removeContainer(name);
    } finally {
      // The probe's link and definition go even when the engine failed (its error is thrown).
      if (rec) {
        await unplugProbe(rec.spec.veth);
        await rm(PodmanBackend.workdir(rec.spec), { recursive: true, force: true });
      }
      await rm(this.recordPath(name), { force: true });
    }
    await this.releaseIfIdle();
  }

  /**
   * Stops the lab's engine once no probe is defined and it holds no container. Parallel destroys
   * all get here; the engine's lock makes one of them stop it and the others find it stopped.
   */
  private async releaseIfIdle(): Promise<void> {
    // Taken before the engine's lock: client() may need that lock to start the service.
    const client = (await this.service.running()) ? await this.client() : null;
    const stopped = await this.service.stopIf(async (up) => {
      const defined = await readdir(join(this.dir, 'probes')).catch(() => [] as string[]);
      if (defined.some((f) => f.endsWith('.json'))) return false;
      if (!up) return true; // already stopped: only leftovers to sweep
      if (!client) return false; // another command started it meanwhile, and uses it
      return (await client.container.dockerode.listContainers({ all: true })).length === 0;
    });
    if (stopped) this.ready = null;
  }

  async known(): Promise<string[]> {
    const files = await readdir(join(this.dir, 'probes')).catch(() => [] as string[]);
    return files.filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -'.json'.length));
  }

  async state(name: string): Promise<ProbeRunState> {
    if (!(await this.readRecord(name))) return 'missing';
    return (await this.inspect(name))?.State.Running ? 'running' : 'stopped';
  }

  async exec(name: string, argv: readonly string[], opts: { input?: string; env?: Readonly<Record<string, string>>; timeoutMs?: number } = {}): Promise<ExecResult> {
    const client = await this.client();
    const env = { ...PROBE_ENV, ...(opts.env ?? {}) };
    const timeoutMs = opts.timeoutMs ?? 120_000;
    let exec: Dockerode.Exec;
    let stream: NodeJS.ReadWriteStream;
    try {
      // Only PROBE_ENV and the caller's variables, on top of the container's own (PROBE_ENV too).
      exec = await client.container.getById(name).exec({
        Cmd: [...argv],
        Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
        WorkingDir: '/',
        AttachStdin: opts.input !== undefined,
        AttachStdout: true,
        AttachStderr: true,
        Tty: false,
      });
      stream = (await exec.start({ hijack: true, stdin: opts.input !== undefined })) as NodeJS.ReadWriteStream;
    } catch (e) {
      return { code: 125, stdout: '', stderr: `podman exec ${name}: ${(e as Error).message}\n` };
    }
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    stdout.on('data', (d: Buffer) => out.push(d));
    stderr.on('data', (d: Buffer) => err.push(d));
    client.container.dockerode.modem.demuxStream(stream, stdout, stderr);
    if (opts.input !== undefined) stream.end(opts.input);
    let timer: NodeJS.Timeout | undefined;
    const finished = await Promise.race([
      new Promise<boolean>((resolve) => {
        stream.once('end', () => resolve(true));
        stream.once('close', () => resolve(true));
        stream.once('error', () => resolve(true));
      }),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs))),
    ]);
    clearTimeout(timer);
    const text = (b: Buffer[]): string => Buffer.concat(b).toString();
    if (!finished) {
      // The command runs in the probe's pid namespace; the exec session knows its host pid.
      const pid = (await exec.inspect().catch(() => null))?.Pid;
      if (pid) await tryRun('kill', ['-KILL', String(pid)]);
      (stream as unknown as { destroy(): void }).destroy();
      return { code: 124, stdout: text(out), stderr: `${text(err)}podman exec ${name}: timed out after ${timeoutMs} ms\n` };
    }
    for (let i = 0; i < 100; i++) {
      const info = await exec.inspect().catch(() => null);
      if (!info) break;
      if (!info.Running) return { code: info.ExitCode ?? 1, stdout: text(out), stderr: text(err) };
      await new Promise((r) => setTimeout(r, 20));
    }
    return { code: 1, stdout: text(out), stderr: `${text(err)}podman exec ${name}: no exit code\n` };
  }

  shellCommand(name: string): readonly string[] {
    return ['podman', '--url', this.service.url, 'exec', '-it', ...Object.entries(PROBE_ENV).flatMap(([k, v]) => ['--env', `${k}=${v}`]), name, '/bin/sh', '-l'];
  }
}

async function testcontainers(): Promise<Testcontainers> {
  const mod = (await import('testcontainers')) as Testcontainers & { default?: Testcontainers };
  return typeof mod.GenericContainer === 'function' ? mod : (mod.default ?? mod);
}

/** The overlay folders of a container's layer, from `inspect` (dockerode's type predates them). */
function layerDirs(info: Dockerode.ContainerInspectInfo): { upper?: string; work?: string; merged?: string } {
  const data = (info.GraphDriver.Data ?? {}) as Record<string, unknown>;
  const str = (k: string): string | undefined => (typeof data[k] === 'string' && data[k] ? (data[k] as string) : undefined);
  const out: { upper?: string; work?: string; merged?: string } = {};
  const [upper, work, merged] = [str('UpperDir'), str('WorkDir'), str('MergedDir')];
  if (upper) out.upper = upper;
  if (work) out.work = work;
  if (merged) out.merged = merged;
  return out;
}

async function consoleTail(spec: ProbeSpec): Promise<string> {
  const log = await readFile(spec.consoleLog, 'utf8').catch(() => '');
  return log.trim().split('\n').slice(-3).join(' / ') || 'no console output';
}
