import { cp, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { ensureAgentTree } from '../../lxc/src/agent-package.js';
import { SAMPLE_MODEL } from '../../images/src/samples/releases.js';
import type { SampleKeys } from '../../images/src/samples/sample-keys.js';
import { loadPrivateKey, makePlan, writePack } from '../../pack/src/index.js';
import type { Signer } from '../../pack/src/writer.js';

const REPO = resolve(import.meta.dirname, '../..');

/**
 * Agent packs for the self-update tests (docs/self-update.md): the sonde-agent package of this
 * build (scripts/build-deb, extracted once per build, as the lab's probes run it) as version
 * `version`, signed by the sample signer. A variant breaks the new agent the ways a bad build
 * would, in its own code, so that only the launcher can save the probe:
 *  - `exits-at-start`: its entry exits with code 3 at once;
 *  - `hangs`: its entry runs and does nothing, for ever;
 *  - `never-reports`: the real agent, whose link points at a closed port (it never reaches the
 *    fleet server, as a build with a broken TLS or MQTT stack would not).
 */
export type AgentVariant = 'good' | 'exits-at-start' | 'hangs' | 'never-reports';

/** The packaged agent tree of this build (its /usr/lib/sonde), made once per build. */
export async function packagedAgentTree(): Promise<string> {
  return ensureAgentTree(REPO, join(tmpdir(), 'sonde-test-agent-trees'), () => undefined);
}

const ENTRY = ['dist', 'cli', 'src', 'sonde.js'];

const NEVER_REPORTS = `#!/usr/bin/node
// A build that runs but never reaches the fleet server: the real agent, its link pointed at a closed port.
import { readFileSync, writeFileSync } from 'node:fs';
const i = process.argv.indexOf('--config');
if (i > 0) {
  const config = JSON.parse(readFileSync(process.argv[i + 1], 'utf8'));
  const creds = JSON.parse(readFileSync(config.credentials, 'utf8'));
  creds.server = { http: 'http://127.0.0.1:9', mqtt: 'mqtt://127.0.0.1:9' };
  writeFileSync(config.credentials + '.unreachable', JSON.stringify(creds), { mode: 0o600 });
  config.credentials = config.credentials + '.unreachable';
  writeFileSync(process.argv[i + 1] + '.unreachable', JSON.stringify(config));
  process.argv[i + 1] += '.unreachable';
}
await import('./sonde-real.js');
`;

/** The tree of agent `version`, broken as `variant` says, in `dir`. */
export async function agentTree(dir: string, version: string, variant: AgentVariant = 'good'): Promise<string> {
  const tree = join(dir, `agent-${version}-${variant}`);
  await cp(await packagedAgentTree(), tree, { recursive: true, verbatimSymlinks: true });
  const pkgPath = join(tree, 'package.json');
  const pkg = JSON.parse(await readFile(pkgPath, 'utf8')) as { version: string };
  pkg.version = version;
  await writeFile(pkgPath, JSON.stringify(pkg, null, 2));
  const entry = join(tree, ...ENTRY);
  if (variant === 'exits-at-start') await writeFile(entry, '#!/usr/bin/node\nprocess.stderr.write("this build exits at start\\n");\nprocess.exit(3);\n');
  if (variant === 'hangs') await writeFile(entry, '#!/usr/bin/node\nsetInterval(() => undefined, 1 << 30);\n');
  if (variant === 'never-reports') {
    await rename(entry, join(tree, 'dist', 'cli', 'src', 'sonde-real.js'));
    await writeFile(entry, NEVER_REPORTS);
  }
  return tree;
}

/** An agent pack of `version` (kind agent, one agent payload), signed by the sample signer. */
export interface AgentPackOptions {
  readonly compression?: 'gzip' | 'none';
  readonly model?: string;
  /** Another signer than the sample one (an attacker's). */
  readonly signer?: Signer;
  /** Changes the build before it is packed (another architecture's native module…). */
  readonly tree?: (tree: string) => Promise<void>;
}

export async function agentPack(dir: string, keys: SampleKeys, version: string, variant: AgentVariant = 'good', o: AgentPackOptions = {}): Promise<string> {
  const src = join(dir, `src-${version}-${variant}`);
  await mkdir(src, { recursive: true });
  await rename(await agentTree(dir, version, variant), join(src, 'agent'));
  await o.tree?.(join(src, 'agent'));
  await writeFile(join(src, 'pack.json'), JSON.stringify({ kind: 'agent', product: 'sonde-agent', version, compatible: [o.model ?? SAMPLE_MODEL], payloads: { agent: 'agent' } }));
  const plan = await makePlan(src, { compression: o.compression ?? 'none' });
  const out = join(dir, `sonde-agent-${version}-${variant}.spk`);
  const chain = (await readFile(keys.signerCert, 'utf8')).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
  await writePack(plan, { signer: o.signer ?? { key: await loadPrivateKey(keys.signerKey), chainPem: chain }, out });
  return out;
}
