/**
 * The sample app's configuration (docs/probe-layout.md, payload type `config`): the initial
 * template of the product release and the numbered ops files of the service packs. Each ops
 * file NNNN raises `configVersion` to NNNN. Between them they use every op (set, rename, remove,
 * default) and one site variable, `#{CollectorPassword}`.
 */
type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

export type ConfigOp =
  | { readonly op: 'set'; readonly path: string; readonly value: Json }
  | { readonly op: 'default'; readonly path: string; readonly value: Json }
  | { readonly op: 'rename'; readonly from: string; readonly to: string }
  | { readonly op: 'remove'; readonly path: string };

export interface ConfigOpsFile {
  /** `NNNN-name`: the file is `ops/<name>.json`. */
  readonly name: string;
  /** The configVersion the file brings the config to. */
  readonly version: number;
  readonly ops: readonly ConfigOp[];
}

/** The site variable the 1.1.0 collector settings reference; tests set it in site-vars.json. */
export const COLLECTOR_PASSWORD_VAR = 'CollectorPassword';

/** configVersion 1 (1.0.0). Port 8080 is the template's; tests rewrite it to a free port. */
export const CONFIG_TEMPLATE_V1 = Object.freeze({
  configVersion: 1,
  probeName: 'probe-x1-sample',
  port: 8080,
  pollMs: 200,
  measurements: { paused: false },
  legacyMode: false,
});

/**
 * configVersion 2 (1.1.0): the collector the alarms are forwarded to, with its password from a
 * site variable; the poll interval moves under `measurements`; alarm thresholds appear.
 */
export const CONFIG_OPS_0002: ConfigOpsFile = {
  name: '0002-collector-alarms',
  version: 2,
  ops: [
    { op: 'set', path: 'collector.password', value: `#{${COLLECTOR_PASSWORD_VAR}}` },
    { op: 'default', path: 'collector.user', value: 'probe' },
    { op: 'rename', from: 'pollMs', to: 'measurements.intervalMs' },
    { op: 'default', path: 'alarms.warningMs', value: 40 },
    { op: 'default', path: 'alarms.criticalMs', value: 80 },
  ],
};

/**
 * configVersion 3 (1.1.1), additive so that app 1.1.0 runs on it: the reference target list the
 * release ships in its `data` payload, a retention setting, and the obsolete flag removed.
 */
export const CONFIG_OPS_0003: ConfigOpsFile = {
  name: '0003-reference-targets',
  version: 3,
  ops: [
    { op: 'set', path: 'targets.referenceFile', value: 'targets-default.json' },
    { op: 'default', path: 'retentionDays', value: 30 },
    { op: 'remove', path: 'legacyMode' },
  ],
};

/** configVersion 4 (1.2.0): the poll interval moves again, under `schedule`; a stricter threshold. */
export const CONFIG_OPS_0004: ConfigOpsFile = {
  name: '0004-schedule',
  version: 4,
  ops: [
    { op: 'rename', from: 'measurements.intervalMs', to: 'schedule.intervalMs' },
    { op: 'default', path: 'schedule.jitterMs', value: 0 },
    { op: 'set', path: 'alarms.criticalMs', value: 100 },
  ],
};

/** The reference data of 1.1.1 (`data/targets-default.json`); the app adds missing targets. */
export const REFERENCE_TARGETS = Object.freeze([
  { name: 'ntp-primary', address: '10.0.0.123', site: 'hq' },
  { name: 'syslog-collector', address: '10.0.1.14', site: 'hq' },
  { name: 'branch-gateway', address: '10.20.0.1', site: 'branch' },
]);
