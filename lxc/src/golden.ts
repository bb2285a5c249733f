import { copyFile, cp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { exists } from '../../base/src/fs/exists.js';
import { SAMPLE_PRODUCT } from '../../images/src/samples/releases.js';
import { AGENT_HOME, AGENT_STATE, BUILDER_INITTAB, buildOnce, SYSTEMD_AGENT_UNIT, writeBaseLayer, type ProbeInit } from '../../images/src/lab/probe-image.js';
import type { ProbeBackend } from './backend.js';
import { LabError } from './errors.js';
import { run } from './host.js';
import type { LineSpec } from './lab-config.js';

/**
 * The probe layers a lab copies into each new probe, one per release line, built once per agent
 * build and cached under `<home>/images/`: a builder probe (same base, same mounts, no agent
 * daemon) runs the real `sonde agent install` of the sample packs, 1.0.0 then the service packs up
 * to the line's release, exactly as a probe in the field was installed. Its writable layer, minus
 * the builder's own boot files, is the line's layer.
 */
export interface Samples {
  readonly dir: string;
  readonly rootCert: string;
  readonly fleetKey: string;
  /** A sample release's pack (images/build-samples names them so). */
  pack(version: string): string;
  /** The pack a probe of `init` installs for `version`: the systemd-runner twin where there is one. */
  packFor(version: string, init: ProbeInit): string;
}

export function samplePackName(version: string): string {
  return `${SAMPLE_PRODUCT}-${version}.spk`;
}

// samples-2: with the systemd-runner twins of 1.0.0 and 1.1.0.
export const SAMPLES_FORMAT = 'samples-2';
const SYSTEMD_TWINS = new Set(['1.0.0', '1.1.0']);

export async function ensureSamples(imagesDir: string, log: (l: string) => void): Promise<Samples> {
  const dir = join(imagesDir, SAMPLES_FORMAT);
  await mkdir(imagesDir, { recursive: true });
  await buildOnce(dir, async (tmp) => {
    log('building the sample packs (once per lab home)');
    // Loaded only here: the packer and key issuance cost every `sonde lab` command half a second.
    const { buildSamples } = await import('../../images/src/samples/index.js');
    await buildSamples(tmp, { systemd: true });
  });
  const pack = (version: string): string => join(dir, samplePackName(version));
  return {
    dir,
    rootCert: join(dir, 'keys', 'root.crt'),
    fleetKey: join(dir, 'keys', 'fleet.key'),
    pack,
    packFor: (version, init) => (init === 'systemd' && SYSTEMD_TWINS.has(version) ? join(dir, `${SAMPLE_PRODUCT}-${version}-systemd.spk`) : pack(version)),
  };
}

export async function makeBase(dir: string, init: ProbeInit = 'busybox'): Promise<string> {
  return buildOnce(dir, (tmp) => writeBaseLayer(tmp, init));
}

export const SONDE_JS = `${AGENT_HOME}/dist/cli/src/sonde.js`;

export interface GoldenOptions {
  readonly backend: ProbeBackend;
  readonly init: ProbeInit;
  readonly repoDir: string;
  /** The sonde-agent package's /usr/lib/sonde, extracted (agent-package.ts): mounted read-only at AGENT_HOME. */
  readonly agentTree: string;
  readonly imagesDir: string;
  readonly base: string;
  readonly bridge: string;
  readonly builderIp: string;
  readonly builderVeth: string;
  readonly scratch: string;
  readonly log: (l: string) => void;
}

export async function ensureGolden(line: LineSpec, o: GoldenOptions): Promise<string> {
  // The agent package's folder name carries the fingerprint of the build it was made from.
  const key = basename(dirname(o.agentTree)).replace(/^agent-deb-/, '');
  const own = line.fingerprint === 'samples' ? '' : `${line.fingerprint}-`;
  const dir = join(o.imagesDir, `${o.backend.kind}-${line.name}-${o.init === 'systemd' ? 'systemd-' : ''}${own}${key}`);
  await buildOnce(dir, async (tmp) => {
    const t0 = Date.now();
    o.log(`building the ${line.name} probe layer (${line.version}${o.init === 'systemd' ? ', systemd' : ''}), once per agent build`);
    const layer = join(tmp, 'layer');
    for (let attempt = 1; ; attempt++) {
      try {
        await buildLayer(line, o, tmp, layer);
        break;
      } catch (e) {
        // A layer is a cache of what `sonde agent install` makes: one failed install (seen once in
        // CI: the new app exited during its health check, cause not yet known) is said out loud,
        // with the app's last words, and the layer is built again from nothing. A second failure
        // is the verdict.
        if (!(e instanceof LabError) || e.code !== 'LAB_IMAGE_FAILED' || attempt >= 2) throw e;
        o.log(`${e.message}; building the ${line.name} layer again with a fresh builder`);
        await rm(layer, { recursive: true, force: true });
        await rm(join(tmp, 'olwork'), { recursive: true, force: true });
      }
    }
    // The builder's own files go; the probe's boot files come from the base (a systemd builder
    // also leaves its journal, its systemd state and the mask that kept the agent from running).
    const builderFiles = ['etc/inittab', 'etc/hostname', 'var/log/boot.log', 'run', 'tmp', 'var/log/journal', 'var/lib/systemd', `etc/systemd/system/${SYSTEMD_AGENT_UNIT}`];
    for (const f of builderFiles) await rm(join(layer, f), { recursive: true, force: true });
    await rm(join(tmp, 'olwork'), { recursive: true, force: true });
    await rm(join(tmp, 'console.log'), { force: true });
    o.log(`built the ${line.name} probe layer in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  });
  return join(dir, 'layer');
}

/** Copies a layer with ownership and modes (the FTP inbox belongs to the probe's ftp user). */
export async function copyLayer(from: string, to: string): Promise<void> {
  await run('cp', ['-a', '--no-preserve=xattr', `${from}/.`, to], { code: 'LAB_PROBE_FAILED' });
}

/**
 * The line's packs and the public half of its keys, copied where the builder sees them
 * (/mnt/line): never a vendor's private signing or root key, and only the recipient key the line
 * names, which the probe keeps anyway.
 */
async function stageLine(line: LineSpec, dir: string): Promise<{ packs: string[]; keyring: string; key: string | null }> {
  await mkdir(join(dir, 'keyring'), { recursive: true });
  const packs: string[] = [];
  for (const [i, p] of line.packs.entries()) {
    const name = `${String(i + 1).padStart(2, '0')}-${basename(p)}`;
    await copyFile(p, join(dir, name));
    packs.push(`/mnt/line/${name}`);
  }
  await copyFile(line.keyring, join(dir, 'keyring', 'root.crt'));
  const beside = dirname(line.keyring);
  if (await exists(join(beside, 'revocations.json'))) await copyFile(join(beside, 'revocations.json'), join(dir, 'keyring', 'revocations.json'));
  if (await exists(join(beside, 'rotations'))) await cp(join(beside, 'rotations'), join(dir, 'keyring', 'rotations'), { recursive: true });
  if (line.recipientKey) await copyFile(line.recipientKey, join(dir, 'recipient.key'));
  return { packs, keyring: '/mnt/line/keyring/root.crt', key: line.recipientKey ? '/mnt/line/recipient.key' : null };
}

/** One builder probe: boots the base with the agent, installs the line's packs in order, stops. */
async function buildLayer(line: LineSpec, o: GoldenOptions, tmp: string, layer: string): Promise<void> {
  const staged = await stageLine(line, join(tmp, 'line'));
  await mkdir(join(layer, 'etc'), { recursive: true });
  if (o.init === 'systemd') {
    // Masked for the build: the builder's install is driven from here, never by a daemon.
    await mkdir(join(layer, 'etc', 'systemd', 'system'), { recursive: true });
    await symlink('/dev/null', join(layer, 'etc', 'systemd', 'system', SYSTEMD_AGENT_UNIT));
  } else {
    await writeFile(join(layer, 'etc', 'inittab'), BUILDER_INITTAB);
  }
  const name = `build-${line.name.replace(/-/g, '')}`.slice(0, 20) + `-${process.pid}`;
  await o.backend.create({
    name,
    lower: o.base,
    upper: layer,
    ip: o.builderIp,
    bridge: o.bridge,
    veth: o.builderVeth,
    mounts: [
      { host: o.agentTree, target: AGENT_HOME, readOnly: true },
      { host: join(tmp, 'line'), target: '/mnt/line', readOnly: true },
    ],
    consoleLog: join(tmp, 'console.log'),
    init: o.init,
  });
  try {
    await o.backend.start(name);
    if (o.init === 'systemd') {
      if (!o.backend.waitBooted) throw new LabError('LAB_UNSUPPORTED', `the ${o.backend.kind} backend cannot run systemd probes`);
      await o.backend.waitBooted(name);
    }
    const sonde = async (args: string[], input?: string): Promise<void> => {
      const r = await o.backend.exec(name, ['/usr/bin/node', SONDE_JS, ...args], input === undefined ? {} : { input });
      if (r.code !== 0) throw new LabError('LAB_IMAGE_FAILED', `building the ${line.name} layer: sonde ${args.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' / ')}`);
    };
    for (const [k, v] of Object.entries(line.siteVars)) await sonde(['agent', 'vars', 'set', k, '--root', '/'], `${v}\n`);
    for (const [i, pack] of staged.packs.entries()) {
      const first = i === 0 ? ['--keyring', staged.keyring, ...(staged.key ? ['--key', staged.key] : []), ...(line.model ? ['--model', line.model] : [])] : [];
      await sonde(['agent', 'install', pack, '--root', '/', '--state', AGENT_STATE, ...first, '--health-checks', '1', '--health-interval', '200']);
    }
    await o.backend.stop(name, { kill: true });
  } finally {
    await o.backend.destroy(name);
  }
}
