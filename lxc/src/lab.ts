import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AGENT_CREDENTIALS, AGENT_HOME, AGENT_LOG, PROBE_ROUTES, type ProbeInit } from '../../images/src/lab/probe-image.js';
import type { VmBootloader } from '../../images/src/vm/data-tree.js';
import type { ProbeBackend, ProbeRunState } from './backend.js';
import { LabError } from './errors.js';
import { ensureGolden, ensureSamples, copyLayer, makeBase, type Samples } from './golden.js';
import { ensureAgentTree } from './agent-package.js';
import { recordImages } from './lab-prune.js';
import { isRoot, run } from './host.js';
import { builtinLine, type LineSpec } from './lab-config.js';
import { labPaths, readLabState, withLock, writeLabState, type LabLine, type LabPaths, type LabProbe, type LabState } from './lab-state.js';
import { LabServerClient, readToken, serverRunning, startLabServer, stopLabServer, type ServerProbe } from './lab-server.js';
import { backendUnsupported, createBackend, type BackendKind } from './backends.js';
import { bridgeExists, bridgeName, createBridge, deleteBridge, ipForward, localAddresses, MAX_PROBES, probeIp, setLink, setRate, vethName, type LabNet } from './network.js';

/**
 * A lab: virtual probes on one bridge, joined to one fleet server (docs/lab.md). The state file
 * (`lab.json`) is written before anything is started, so `down` can always find what to remove.
 */
export const REPO_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const SONDE_JS_HOST = join(REPO_DIR, 'dist', 'cli', 'src', 'sonde.js');

export interface UpOptions {
  readonly count: number;
  /** A built-in line, or the vendor's own from a lab file (lab-config.ts). */
  readonly line: LabLine | LineSpec;
  /** PID 1 of the new probes: busybox init (default) or systemd, whose app runs as units. */
  readonly init?: ProbeInit;
  /** QEMU probes: what boots them, GRUB (default) or Debian's U-Boot ROM (docs/slots.md). */
  readonly bootloader?: VmBootloader;
  /** Join this server instead of starting the lab's own. */
  readonly server?: { readonly url: string; readonly token: string };
  readonly timeoutMs?: number;
  readonly log?: (line: string) => void;
}

export interface ProbeView extends LabProbe {
  readonly container: ProbeRunState;
  readonly server: ServerProbe | null;
}

const quiet = (): void => undefined;

export class Lab {
  readonly paths: LabPaths;
  readonly backend: ProbeBackend;

  constructor(
    readonly name: string,
    opts: { home?: string; backend?: BackendKind } = {},
  ) {
    this.paths = labPaths(name, opts.home);
    this.backend = createBackend(opts.backend ?? 'lxc', this.paths);
  }

  /**
   * Opens a lab with the engine it was made with (its lab.json says which); a new lab gets
   * `backend`, else SONDE_LAB_BACKEND, else LXC.
   */
  static async open(name: string, opts: { home?: string; backend?: BackendKind } = {}): Promise<Lab> {
    const state = await readLabState(labPaths(name, opts.home));
    const env = process.env['SONDE_LAB_BACKEND'];
    const wanted = opts.backend ?? (env === 'podman' || env === 'lxc' ? env : undefined);
    if (state && wanted && state.backend !== wanted) throw new LabError('LAB_BUSY', `lab ${name} runs on ${state.backend}, not ${wanted}: sonde lab down --all --lab ${name} first`);
    return new Lab(name, { ...(opts.home ? { home: opts.home } : {}), backend: state?.backend ?? wanted ?? 'lxc' });
  }

  /** Why this machine cannot run probes on the lab's engine, or null. */
  unsupported(): string | null {
    if (!isRoot()) return 'the lab needs root (containers, a bridge)';
    return backendUnsupported(this.backend.kind);
  }

  async state(): Promise<LabState | null> {
    return readLabState(this.paths);
  }

  private probeDir(name: string): string {
    return join(this.paths.probes, name);
  }

  /** The probe's writable layer: its files as the probe sees them at /. */
  upperOf(name: string): string {
    return join(this.probeDir(name), 'delta');
  }

  async client(state?: LabState | null): Promise<LabServerClient | null> {
    const s = state ?? (await this.state());
    if (!s?.server) return null;
    const token = await readToken(this.paths);
    return token ? new LabServerClient(s.server.url, token) : null;
  }

  async up(o: UpOptions): Promise<LabProbe[]> {
    const why = this.unsupported();
    if (why) throw new LabError('LAB_UNSUPPORTED', why);
    if (o.init === 'systemd') {
      if (this.backend.kind !== 'lxc') throw new LabError('LAB_UNSUPPORTED', `probes with systemd as PID 1 run on the lxc backend; this lab runs on ${this.backend.kind}`);
      if (!existsSync('/lib/systemd/systemd')) throw new LabError('LAB_UNSUPPORTED', 'systemd probes boot the host\'s /lib/systemd/systemd, which is missing (apt-get install systemd)');
    }
    if (o.bootloader === 'uboot') {
      if (this.backend.kind !== 'qemu') throw new LabError('LAB_UNSUPPORTED', `--bootloader is for QEMU probes (--vm); this lab runs on ${this.backend.kind}`);
      const { UBOOT_ROM } = await import('../../images/src/vm/uboot.js');
      if (!existsSync(UBOOT_ROM)) throw new LabError('LAB_UNSUPPORTED', `U-Boot probes boot ${UBOOT_ROM}, which is missing (apt-get install u-boot-qemu)`);
    }
    if (!Number.isInteger(o.count) || o.count < 1 || o.count > MAX_PROBES) throw new LabError('LAB_PROBE_FAILED', `--count must be 1..${MAX_PROBES}`);
    const log = o.log ?? quiet;
    await mkdir(this.paths.dir, { recursive: true, mode: 0o700 });
    const made = await withLock(this.paths.lock, `lab ${this.name}`, async () => {
      const state = await this.ensureNetwork();
      if (state.probes.length + o.count > MAX_PROBES) throw new LabError('LAB_PROBE_FAILED', `a lab holds at most ${MAX_PROBES} probes (${state.probes.length} exist)`);
      const samples = await ensureSamples(this.paths.images, log);
      recordImages(state, this.paths.images, [samples.dir]); // what `lab prune` keeps (lab-prune.ts)
      const client = await this.ensureServer(state, samples, o, log);
      const init = o.init ?? 'busybox';
      const line = typeof o.line === 'string' ? builtinLine(o.line, init, samples) : o.line;
      // The lab's own server verifies what staff upload: it trusts the vendor's root of the line too.
      if (line.keyring !== samples.rootCert && state.server?.own) {
        await run(process.execPath, [SONDE_JS_HOST, 'server', 'trust', 'add', line.keyring, '--data', this.paths.serverData], { code: 'LAB_SERVER_FAILED' });
      }
      if (this.backend.kind === 'qemu') return this.createVms(state, samples, client, line, o.count, o.bootloader ?? 'grub', log);
      const base = await makeBase(join(this.paths.dir, init === 'systemd' ? 'base-systemd' : 'base'), init);
      const agentTree = await ensureAgentTree(REPO_DIR, this.paths.images, log);
      const golden = await ensureGolden(line, {
        backend: this.backend,
        init,
        repoDir: REPO_DIR,
        agentTree,
        imagesDir: this.paths.images,
        base,
        bridge: state.net.bridge,
        builderIp: `10.213.${state.net.octet}.253`,
        builderVeth: vethName(this.paths.dir, 999),
        scratch: this.paths.dir,
        log,
      });
      const used = new Set(state.probes.map((p) => p.index));
      const fresh: LabProbe[] = [];
      for (let index = 1; fresh.length < o.count; index++) {
        if (used.has(index)) continue;
        const name = `${this.name}-${String(index).padStart(2, '0')}`;
        fresh.push({ name, index, ip: probeIp(state.net, index), veth: vethName(this.paths.dir, index), line: line.name, version: line.version, createdAt: new Date().toISOString(), ...(init === 'systemd' ? { init } : {}) });
      }
      // Recorded before anything exists, so that `down` finds a probe whose creation failed.
      state.probes.push(...fresh);
      recordImages(state, this.paths.images, [agentTree, golden]);
      await writeLabState(this.paths, state);
      log(`creating ${fresh.length} probe(s) on ${line.name} (${line.version}): ${fresh.map((p) => p.name).join(', ')}`);
      let routes: string[] | null = null;
      await pool(fresh, 8, async (p) => {
        const creds = await client.enroll(p.name, state.server?.probeUrl);
        // A server of the user's: its URLs must be an address of this machine; the probes get a
        // host route to it through the bridge (never a default route).
        routes ??= state.server?.own ? [] : await routesToServer(creds, state.net);
        if (line.channel) await client.setChannel(p.name, line.channel);
        await this.createProbe(p, base, golden, agentTree, creds, routes);
      });
      await pool(fresh, 8, (p) => this.backend.start(p.name));
      return fresh;
    });
    log('waiting for every probe to report healthy to the fleet server');
    // A QEMU probe boots under TCG, installs its line's image and reboots into it first (minutes).
    await this.waitHealthy(made.map((p) => ({ name: p.name, version: p.version })), Math.max(o.timeoutMs ?? 120_000, this.backend.kind === 'qemu' ? 900_000 : 0));
    return made;
  }

  /** `up --vm`: QEMU probes with their own disks on the lab bridge (lxc/src/vm/vm-lab.ts). */
  private async createVms(state: LabState, samples: Samples, client: LabServerClient, line: { name: string; version: string; channel?: string | null }, count: number, bootloader: VmBootloader, log: (l: string) => void): Promise<LabProbe[]> {
    if (!state.server?.own) throw new LabError('LAB_UNSUPPORTED', 'QEMU probes join the lab\'s own fleet server (no --server)');
    const { ensureVmImages } = await import('./vm/vm-probe.js');
    const { makeVmProbeDisk, vmPackFor } = await import('./vm/vm-lab.js');
    const { UBOOT_ROM } = await import('../../images/src/vm/uboot.js');
    vmPackFor(line.version);
    const images = await ensureVmImages(REPO_DIR, this.paths.images, log, { keysDir: dirname(samples.rootCert) });
    const used = new Set(state.probes.map((p) => p.index));
    const fresh: LabProbe[] = [];
    for (let index = 1; fresh.length < count; index++) {
      if (!used.has(index)) fresh.push({ name: `${this.name}-${String(index).padStart(2, '0')}`, index, ip: probeIp(state.net, index), veth: vethName(this.paths.dir, index), line: line.name, version: line.version, createdAt: new Date().toISOString(), ...(bootloader === 'uboot' ? { bootloader } : {}) });
    }
    state.probes.push(...fresh);
    recordImages(state, this.paths.images, [images.dir]);
    await writeLabState(this.paths, state);
    log(`creating ${fresh.length} QEMU probe(s) on ${line.name} (${line.version}), booting through ${bootloader === 'uboot' ? 'U-Boot' : 'GRUB'}: ${fresh.map((p) => p.name).join(', ')}`);
    for (const p of fresh) {
      const creds = await client.enroll(p.name, state.server.probeUrl);
      if (line.channel) await client.setChannel(p.name, line.channel);
      const dir = this.probeDir(p.name);
      await makeVmProbeDisk({ dir, images, creds, address: `${p.ip}/24`, version: line.version, bootloader });
      await this.backend.create({ name: p.name, lower: '', upper: dir, ip: p.ip, bridge: state.net.bridge, veth: p.veth, mounts: [], consoleLog: join(dir, 'console.log'), ...(bootloader === 'uboot' ? { bios: UBOOT_ROM } : {}) });
      await this.backend.start(p.name);
    }
    return fresh;
  }

  private async ensureNetwork(): Promise<LabState> {
    const existing = await this.state();
    if (existing && (await bridgeExists(existing.net.bridge))) return existing;
    // One lab at a time picks a network, so two labs never take the same one.
    await mkdir(this.paths.home, { recursive: true, mode: 0o700 });
    const net = await withLock(join(this.paths.home, 'net.lock'), 'the lab networks', async () => {
      const taken = new Set<number>();
      return createBridge(this.paths.dir, taken);
    });
    const state: LabState = existing ? { ...existing, net } : { format: 'sonde-lab-1', name: this.name, backend: this.backend.kind, net, server: null, probes: [] };
    await writeLabState(this.paths, state);
    return state;
  }

  private async ensureServer(state: LabState, samples: Samples, o: UpOptions, log: (l: string) => void): Promise<LabServerClient> {
    if (o.server) {
      state.server = { own: false, url: o.server.url.replace(/\/+$/, '') };
      await writeFile(this.paths.tokenFile, `${o.server.token}\n`, { mode: 0o600 });
      await chmod(this.paths.tokenFile, 0o600);
      await writeLabState(this.paths, state);
      return new LabServerClient(state.server.url, o.server.token);
    }
    if (state.server && (!state.server.own || serverRunning(state.server))) {
      const c = await this.client(state);
      if (c) return c;
    }
    log(`starting the lab's fleet server on ${state.net.hostIp} (embedded broker)`);
    const { ref, token } = await startLabServer(this.paths, { sondeJs: SONDE_JS_HOST, keyring: samples.rootCert, bridgeIp: state.net.hostIp });
    state.server = ref;
    await writeLabState(this.paths, state);
    log(`fleet server ${ref.url} (probes use ${ref.probeUrl})`);
    return new LabServerClient(ref.url, token);
  }

  private async createProbe(p: LabProbe, base: string, golden: string, agentTree: string, creds: string, routes: readonly string[]): Promise<void> {
    const dir = this.probeDir(p.name);
    const upper = this.upperOf(p.name);
    await rm(dir, { recursive: true, force: true });
    await mkdir(upper, { recursive: true });
    await copyLayer(golden, upper);
    await writeFile(join(upper, 'etc', 'hostname'), `${p.name}\n`);
    await mkdir(join(upper, dirname(AGENT_CREDENTIALS).slice(1)), { recursive: true });
    await writeFile(join(upper, AGENT_CREDENTIALS.slice(1)), creds, { mode: 0o600 });
    await chmod(join(upper, AGENT_CREDENTIALS.slice(1)), 0o600);
    if (routes.length) await writeFile(join(upper, PROBE_ROUTES.slice(1)), `${routes.join('\n')}\n`);
    await this.backend.create({
      name: p.name,
      lower: base,
      upper,
      ip: p.ip,
      bridge: bridgeName(this.paths.dir),
      veth: p.veth,
      mounts: [{ host: agentTree, target: AGENT_HOME, readOnly: true }],
      consoleLog: join(dir, 'console.log'),
      init: p.init ?? 'busybox',
    });
  }

  /** Waits until the fleet server reports each probe online, healthy, at its version. */
  async waitHealthy(want: readonly { name: string; version: string }[], timeoutMs: number): Promise<Map<string, ServerProbe>> {
    const client = await this.client();
    if (!client) throw new LabError('LAB_SERVER_FAILED', `lab ${this.name} has no fleet server`);
    return client.waitHealthy(want, timeoutMs, 'see sonde lab logs NAME');
  }

  async list(): Promise<{ state: LabState | null; probes: ProbeView[] }> {
    const state = await this.state();
    if (!state) return { state: null, probes: [] };
    let server = new Map<string, ServerProbe>();
    try {
      server = (await (await this.client(state))?.probes()) ?? server;
    } catch {
      // a stopped server: the lab's own view only
    }
    const probes = await Promise.all(state.probes.map(async (p) => ({ ...p, container: await this.backend.state(p.name), server: server.get(p.name) ?? null })));
    return { state, probes };
  }

  probe(state: LabState, name: string): LabProbe {
    const p = state.probes.find((x) => x.name === name);
    if (!p) throw new LabError('LAB_PROBE_NOT_FOUND', `lab ${this.name} has no probe ${name} (sonde lab ls)`);
    return p;
  }

  async requireProbe(name: string): Promise<LabProbe> {
    const state = await this.state();
    if (!state) throw new LabError('LAB_PROBE_NOT_FOUND', `there is no lab ${this.name} (sonde lab up)`);
    return this.probe(state, name);
  }

  /** Removes one probe, or with `all` every probe, the bridge, the lab's server and its folder. */
  async down(target: { all: true } | { name: string }): Promise<string[]> {
    if (!(await this.state().catch(() => null)) && 'all' in target) {
      await rm(this.paths.dir, { recursive: true, force: true });
      return [];
    }
    return withLock(this.paths.lock, `lab ${this.name}`, async () => {
      const state = await this.state();
      if (!state) return [];
      const gone = 'all' in target ? state.probes : [this.probe(state, target.name)];
      // With --all, also what the engine holds that lab.json does not list: a layer builder that
      // an interrupted `up` left behind.
      const names = new Set(gone.map((p) => p.name));
      if ('all' in target) for (const n of await this.backend.known()) names.add(n);
      await pool([...names], 8, async (name) => {
        await this.backend.destroy(name);
        await rm(this.probeDir(name), { recursive: true, force: true });
      });
      if ('all' in target) {
        await stopLabServer(state.server);
        await deleteBridge(state.net.bridge);
        // The lock file lives in the folder: remove everything else, the lock goes on release.
        for (const entry of await import('node:fs/promises').then((f) => f.readdir(this.paths.dir))) {
          if (join(this.paths.dir, entry) !== this.paths.lock) await rm(join(this.paths.dir, entry), { recursive: true, force: true });
        }
      } else {
        state.probes = state.probes.filter((p) => p.name !== target.name);
        await writeLabState(this.paths, state);
      }
      return gone.map((p) => p.name);
    }).then(async (names) => {
      if ('all' in target) await rm(this.paths.dir, { recursive: true, force: true });
      return names;
    });
  }

  // ----- a probe's life, for support staff and the end-to-end tests -----

  async exec(name: string, argv: readonly string[], input?: string) {
    await this.requireProbe(name);
    return this.backend.exec(name, argv, input === undefined ? {} : { input });
  }

  async stopProbe(name: string, kill: boolean): Promise<void> {
    await this.requireProbe(name);
    await this.backend.stop(name, { kill });
  }

  async startProbe(name: string): Promise<void> {
    await this.requireProbe(name);
    await this.backend.start(name);
  }

  /** Pulls (false) or plugs back (true) the probe's network cable. */
  async link(name: string, up: boolean): Promise<void> {
    const p = await this.requireProbe(name);
    await setLink(p.veth, up);
  }

  /** Limits the probe's downlink to `mbit` Mbit/s (null: no limit). */
  async throttle(name: string, mbit: number | null): Promise<void> {
    const p = await this.requireProbe(name);
    await setRate(p.veth, mbit);
  }

  async agentLog(name: string): Promise<string> {
    await this.requireProbe(name);
    // A QEMU probe's agent logs to its serial console, which is the probe's console log.
    if (this.backend.kind === 'qemu') return readFile(join(this.probeDir(name), 'console.log'), 'utf8').catch(() => '');
    return readFile(join(this.upperOf(name), AGENT_LOG.slice(1)), 'utf8').catch(() => '');
  }

  forwarding(): string {
    return ipForward();
  }
}

/** Runs `fn` over `items`, at most `n` at a time. */
export async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const item = items[next++]!;
        try {
          await fn(item);
        } catch (e) {
          errors.push(e);
        }
      }
    }),
  );
  if (errors.length) throw errors[0];
}

/**
 * The host routes a probe needs to reach a server the user named: none when its URLs are on the
 * lab bridge, `<addr> via <bridge host address>` when they are another address of this machine
 * (delivered locally: nothing is forwarded). Loopback and addresses elsewhere are refused.
 */
async function routesToServer(credsText: string, net: LabNet): Promise<string[]> {
  const creds = JSON.parse(credsText) as { server: { http: string; mqtt: string } };
  const hosts = new Set([new URL(creds.server.http).hostname, new URL(creds.server.mqtt).hostname].map((h) => h.replace(/^\[|\]$/g, '')));
  const local = await localAddresses();
  const routes: string[] = [];
  for (const h of hosts) {
    if (h.startsWith(`10.213.${net.octet}.`)) continue;
    if (h === 'localhost' || h.startsWith('127.') || h === '::1') {
      throw new LabError('LAB_SERVER_FAILED', `the server gives probes ${h}, which a probe cannot reach: start it with --listen ${net.hostIp} (the lab bridge) or another address of this machine`);
    }
    if (!local.has(h)) throw new LabError('LAB_NETWORK_FAILED', `the server gives probes ${h}, which is not an address of this machine: lab probes reach nothing beyond it`);
    routes.push(`${h} via ${net.hostIp}`);
  }
  return routes;
}
