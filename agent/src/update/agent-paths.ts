import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { UpdateError } from './errors.js';

/**
 * Where the agent's state is, decided in one place so that the daemon and every `sonde agent`
 * command agree (docs/agent.md, "Where the state is"):
 *  1. `--state` when given;
 *  2. else the agent config's `state` when the config's root is this root: the config is `--config`,
 *     else $SONDE_AGENT_CONFIG, else /etc/sonde/agent.json when it exists;
 *  3. else /var/lib/sonde for the root `/` (a real probe), `<root>/var/sonde` for any other root.
 * The root is `--root`, else the config's root, else `/`.
 */
export const DEFAULT_AGENT_CONFIG = '/etc/sonde/agent.json';
export const PROBE_STATE = '/var/lib/sonde';

export function defaultStateFor(root: string): string {
  const r = resolve(root);
  return r === '/' ? PROBE_STATE : join(r, 'var', 'sonde');
}

export interface PathFlags {
  readonly root?: string | undefined;
  readonly state?: string | undefined;
  readonly config?: string | undefined;
}

export interface AgentPaths {
  readonly root: string;
  readonly state: string;
  /** The agent config the paths came from, when one was read. */
  readonly config: string | null;
}

/** The root and state of the agent config at `path` (relative paths are relative to its folder). */
function configPaths(path: string, explicit: boolean): { root: string; state: string } | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if (!explicit && (e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new UpdateError('AGENT_PATHS_INVALID', `agent config ${path} cannot be read`, { cause: e });
  }
  let json: { root?: unknown; state?: unknown };
  try {
    json = JSON.parse(text) as typeof json;
  } catch (e) {
    throw new UpdateError('AGENT_PATHS_INVALID', `agent config ${path} is not valid JSON`, { cause: e });
  }
  const base = dirname(resolve(path));
  const root = resolve(base, typeof json.root === 'string' ? json.root : '/');
  const state = typeof json.state === 'string' ? resolve(base, json.state) : defaultStateFor(root);
  return { root, state };
}

export function resolveAgentPaths(flags: PathFlags): AgentPaths {
  const explicit = flags.config ?? process.env.SONDE_AGENT_CONFIG;
  const configPath = explicit ?? DEFAULT_AGENT_CONFIG;
  const fromConfig = configPaths(configPath, explicit !== undefined);
  const root = resolve(flags.root ?? fromConfig?.root ?? '/');
  if (flags.state !== undefined) return { root, state: resolve(flags.state), config: null };
  if (fromConfig && fromConfig.root === root) return { root, state: fromConfig.state, config: resolve(configPath) };
  return { root, state: defaultStateFor(root), config: null };
}

/**
 * Whether `root` holds a probe (anything an agent or a vendor's image put there): read-only
 * commands refuse any other path rather than report an empty probe, or make one.
 */
export function isProbeRoot(paths: AgentPaths): boolean {
  const { root, state } = paths;
  if (!existsSync(root)) return false;
  return ['slots', 'current', 'keyring', 'etc/config.json', 'etc/site-vars.json', 'data/probe.db'].some((p) => existsSync(join(root, p))) || existsSync(join(state, 'agent.db'));
}

export function requireProbeRoot(paths: AgentPaths): void {
  if (!isProbeRoot(paths)) {
    throw new UpdateError(
      'NOT_A_PROBE_ROOT',
      `${paths.root} is not a probe root (no slots, keyring, config or agent state${paths.config ? '' : ` at ${paths.state}`}): give --root, or --state if the agent keeps its state elsewhere`,
    );
  }
}
