import { execFile } from 'node:child_process';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PROBE_ENV, type ExecResult, type ProbeBackend, type ProbeRunState, type ProbeSpec } from './backend.js';
import { LabError } from './errors.js';
import { run, tryRun, which } from './host.js';

/**
 * Probes as LXC system containers (notes/machine-facts.md §1c): an overlay of the probe's own
 * layer on the shared base, the host's /usr read-only, busybox init as PID 1, a veth on the lab
 * bridge with a static address and no default route, tmpfs /tmp and /run, and cgroup limits. Each
 * lab has its own lxcpath, so parallel labs never see each other's containers.
 */
export class LxcBackend implements ProbeBackend {
  readonly kind = 'lxc' as const;

  constructor(private readonly lxcPath: string) {}

  static available(): string | null {
    for (const tool of ['lxc-start', 'lxc-stop', 'lxc-attach', 'lxc-info', 'lxc-destroy']) {
      if (!which(tool)) return `${tool} is not installed (apt-get install lxc)`;
    }
    if (!which('busybox')) return 'busybox is not installed (apt-get install busybox-static)';
    return null;
  }

  private configOf(spec: ProbeSpec): string {
    const systemd = spec.init === 'systemd';
    const lines = [
      `# Sonde lab probe ${spec.name} (lxc/src/lxc-backend.ts)`,
      `lxc.uts.name = ${spec.name}`,
      `lxc.rootfs.path = overlay:${spec.lower}:${spec.upper}`,
      // systemd 252 boots in such a container in about half a second (machine-facts.md §1b); it
      // mounts its own /run and needs a writable /sys/fs/cgroup for its units.
      ...(systemd
        ? ['lxc.init.cmd = /lib/systemd/systemd', 'lxc.environment = container=lxc', 'lxc.signal.halt = SIGRTMIN+3', 'lxc.signal.reboot = SIGINT']
        : ['lxc.init.cmd = /bin/busybox init', 'lxc.signal.halt = SIGUSR1', 'lxc.signal.reboot = SIGTERM']),
      'lxc.apparmor.profile = unconfined',
      'lxc.autodev = 1',
      'lxc.tty.max = 0',
      'lxc.pty.max = 16',
      'lxc.cap.drop = sys_module mac_admin mac_override sys_time sys_boot',
      `lxc.mount.auto = proc:mixed ${systemd ? 'sys:mixed' : 'sys:ro'} cgroup:mixed`,
      'lxc.mount.entry = /usr usr none ro,bind 0 0',
      ...spec.mounts.map((m) => `lxc.mount.entry = ${m.host} ${m.target.replace(/^\/+/, '')} none ${m.readOnly ? 'ro,' : ''}bind,create=dir 0 0`),
      'lxc.mount.entry = tmpfs tmp tmpfs rw,nosuid,nodev,size=256m 0 0',
      ...(systemd ? [] : ['lxc.mount.entry = tmpfs run tmpfs rw,nosuid,nodev,size=16m 0 0']),
      'lxc.cgroup.memory.limit_in_bytes = 768M',
      'lxc.cgroup.pids.max = 512',
      'lxc.net.0.type = veth',
      `lxc.net.0.link = ${spec.bridge}`,
      'lxc.net.0.flags = up',
      'lxc.net.0.name = eth0',
      `lxc.net.0.veth.pair = ${spec.veth}`,
      `lxc.net.0.ipv4.address = ${spec.ip}/24 ${spec.ip.replace(/\.\d+$/, '.255')}`,
      `lxc.console.logfile = ${spec.consoleLog}`,
      '',
    ];
    return lines.join('\n');
  }

  async create(spec: ProbeSpec): Promise<void> {
    const dir = join(this.lxcPath, spec.name);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'config'), this.configOf(spec));
  }

  private base(name: string): string[] {
    return ['-P', this.lxcPath, '-n', name];
  }

  async start(name: string): Promise<void> {
    await run('lxc-start', [...this.base(name), '-d', '-L', join(this.lxcPath, name, 'start.log')], { code: 'LAB_PROBE_FAILED', timeoutMs: 30_000 }).catch(async (e: LabError) => {
      const log = await import('node:fs/promises').then((f) => f.readFile(join(this.lxcPath, name, 'start.log'), 'utf8')).catch(() => '');
      throw new LabError('LAB_PROBE_FAILED', `${e.message}${log ? ` / ${log.trim().split('\n').slice(-2).join(' / ')}` : ''}`, { cause: e });
    });
    await run('lxc-wait', [...this.base(name), '-s', 'RUNNING', '-t', '10'], { code: 'LAB_PROBE_FAILED' });
  }

  /**
   * Waits until systemd in the probe says it is up (`running` or `degraded`); polled, because
   * `systemctl is-system-running --wait` fails before the probe's bus exists (machine-facts.md).
   */
  async waitBooted(name: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const r = await this.exec(name, ['systemctl', 'is-system-running'], { timeoutMs: 10_000 });
      last = (r.stdout || r.stderr).trim();
      if (last === 'running' || last === 'degraded') return;
      await new Promise((res) => setTimeout(res, 200));
    }
    throw new LabError('LAB_PROBE_FAILED', `systemd in ${name} did not come up within ${timeoutMs} ms (${last})`);
  }

  async stop(name: string, opts: { kill: boolean }): Promise<void> {
    if ((await this.state(name)) !== 'running') return;
    await run('lxc-stop', [...this.base(name), ...(opts.kill ? ['-k'] : ['-t', '10'])], { code: 'LAB_PROBE_FAILED', timeoutMs: 30_000 });
  }

  async destroy(name: string): Promise<void> {
    const st = await this.state(name);
    if (st === 'missing') return;
    if (st === 'running') await tryRun('lxc-stop', [...this.base(name), '-k']);
    // lxc-destroy would delete the rootfs it knows (our upper layer) too: the lab owns that, so
    // only the container's own folder goes.
    await rm(join(this.lxcPath, name), { recursive: true, force: true });
  }

  async known(): Promise<string[]> {
    const entries = await readdir(this.lxcPath, { withFileTypes: true }).catch(() => []);
    return entries.filter((e) => e.isDirectory()).map((e) => e.name);
  }

  async state(name: string): Promise<ProbeRunState> {
    try {
      const { stdout } = await run('lxc-info', [...this.base(name), '-s', '-H'], { timeoutMs: 10_000 });
      return stdout.trim() === 'RUNNING' ? 'running' : 'stopped';
    } catch {
      return 'missing';
    }
  }

  exec(name: string, argv: readonly string[], opts: { input?: string; env?: Readonly<Record<string, string>>; timeoutMs?: number } = {}): Promise<ExecResult> {
    const env = { ...PROBE_ENV, ...(opts.env ?? {}) };
    const args = [...this.base(name), '--clear-env', ...Object.entries(env).flatMap(([k, v]) => ['-v', `${k}=${v}`]), '--', ...argv];
    return new Promise((resolve) => {
      const child = execFile('lxc-attach', args, { timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
        resolve({ code, stdout, stderr });
      });
      child.stdin?.end(opts.input ?? '');
    });
  }

  shellCommand(name: string): readonly string[] {
    return ['lxc-attach', ...this.base(name), '--clear-env', ...Object.entries(PROBE_ENV).flatMap(([k, v]) => ['-v', `${k}=${v}`]), '--', '/bin/sh', '-l'];
  }
}
