import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink, rm, rmdir } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { PassThrough } from 'node:stream';
import type Dockerode from 'dockerode';
import type { ContainerRuntimeClient } from 'testcontainers';
import { writeFileAtomic } from '../../agent/src/fs/atomic.js';
import { PROBE_ENV, type ExecResult, type ProbeBackend, type ProbeRunState, type ProbeSpec } from './backend.js';
import { LabError } from './errors.js';
import { run, tryRun, which } from './host.js';
import { ipForward } from './network.js';
import { PodmanService, mountPoints } from './podman-service.js';
import { checkForwarding, netnsPath, plugProbe, unplugProbe } from './probe-netns.js';

/**
 * Probes as podman containers, driven through testcontainers against the lab's own podman service
 * (podman-service.ts), behind the same interface as LXC:
 *
 * - Root file system: the backend mounts, on the host, an overlay of the probe's `upper` on the
 *   shared `lower` (workdir `olwork` beside the upper, as LXC does) and bind-mounts it at `/` of
 *   the container. Podman accepts `/` as a bind destination and runc mounts it first, so /proc,
 *   /dev, /sys, the read-only /usr, the tmpfs /tmp and /run and the spec's mounts land on top of
 *   it: every write in the probe goes to its upper, as with LXC. The overlay is mounted at start
 *   and unmounted at stop, so a stopped probe's upper is a plain folder again.
 * - The image only satisfies the engine (the bind hides it): the base layer imported once per lab
 *   engine, tagged by a hash of its content.
 * - PID 1 is busybox init, so the base's inittab starts the agent and vsftpd.
 * - Network: a netns per probe with the veth on the lab bridge (probe-netns.ts), joined with
 *   network mode `ns:/run/netns/NAME`.
 * - `stop({kill: true})` is SIGKILL to the container's init, which takes its whole pid namespace
 *   (exec'd commands included) with it; `start` reuses the container and finds the same upper.
 */
const IMAGE_REPO = 'localhost/sonde-probe-base';
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
    for (const tool of ['ip', 'mount', 'umount', 'tar']) if (!which(tool)) return `${tool} is not installed`;
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

  // ----- where things are -----

  private recordPath(name: string): string {
    return join(this.dir, 'probes', `${name}.json`);
  }

  private rootfs(name: string): string {
    return join(this.dir, 'rootfs', name);
  }

  private static workdir(spec: ProbeSpec): string {
    return join(dirname(spec.upper), 'olwork');
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
      // testcontainers finds its engine in the environment, once per process; its Ryuk reaper
      // image cannot be pulled here, and the lab cleans up after itself anyway.
      process.env['DOCKER_HOST'] = this.service.url;
      process.env['TESTCONTAINERS_RYUK_DISABLED'] = 'true';
      const tc = await testcontainers();
      const client = await tc.getContainerRuntimeClient();
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

  /** Waits until the container is (or is no longer) running. */
  private async waitRunning(name: string, running: boolean, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const info = await this.inspect(name);
      if ((info?.State.Running ?? false) === running) return true;
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** The base layer as an image, imported once per lab engine and tagged by its content. */
  private image(lower: string): Promise<string> {
    let p = this.images.get(lower);
    if (!p) {
      p = (async () => {
        const ref = `${IMAGE_REPO}:${await contentHash(lower)}`;
        const client = await this.client();
        const docker = client.container.dockerode;
        try {
          await docker.getImage(ref).inspect();
          return ref;
        } catch {
          // not imported yet
        }
        const tar = spawn('tar', ['-C', lower, '--numeric-owner', '-cf', '-', '.'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let tarErr = '';
        tar.stderr.on('data', (d: Buffer) => (tarErr += d.toString()));
        // podman's compat import takes the tag inside `repo` (a separate `tag` is ignored).
        const out = await docker.importImage(tar.stdout, { repo: ref });
        await new Promise<void>((resolve, reject) => docker.modem.followProgress(out, (err: Error | null) => (err ? reject(err) : resolve())));
        await docker.getImage(ref).inspect().catch((e: Error) => {
          throw new LabError('LAB_PROBE_FAILED', `importing ${lower} as ${ref}: ${e.message}${tarErr ? ` (tar: ${tarErr.trim()})` : ''}`, { cause: e });
        });
        return ref;
      })();
      p.catch(() => this.images.delete(lower));
      this.images.set(lower, p);
    }
    return p;
  }

  // ----- the root file system -----

  private async mountRootfs(spec: ProbeSpec): Promise<string> {
    const merged = this.rootfs(spec.name);
    if ((await mountPoints()).includes(merged)) return merged;
    const work = PodmanBackend.workdir(spec);
    for (const p of [spec.lower, spec.upper, work]) {
      if (/[,:\\]/.test(p)) throw new LabError('LAB_PROBE_FAILED', `${p}: overlayfs cannot take a path with , : or \\`);
    }
    await mkdir(merged, { recursive: true });
    await mkdir(work, { recursive: true });
    await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${spec.lower},upperdir=${spec.upper},workdir=${work}`, merged], { code: 'LAB_PROBE_FAILED' });
    return merged;
  }

  private async unmountRootfs(name: string): Promise<void> {
    const merged = this.rootfs(name);
    if (!(await mountPoints()).includes(merged)) return;
    if (!(await tryRun('umount', [merged]))) await run('umount', ['-l', merged], { code: 'LAB_PROBE_FAILED' });
  }

  // ----- the interface -----

  async create(spec: ProbeSpec): Promise<void> {
    await mkdir(join(this.dir, 'probes'), { recursive: true, mode: 0o700 });
    try {
      const image = await this.image(spec.lower);
      // A new definition replaces an old container of that name, as a new LXC config would.
      if (await this.inspect(spec.name)) await this.removeContainer(spec.name);
      await writeFileAtomic(this.recordPath(spec.name), `${JSON.stringify({ spec, image } satisfies ProbeRecord, null, 2)}\n`);
    } catch (e) {
      // Nothing was defined, so no `destroy` will come to stop the engine this started.
      await this.releaseIfIdle().catch(() => undefined);
      throw e;
    }
  }

  async start(name: string): Promise<void> {
    const rec = await this.readRecord(name);
    if (!rec) throw new LabError('LAB_PROBE_FAILED', `podman: probe ${name} has no definition`);
    const { spec } = rec;
    const client = await this.client();
    const existing = await this.inspect(name);
    if (existing?.State.Running) return;
    const before = ipForward();
    try {
      const root = await this.mountRootfs(spec);
      await plugProbe(spec);
      if (existing) await client.container.start(client.container.getById(name));
      else await this.run(rec, root);
      if (!(await this.waitRunning(name, true, TRANSITION_TIMEOUT_MS))) throw new Error(`container ${name} is not running after start: ${await this.lastLines(name)}`);
    } catch (e) {
      await this.halt(name, 'SIGKILL').catch(() => undefined);
      await unplugProbe(spec.veth);
      await this.unmountRootfs(name).catch(() => undefined);
      if (e instanceof LabError) throw e;
      throw new LabError('LAB_PROBE_FAILED', `podman: starting ${name}: ${(e as Error).message}`, { cause: e });
    }
    checkForwarding(before, `probe ${name} was started`);
  }

  /** The container, made by testcontainers on the probe's first start. */
  private async run(rec: ProbeRecord, root: string): Promise<void> {
    const { spec } = rec;
    const tc = await testcontainers();
    /** testcontainers has no setter for the log driver; the console goes to the spec's file, as LXC's console log does. */
    class ProbeContainer extends tc.GenericContainer {
      withConsoleLog(path: string): this {
        this.hostConfig.LogConfig = { Type: 'k8s-file', Config: { path } };
        return this;
      }
    }
    const probe = new ProbeContainer(rec.image)
      .withName(spec.name)
      .withHostname(spec.name)
      .withEntrypoint(['/bin/busybox', 'init'])
      .withEnvironment({ ...PROBE_ENV })
      .withBindMounts([
        { source: root, target: '/', mode: 'rw' },
        // The probe's own files, bound over themselves, so that podman does not mount its
        // generated ones there (LXC leaves these files alone too).
        ...['/etc/hostname', '/etc/resolv.conf'].filter((f) => existsSync(join(root, f))).map((f) => ({ source: join(root, f), target: f, mode: 'rw' as const })),
        { source: '/usr', target: '/usr', mode: 'ro' },
        ...spec.mounts.map((m) => ({ source: m.host, target: m.target, mode: m.readOnly ? ('ro' as const) : ('rw' as const) })),
      ])
      .withTmpFs({ '/tmp': 'rw,nosuid,nodev,size=256m,mode=1777', '/run': 'rw,nosuid,nodev,size=16m,mode=755' })
      .withNetworkMode(`ns:${netnsPath(spec.veth)}`)
      // LXC probes keep CAP_NET_RAW (busybox ping) and CAP_AUDIT_WRITE; podman drops them.
      .withAddedCapabilities('NET_RAW', 'AUDIT_WRITE')
      .withResourcesQuota({ memory: 0.75 })
      .withLabels({ 'sonde.lab.probe': spec.name })
      .withAutoCleanup(false)
      .withConsoleLog(spec.consoleLog);
    await probe.start();
  }

  async stop(name: string, opts: { kill: boolean }): Promise<void> {
    const rec = await this.readRecord(name);
    const info = await this.inspect(name);
    if (info?.State.Running) {
      // busybox init halts on SIGUSR1 (its ::shutdown actions run); SIGKILL is the power cut.
      if (opts.kill || !(await this.halt(name, 'SIGUSR1', HALT_TIMEOUT_MS))) await this.halt(name, 'SIGKILL');
    }
    if (info) await this.service.killExecLeftovers(info.Id);
    if (rec) await unplugProbe(rec.spec.veth);
    await this.unmountRootfs(name);
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
    return this.waitRunning(name, false, timeoutMs);
  }

  private async removeContainer(name: string): Promise<void> {
    const info = await this.inspect(name);
    if (!info) return;
    const client = await this.client();
    if (info.State.Running) await this.halt(name, 'SIGKILL');
    try {
      await client.container.getById(name).remove({ force: true, v: true });
    } catch (e) {
      if ((e as { statusCode?: number }).statusCode !== 404) throw new LabError('LAB_PROBE_FAILED', `podman rm ${name}: ${(e as Error).message}`, { cause: e });
    }
    await this.service.killExecLeftovers(info.Id);
  }

  async destroy(name: string): Promise<void> {
    const rec = await this.readRecord(name);
    if (rec || (await this.service.running())) await this.removeContainer(name);
    if (rec) {
      await unplugProbe(rec.spec.veth);
      await this.unmountRootfs(name);
      await rm(PodmanBackend.workdir(rec.spec), { recursive: true, force: true });
    }
    await rmdir(this.rootfs(name)).catch(() => undefined);
    await rm(this.recordPath(name), { force: true });
    await this.releaseIfIdle();
  }

  /** Stops the lab's engine once it holds no container and no probe is defined. */
  private async releaseIfIdle(): Promise<void> {
    if (!(await this.service.running())) return;
    // Taken before the engine's lock: client() may need that lock to start the service.
    const client = await this.client();
    const stopped = await this.service.stopIf(async () => {
      const defined = await readdir(join(this.dir, 'probes')).catch(() => [] as string[]);
      if (defined.some((f) => f.endsWith('.json'))) return false;
      return (await client.container.dockerode.listContainers({ all: true })).length === 0;
    });
    if (stopped) this.ready = null;
  }

  async state(name: string): Promise<ProbeRunState> {
    if (!(await this.readRecord(name))) return 'missing';
    return (await this.inspect(name))?.State.Running ? 'running' : 'stopped';
  }

  async exec(name: string, argv: readonly string[], opts: { input?: string; env?: Readonly<Record<string, string>>; timeoutMs?: number } = {}): Promise<ExecResult> {
    const client = await this.client();
    const env = { ...PROBE_ENV, ...(opts.env ?? {}) };
    const withInput = opts.input !== undefined;
    let exec: Dockerode.Exec;
    let stream: NodeJS.ReadWriteStream;
    try {
      exec = await client.container.getById(name).exec({
        Cmd: [...argv],
        Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
        WorkingDir: '/',
        AttachStdin: withInput,
        AttachStdout: true,
        AttachStderr: true,
        Tty: false,
      });
      stream = (await exec.start({ hijack: true, stdin: withInput })) as NodeJS.ReadWriteStream;
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
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), opts.timeoutMs ?? 120_000))),
    ]);
    clearTimeout(timer);
    if (!finished) {
      // The command runs in the probe's pid namespace; its host pid is in the exec session.
      const pid = (await exec.inspect().catch(() => null))?.Pid;
      if (pid) await tryRun('kill', ['-KILL', String(pid)]);
      (stream as unknown as { destroy(): void }).destroy();
      return { code: 124, stdout: Buffer.concat(out).toString(), stderr: `${Buffer.concat(err).toString()}podman exec ${name}: timed out after ${opts.timeoutMs ?? 120_000} ms\n` };
    }
    let code: number | null = null;
    for (let i = 0; i < 100 && code === null; i++) {
      const info = await exec.inspect().catch(() => null);
      if (!info) break;
      if (!info.Running) code = info.ExitCode ?? 1;
      else await new Promise((r) => setTimeout(r, 20));
    }
    return { code: code ?? 1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
  }

  shellCommand(name: string): readonly string[] {
    return ['podman', '--url', this.service.url, 'exec', '-it', ...Object.entries(PROBE_ENV).flatMap(([k, v]) => ['--env', `${k}=${v}`]), name, '/bin/sh', '-l'];
  }

  private async lastLines(name: string): Promise<string> {
    const rec = await this.readRecord(name);
    const log = rec ? await readFile(rec.spec.consoleLog, 'utf8').catch(() => '') : '';
    return log.trim().split('\n').slice(-3).join(' / ') || 'no console output';
  }
}

async function testcontainers(): Promise<Testcontainers> {
  const mod = (await import('testcontainers')) as Testcontainers & { default?: Testcontainers };
  return typeof mod.GenericContainer === 'function' ? mod : (mod.default ?? mod);
}

/** A hash of a folder's content (names, types, modes, owners, bytes, link targets), not its times. */
export async function contentHash(dir: string): Promise<string> {
  const hash = createHash('sha256');
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const name of (await readdir(d)).sort()) {
      const p = join(d, name);
      const s = await lstat(p);
      hash.update(`${rel}/${name}\0${s.mode}\0${s.uid}\0${s.gid}\0`);
      if (s.isSymbolicLink()) hash.update(`->${await readlink(p)}\n`);
      else if (s.isDirectory()) await walk(p, `${rel}/${name}`);
      else if (s.isFile()) hash.update(await readFile(p)).update('\n');
      else hash.update(`dev ${s.rdev}\n`);
    }
  };
  await walk(dir, '');
  return hash.digest('hex').slice(0, 16);
}
