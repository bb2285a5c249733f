import {
  CONFIG_OPS_0002,
  CONFIG_OPS_0003,
  CONFIG_OPS_0004,
  CONFIG_TEMPLATE_V1,
  REFERENCE_TARGETS,
  type ConfigOpsFile,
} from './config-files.js';
import { MIGRATION_0001, MIGRATION_0002, MIGRATION_0003, type Migration } from './migrations.js';

/**
 * The sample releases of probe-app (images/probe-app/README.md has the same table for people).
 * Each one is data: `writeReleaseRecipe` turns it into a recipe folder and the packer into a pack.
 *
 * Service packs are incremental but must apply to every version their `requires` range admits:
 * 1.2.0 requires >=1.1.0, so it also carries what 1.1.1 added (config ops 0003 and the reference
 * data); the engine skips ops files at or below the config's current version.
 */
export const SAMPLE_PRODUCT = 'probe-app';
export const SAMPLE_MODEL = 'probe-x1';
export const SAMPLE_SECURITY_VERSION = 1;
export const SAMPLE_MIN_AGENT_VERSION = '0.1.0';
export const APP_ENTRY = 'probe-app.cjs';

export interface VersionRange {
  readonly min: number;
  readonly max: number;
}

/** Test-only faults of the app, chosen by release.json. */
export type SampleFault = 'unhealthy' | 'crash';

/** How a sample release runs (docs/probe-layout.md, "Runners"): node under the agent, or a systemd unit. */
export type SampleRunner = 'process' | 'systemd';

/** The unit a `systemd` sample release ships and names. */
export const SAMPLE_UNIT = 'probe-app.service';

/**
 * app/systemd/probe-app.service of a `systemd` sample release. The agent fills in the
 * placeholders when it starts the release, so the unit runs the slot it was started from; the app
 * loads the agent's better-sqlite3 (NODE_PATH), as under the process runner.
 */
export const SAMPLE_UNIT_FILE = `[Unit]
Description=Sonde sample probe app @VERSION@

[Service]
Environment=PROBE_ROOT=@PROBE_ROOT@ PROBE_SLOT=@SLOT@ NODE_PATH=@NODE_PATH@
WorkingDirectory=@APP@
ExecStart=@NODE@ @APP@/${APP_ENTRY}
Restart=on-failure
RestartSec=300ms

[Install]
WantedBy=multi-user.target
`;

/** release.json at the top of the app payload (docs/probe-layout.md). */
export interface ReleaseJson {
  readonly product: string;
  readonly version: string;
  readonly entry: string;
  readonly runner?: { readonly type: 'systemd'; readonly units: readonly string[] };
  readonly db: VersionRange;
  readonly config: VersionRange;
  readonly health: { readonly path: string };
  readonly fault?: SampleFault;
}

export interface SampleApp {
  readonly db: VersionRange;
  readonly config: VersionRange;
  readonly fault?: SampleFault;
}

export type SampleReleaseVersion = '1.0.0' | '1.1.0' | '1.1.1' | '1.2.0-bad' | '1.2.0-crash';

export interface SampleRelease {
  readonly version: SampleReleaseVersion;
  readonly kind: 'product' | 'servicepack';
  /** The installed versions a service pack applies to. */
  readonly requires?: string;
  readonly releaseNotes: string;
  /** The app payload's release.json ranges; absent for a data- or config-only service pack. */
  readonly app?: SampleApp;
  /** The db payload; empty: no db payload. */
  readonly migrations: readonly Migration[];
  /** config.template.json of a product release. */
  readonly configTemplate?: Readonly<Record<string, unknown>>;
  /** ops/NNNN-name.json files of the config payload. */
  readonly configOps: readonly ConfigOpsFile[];
  /** The data payload: file name to JSON content; absent: no data payload. */
  readonly data?: Readonly<Record<string, unknown>>;
}

const faulty = (fault: SampleFault, version: SampleReleaseVersion): SampleRelease => ({
  version,
  kind: 'servicepack',
  requires: '>=1.1.0 <1.2.0',
  releaseNotes:
    `Test release: latency in microseconds and target sites (database 3, config 4). The app ` +
    (fault === 'unhealthy' ? 'starts but its health check answers 503.' : 'exits with code 1 as soon as it starts.'),
  app: { db: { min: 3, max: 3 }, config: { min: 4, max: 4 }, fault },
  migrations: [MIGRATION_0003],
  configOps: [CONFIG_OPS_0003, CONFIG_OPS_0004],
  data: { 'targets-default.json': REFERENCE_TARGETS },
});

export const SAMPLE_RELEASES: readonly SampleRelease[] = Object.freeze([
  {
    version: '1.0.0',
    kind: 'product',
    releaseNotes: 'First release: targets and latency measurements (database 1, config 1).',
    app: { db: { min: 1, max: 1 }, config: { min: 1, max: 1 } },
    migrations: [MIGRATION_0001],
    configTemplate: CONFIG_TEMPLATE_V1,
    configOps: [],
  },
  {
    version: '1.1.0',
    kind: 'servicepack',
    requires: '>=1.0.0 <1.1.0',
    releaseNotes: 'Severity and alarms (database 2); a collector with a site password, alarm thresholds (config 2).',
    app: { db: { min: 2, max: 2 }, config: { min: 2, max: 3 } },
    migrations: [MIGRATION_0002],
    configOps: [CONFIG_OPS_0002],
  },
  {
    version: '1.1.1',
    kind: 'servicepack',
    requires: '>=1.1.0 <1.1.1',
    releaseNotes: 'Data and config only: reference targets and retention (config 3); the 1.1.0 app stays.',
    migrations: [],
    configOps: [CONFIG_OPS_0003],
    data: { 'targets-default.json': REFERENCE_TARGETS },
  },
  faulty('unhealthy', '1.2.0-bad'),
  faulty('crash', '1.2.0-crash'),
] satisfies SampleRelease[]);

export function sampleRelease(version: SampleReleaseVersion): SampleRelease {
  const r = SAMPLE_RELEASES.find((x) => x.version === version);
  if (!r) throw new Error(`no sample release ${version}`);
  return r;
}

export function releaseJsonOf(release: SampleRelease, runner: SampleRunner = 'process'): ReleaseJson | null {
  if (!release.app) return null;
  return {
    product: SAMPLE_PRODUCT,
    version: release.version,
    entry: APP_ENTRY,
    ...(runner === 'systemd' ? { runner: { type: 'systemd' as const, units: [SAMPLE_UNIT] } } : {}),
    db: release.app.db,
    config: release.app.config,
    health: { path: '/health' },
    ...(release.app.fault ? { fault: release.app.fault } : {}),
  };
}
