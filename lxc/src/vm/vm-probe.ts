import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { readVerifiedManifest } from './pack-facts.js';
import { buildDataTree, writeVmSlotFile, type VmBootloader } from '../../../images/src/vm/data-tree.js';
import { readDiskUbootEnv, UBOOT_ROM } from '../../../images/src/vm/uboot.js';
import { buildDisk, DEFAULT_LAYOUT, partitionsOf, withPartition } from '../../../images/src/vm/disk-image.js';
import { buildRootTree, VM_INBOX, VM_PROBE_ROOT, VM_STATUS_MARK } from '../../../images/src/vm/root-tree.js';
import { buildExt4Image, writeSampleReleaseTree, writeSystemRecipe } from '../../../images/src/system/system-image.js';
import { makeSampleKeys, packSampleRecipe, type SampleKeys } from '../../../images/src/samples/index.js';
import { SAMPLE_MODEL, type SampleReleaseVersion } from '../../../images/src/samples/releases.js';
import { buildOnce, stampUsed, treeFingerprint } from '../../../images/src/lab/probe-image.js';
import { ensureAgentTree } from '../agent-package.js';
import { QemuProbe } from './qemu.js';

const run = promisify(execFile);

/**
 * QEMU probes for the tests, the power-cut harness and the lab (docs/slots.md, docs/lab.md): the
 * images built once per agent build (a factory disk whose slot A holds release 1.0.0, and system
 * packs), and one probe: its own copy of the disk, packs put into its FTP drop while it is off,
 * boots, power cuts, and what its disk says afterwards.
 */
export const VM_APP_PORT = 8080;
export const VM_SITE_VARS = { CollectorPassword: 'vm-site-secret' } as const;
/** The system packs the images carry: good releases, an app failing its health gate, a system whose init fails. */
export type VmPackId = '1.0.0' | '1.1.0' | '1.2.0-bad' | 'broken-init';

export interface VmPack {
  readonly path: string;
  readonly version: string;
  /** The signed sha256 of the image inside, and its size: what a slot holding it must read back. */
  readonly imageSha256: string;
  readonly imageBytes: number;
}

export interface VmImages {
  readonly dir: string;
  readonly keys: SampleKeys;
  /** The factory disk: slot A holds 1.0.0 (not yet committed by any agent), B is empty. */
  readonly disk: string;
  readonly packs: Readonly<Record<VmPackId, VmPack>>;
  /** The factory image of slot A. */
  readonly factory: { readonly imageSha256: string; readonly imageBytes: number };
}

const IMAGE_BYTES = 200 * 1024 * 1024;

async function sha256File(path: string): Promise<string> {
  return createHash('sha256').update(await readFile(path)).digest('hex');
}

/** Builds (once per agent build and image format) the QEMU probe's disk and its system packs. */
export async function ensureVmImages(repoDir: string, imagesDir: string, log: (l: string) => void, opts: { keysDir?: string } = {}): Promise<VmImages> {
  const agentTree = await ensureAgentTree(repoDir, imagesDir, log);
  const hash = createHash('sha256').update(treeFingerprint(agentTree)).update(treeFingerprint(join(repoDir, 'dist', 'images', 'src', 'vm'))).update('vm-images-4');
  // The lab's VM probes trust (and their packs are signed by) the lab's sample keys; others have their own.
  const keysDir = opts.keysDir ?? null;
  if (keysDir) hash.update(await readFile(join(keysDir, 'root.crt')));
  const dir = join(imagesDir, `vm-${hash.digest('hex').slice(0, 16)}`);
  await buildOnce(dir, async (tmp) => {
    const t0 = Date.now();
    log('building the QEMU probe disk and its system packs, once per agent build');
    const keys = (await makeSampleKeys(keysDir ?? join(tmp, 'keys'))).keys;
    const kernel = await newest('/boot', 'vmlinuz-');
    const image = async (name: string, version: SampleReleaseVersion, brokenInit = false): Promise<string> => {
      const tree = join(tmp, `tree-${name}`);
      await buildRootTree(tree, { agentTree, brokenInit });
      await writeSampleReleaseTree(tree, version);
      const out = join(tmp, `${name}.img`);
      await buildExt4Image(tree, out, IMAGE_BYTES);
      await rm(tree, { recursive: true, force: true });
      return out;
    };
    let last = Date.now();
    const pack = async (id: VmPackId, version: SampleReleaseVersion, img: string): Promise<void> => {
      last = Math.max(Date.now(), last + 1);
      await packSampleRecipe(await writeSystemRecipe(join(tmp, `recipe-${id}`), img, version), join(tmp, `system-${id}.spk`), keys, new Date(last));
      await rm(join(tmp, `recipe-${id}`), { recursive: true, force: true });
    };
    const factory = await image('1.0.0', '1.0.0');
    await pack('1.0.0', '1.0.0', factory);
    for (const [id, version, broken] of [['1.1.0', '1.1.0', false], ['1.2.0-bad', '1.2.0-bad', false], ['broken-init', '1.1.1', true]] as const) {
      const img = await image(id, version, broken);
      await pack(id, version, img);
      await rm(img, { force: true });
    }
    const data = join(tmp, 'data');
    await buildDataTree(data, { rootCert: keys.rootCert, fleetKey: keys.fleetKey, model: SAMPLE_MODEL, appPort: VM_APP_PORT, siteVars: VM_SITE_VARS, enrollment: null, health: { required: 3, intervalMs: 500, windowMs: 90_000 } });
    await buildDisk({ out: join(tmp, 'disk.img'), slotA: factory, dataTree: data, kernel, initrd: await newest('/boot', 'initrd.img-') });
    await writeFile(join(tmp, 'factory.json'), JSON.stringify({ imageSha256: await sha256File(factory), imageBytes: (await stat(factory)).size }));
    await rm(factory, { force: true });
    await rm(data, { recursive: true, force: true });
    log(`built the QEMU probe images in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });
  const keys = (await makeSampleKeys(keysDir ?? join(dir, 'keys'))).keys;
  const packs = {} as Record<VmPackId, VmPack>;
  for (const id of ['1.0.0', '1.1.0', '1.2.0-bad', 'broken-init'] as const) {
    const path = join(dir, `system-${id}.spk`);
    const m = await readVerifiedManifest(path, keys.rootCert);
    const p = m.payloads.find((x) => x.type === 'system')!;
    packs[id] = { path, version: m.version, imageSha256: p.imageSha256!, imageBytes: p.unpackedSize };
  }
  const factory = JSON.parse(await readFile(join(dir, 'factory.json'), 'utf8')) as VmImages['factory'];
  return { dir, keys, disk: join(dir, 'disk.img'), packs, factory };
}

/** The newest `prefix*` file of `dir` (the cloud kernel and its initrd in /boot). */
async function newest(dir: string, prefix: string): Promise<string> {
  const names = (await readdir(dir)).filter((n) => n.startsWith(prefix)).sort();
  if (names.length === 0) throw new Error(`no ${dir}/${prefix}* (Debian's linux-image-cloud-amd64 puts the guest kernel there)`);
  return join(dir, names[names.length - 1]!);
}

export interface VmStatus {
  readonly inbox: number;
  readonly status: {
    readonly version: string | null;
    readonly slot: string | null;
    readonly dbVersion: number | null;
    readonly configVersion: number | null;
    readonly app: { readonly running: boolean };
    readonly unfinished: { readonly id: string; readonly state: string } | null;
    readonly lastOutcome: { readonly outcome: string; readonly errorCode: string | null; readonly version: string | null } | null;
    readonly slots: readonly { name: string; health: string; version: string | null; boot?: string }[];
    /** Block slots: the slot booted and the one the bootloader boots next as good. */
    readonly boot?: { readonly booted: string | null; readonly primary: string | null };
  } | null;
}

export class VmProbe {
  readonly disk: string;
  private qemu: QemuProbe | null = null;
  private powerOns = 0;

  constructor(
    readonly dir: string,
    readonly images: VmImages,
    /** What boots it: QEMU's BIOS and GRUB from the MBR, or Debian's U-Boot ROM and boot.scr. */
    readonly bootloader: VmBootloader = 'grub',
  ) {
    this.disk = join(dir, 'disk.img');
  }

  /** A fresh probe: the factory disk, copied (sparse); booted through U-Boot, its slot file says so. */
  async create(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    // A campaign copies the disk for each cut over hours: each copy counts as a use for `lab prune`.
    await stampUsed(this.images.dir);
    await run('cp', ['--sparse=always', this.images.disk, this.disk]);
    if (this.bootloader !== 'grub') {
      await withPartition(this.disk, 3, async (data) => writeVmSlotFile(data, this.bootloader));
    }
  }

  get vm(): QemuProbe {
    if (!this.qemu) throw new Error('the VM is off');
    return this.qemu;
  }

  get running(): boolean {
    return this.qemu !== null && this.qemu.pid !== null;
  }

  /**
   * While the VM is off: packs into its FTP drop, the agent's environment (fault points) set or
   * cleared, its enrollment and its address on a tap's network (`10.213.X.Y/24`).
   */
  async prepare(o: { inbox?: readonly string[]; agentEnv?: Readonly<Record<string, string>> | null; enrollment?: string; address?: string }): Promise<void> {
    if (this.running) throw new Error('the VM must be off to change its disk');
    await withPartition(this.disk, 3, async (data) => {
      if (o.enrollment !== undefined) await writeFile(join(data, 'sonde', 'enrollment.json'), o.enrollment, { mode: 0o600 });
      if (o.address !== undefined) await writeFile(join(data, 'sonde', 'network'), `ADDR=${o.address}\n`);
      for (const p of o.inbox ?? []) await copyFile(p, join(data, VM_INBOX.replace(/^\/data\//, ''), p.split('/').pop()!));
      if (o.agentEnv !== undefined) {
        const env = join(data, 'sonde', 'agent.env');
        if (o.agentEnv === null) await rm(env, { force: true });
        else await writeFile(env, Object.entries(o.agentEnv).map(([k, v]) => `${k}='${v}'\n`).join(''));
      }
    });
  }

  /** Power on. The console of this power-on is serial-<n>.log. */
  boot(net: { forwards?: readonly number[]; tap?: string } = {}): QemuProbe {
    if (this.running) throw new Error('the VM is running');
    this.powerOns++;
    this.qemu = new QemuProbe({ disk: this.disk, serialLog: join(this.dir, `serial-${this.powerOns}.log`), ...net, ...(this.bootloader === 'uboot' ? { bios: UBOOT_ROM } : {}) });
    this.qemu.start();
    return this.qemu;
  }

  /** A power cut (SIGKILL to QEMU). */
  async cut(): Promise<void> {
    await this.qemu?.kill();
    this.qemu = null;
  }

  /** The status lines the probe printed after console offset `from`, newest first (lines the console cut are skipped). */
  async statuses(from = 0): Promise<VmStatus[]> {
    const text = (await this.vm.console()).slice(from);
    const out: VmStatus[] = [];
    for (const line of text.split('\n').filter((l) => l.startsWith(VM_STATUS_MARK)).reverse()) {
      try {
        out.push(JSON.parse(line.slice(VM_STATUS_MARK.length).trim()) as VmStatus);
      } catch {
        // a line cut by the console
      }
    }
    return out;
  }

  /**
   * Waits until the probe is at rest: nothing unfinished, nothing waiting in the drop, the
   * committed release's app running, and the same in two status lines in a row (one line alone
   * can fall between the drop taking a pack and the install being recorded).
   */
  async settled(timeoutMs: number, from = 0): Promise<VmStatus> {
    const until = Date.now() + timeoutMs;
    // At rest: nothing open, the drop empty, the app up, and running the slot the bootloader boots
    // next (not the moment between a rollback's end and its reboot into the old slot).
    const atRest = (s: VmStatus | undefined): boolean =>
      !!s?.status && s.status.unfinished === null && s.inbox === 0 && (s.status.version === null || s.status.app.running) && (s.status.boot === undefined || s.status.boot.booted === s.status.boot.primary);
    const view = (s: VmStatus): string => JSON.stringify([s.status!.version, s.status!.slot, s.status!.lastOutcome, s.status!.dbVersion, s.status!.configVersion]);
    for (;;) {
      const [s, before] = await this.statuses(from);
      if (s && before && atRest(s) && atRest(before) && view(s) === view(before)) return s;
      if (!this.running) throw new Error('the VM stopped before it settled');
      if (Date.now() > until) throw new Error(`the probe did not settle within ${timeoutMs} ms; last status: ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }

  /** Reads partition `index` (1 = A, 2 = B) back for `bytes` bytes: its sha256. */
  async slotSha256(index: 1 | 2, bytes: number): Promise<string> {
    const p = partitionsOf(DEFAULT_LAYOUT)[index]!;
    const fh = await open(this.disk, 'r');
    const hash = createHash('sha256');
    try {
      const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
      for (let done = 0; done < bytes; ) {
        const { bytesRead } = await fh.read(buf, 0, Math.min(buf.length, bytes - done), p.start + done);
        if (bytesRead === 0) break;
        hash.update(buf.subarray(0, bytesRead));
        done += bytesRead;
      }
    } finally {
      await fh.close();
    }
    return hash.digest('hex');
  }

  /** With the VM off: the bootloaders' environments, and copies of the probe's database, config and agent journal. */
  async readDisk(into: string): Promise<{ grubenv: Record<string, string>; ubootEnv: Record<string, string> }> {
    if (this.running) throw new Error('the VM must be off to read its disk');
    await mkdir(into, { recursive: true });
    const grubenv = await withPartition(this.disk, 0, async (boot) => {
      const out = (await run('grub-editenv', [join(boot, 'grub', 'grubenv'), 'list'])).stdout;
      return Object.fromEntries(out.split('\n').filter((l) => l.includes('=')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    });
    await withPartition(this.disk, 3, async (data) => {
      const root = join(data, VM_PROBE_ROOT.replace(/^\/data\//, ''));
      for (const [from, to] of [
        ['data/probe.db', 'probe.db'],
        ['data/probe.db-wal', 'probe.db-wal'],
        ['etc/config.json', 'config.json'],
        ['slots/status.json', 'slots.json'],
        ['var/sonde/agent.db', 'agent.db'],
        ['var/sonde/agent.db-wal', 'agent.db-wal'],
      ] as const) {
        await copyFile(join(root, from), join(into, to)).catch(() => undefined);
      }
    });
    return { grubenv, ubootEnv: await readDiskUbootEnv(this.disk) };
  }
}
