import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { ReleaseInfo } from '../release-info.js';

/**
 * Starts and stops the probe application (DESIGN.md, "The agent"). The release says how in its
 * release.json (`runner`, docs/probe-layout.md): `process` (a Node entry the agent supervises),
 * `exec` (any executable, supervised the same way) or `systemd` (units the release names).
 * release-runner.ts picks the runner per release and remembers which one runs.
 */
export interface AppRunner {
  /** Starts the app of the release in `slotDir`; resolves once it has been spawned. */
  start(slotDir: string): Promise<void>;
  /** Stops the app if it runs; resolves when it has exited. */
  stop(): Promise<void>;
  /** The pid of the running app, or null. */
  running(): Promise<number | null>;
  /**
   * The last lines the app wrote since it was last started here (at most `maxBytes`), or null
   * when there are none: what a health verdict quotes when the app died, so that an operator
   * reads why without logging in to the probe.
   */
  lastWords(maxBytes?: number): Promise<string | null>;
  /**
   * A check of the runner's own (systemd: every unit active and not restarting), run by the health
   * gate besides the HTTP and script checks: null when it passes, else why not.
   */
  check(): Promise<string | null>;
}

/** What a runner knows of the release it is starting. */
export interface StartContext {
  readonly slotDir: string;
  readonly release: ReleaseInfo;
  readonly probeRoot: string;
}

/** The node_modules the agent runs with: Node apps may load its better-sqlite3 (NODE_PATH). */
export function agentNodeModules(): string {
  const req = createRequire(import.meta.url);
  // .../node_modules/better-sqlite3/package.json -> .../node_modules
  return dirname(dirname(req.resolve('better-sqlite3/package.json')));
}

/**
 * The placeholders an `exec` command, its environment and a shipped systemd unit may use
 * (docs/probe-layout.md, "Runners"): the probe root, the slot, the app folder, the version, the
 * node binary and node_modules the agent runs with.
 */
export function placeholders(c: StartContext): Readonly<Record<string, string>> {
  return {
    '@PROBE_ROOT@': c.probeRoot,
    '@SLOT@': c.slotDir,
    '@APP@': join(c.slotDir, 'app'),
    '@VERSION@': c.release.version,
    '@NODE@': process.execPath,
    '@NODE_PATH@': agentNodeModules(),
  };
}

export function expand(text: string, vars: Readonly<Record<string, string>>): string {
  return text.replace(/@[A-Z_]+@/g, (m) => vars[m] ?? m);
}

/** The environment every supervised app gets (PROBE_ROOT also marks its processes as the probe's). */
export function appEnvironment(c: StartContext): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    PROBE_ROOT: c.probeRoot,
    PROBE_SLOT: c.slotDir,
    PROBE_VERSION: c.release.version,
    NODE_PATH: agentNodeModules(),
  };
}
