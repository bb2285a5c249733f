import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExecResult, ProbeBackend, ProbeSpec } from '../../lxc/src/backend.js';
import { ensureGolden } from '../../lxc/src/golden.js';
import type { LineSpec } from '../../lxc/src/lab-config.js';

/**
 * The probe layer build's orchestration (lxc/src/golden.ts) against a scripted engine: the
 * containers themselves are covered by the LXC suite. This proves what a failed install in the
 * builder does: said out loud, one fresh builder, and a second failure is the verdict.
 */
class ScriptedBackend implements ProbeBackend {
  readonly kind = 'lxc' as const;
  readonly created: string[] = [];
  readonly destroyed: string[] = [];
  installs = 0;
  constructor(private readonly failInstalls: Set<number>) {}
  async create(spec: ProbeSpec): Promise<void> {
    this.created.push(spec.name);
    await writeFile(join(spec.upper, 'from-builder'), `${this.created.length}\n`);
  }
  async start(): Promise<void> {}
  async stop(): Promise<void> {}
  async destroy(name: string): Promise<void> {
    this.destroyed.push(name);
  }
  async state(): Promise<'missing'> {
    return 'missing';
  }
  async known(): Promise<string[]> {
    return [];
  }
  async exec(_name: string, argv: readonly string[]): Promise<ExecResult> {
    if (!argv.includes('install')) return { code: 0, stdout: '', stderr: '' };
    this.installs++;
    if (this.failInstalls.has(this.installs)) {
      return { code: 1, stdout: '', stderr: 'ROLLED-BACK HEALTH_CHECK_FAILED: the new release failed its health check: the app process exited; its last output: boom' };
    }
    return { code: 0, stdout: '', stderr: '' };
  }
  shellCommand(): readonly string[] {
    return [];
  }
}

let dir: string;
let repo: string;
let line: LineSpec;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sonde-golden-'));
  repo = join(dir, 'repo');
  await mkdir(join(repo, 'dist', 'agent'), { recursive: true });
  await writeFile(join(repo, 'package.json'), '{}\n');
  await writeFile(join(repo, 'dist', 'agent', 'x.js'), '// agent\n');
  // The builder copies the line's files; the scripted engine never reads them.
  const files = join(dir, 'line');
  await mkdir(files, { recursive: true });
  for (const f of ['1.0.0.spk', '1.1.0.spk', 'root.crt', 'fleet.key']) await writeFile(join(files, f), `${f}\n`);
  line = { name: 'stable', version: '1.1.0', packs: [join(files, '1.0.0.spk'), join(files, '1.1.0.spk')], keyring: join(files, 'root.crt'), recipientKey: join(files, 'fleet.key'), siteVars: { CollectorPassword: 'x' }, model: null, channel: 'stable', fingerprint: 'samples' };
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function options(backend: ProbeBackend, images: string, log: string[]) {
  return { backend, init: 'busybox' as const, repoDir: repo, agentTree: join(dir, 'agent-deb-0123456789abcdef', 'tree'), imagesDir: images, base: join(dir, 'base'), bridge: 'slbtest', builderIp: '10.213.1.253', builderVeth: 'slvtest', scratch: dir, log: (l: string) => void log.push(l) };
}

describe('the probe layer build', () => {
  it('builds again with a fresh builder after one failed install, and says why', async () => {
    const backend = new ScriptedBackend(new Set([2]));
    const log: string[] = [];
    const layer = await ensureGolden(line, options(backend, join(dir, 'images-a'), log));
    expect(backend.created).toHaveLength(2);
    expect(backend.destroyed).toEqual(backend.created);
    expect(log.some((l) => /HEALTH_CHECK_FAILED.*its last output: boom; building the stable layer again with a fresh builder/.test(l))).toBe(true);
    expect(log.at(-1)).toMatch(/^built the stable probe layer/);
    // Only the second builder's files are in the layer (the agent is mounted, not copied).
    expect((await readdir(layer)).sort()).toEqual(['etc', 'from-builder']);
  });

  it('gives up with LAB_IMAGE_FAILED when the fresh builder fails too, and leaves no layer', async () => {
    const backend = new ScriptedBackend(new Set([2, 4]));
    const images = join(dir, 'images-b');
    await expect(ensureGolden(line, options(backend, images, []))).rejects.toMatchObject({ code: 'LAB_IMAGE_FAILED' });
    expect(backend.created).toHaveLength(2);
    expect(await readdir(images).catch(() => [])).toEqual([]);
  });
});
