import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { PROBE_ID } from '../../../base/src/protocol/topics.js';
import { hashToken, newTokenId, newTokenSecret } from '../auth/tokens.js';
import { readEndpoints, type DataPaths } from '../data-dir.js';
import { ServerError } from '../errors.js';
import { isReservedProbeId } from '../mqtt/identity.js';
import { mosquittoPasswordHash } from '../mqtt/mosquitto-hash.js';
import type { CommandRecord, DeploymentRecord, ProbePatch, ProbeQuery, ProbeRecord, ProbeTarget, Store, StoredEvent } from '../store/types.js';
import type { FleetSummary } from '../http/response-schemas.js';
import { probeView } from '../http/views.js';

/**
 * The probe inventory as staff and the rollouts module see it: enrollment, attributes (channel,
 * groups, tags), listings and the probes a target addresses. The inventory itself is written by
 * the ingest from what probes publish (ingest-queue.ts).
 */

/** The credential file the agent reads (agent/src/daemon/credentials.ts), mode 0600 on the probe. */
export interface EnrollmentFile {
  readonly format: 'sonde-enrollment-1';
  readonly probeId: string;
  readonly token: string;
  readonly server: { readonly http: string; readonly mqtt: string };
  readonly ca?: string;
}

export interface EnrollOptions {
  /** The server URL the probe uses (default: the first --listen address of the last start, else loopback). */
  readonly httpUrl?: string | undefined;
  readonly mqttUrl?: string | undefined;
}

export interface ProbeDetail {
  readonly probe: ProbeRecord;
  readonly deployments: readonly DeploymentRecord[];
  readonly commands: readonly CommandRecord[];
  readonly events: readonly StoredEvent[];
}

/** Called after an enrollment changes the probe credentials (the Mosquitto password file follows). */
export type EnrollHook = () => Promise<void>;

export class ProbeService {
  private readonly enrollHooks: EnrollHook[] = [];

  constructor(
    private readonly store: Store,
    private readonly paths: DataPaths,
    private readonly log: Logger,
  ) {}

  afterEnroll(hook: EnrollHook): void {
    this.enrollHooks.push(hook);
  }

  async enroll(probeId: string, o: EnrollOptions = {}): Promise<{ credentials: EnrollmentFile; created: boolean }> {
    if (!PROBE_ID.test(probeId)) {
      throw new ServerError('PROBE_ID_INVALID', 'a probe id is 1 to 63 characters of a-z, 0-9, ".", "_" and "-", starting with a letter or digit');
    }
    if (isReservedProbeId(probeId)) {
      throw new ServerError('PROBE_ID_RESERVED', `${probeId} is reserved for the server and the broker (its MQTT user and ACL): choose another probe id`);
    }
    const server = await this.urlsFor(o);
    const ca = await readFile(this.paths.caCert, 'utf8');
    const token = newTokenSecret();
    const { created } = await this.store.probes.enroll(probeId, {
      httpBase: server.http,
      mqttPasswordHash: mosquittoPasswordHash(token),
      token: { id: newTokenId(), kind: 'probe', name: probeId, role: null, probeId, hash: hashToken(token) },
    });
    for (const hook of this.enrollHooks) await hook();
    this.log.info({ probeId, created, http: server.http, mqtt: server.mqtt }, 'probe enrolled');
    return { credentials: { format: 'sonde-enrollment-1', probeId, token, server, ca }, created };
  }

  private async urlsFor(o: EnrollOptions): Promise<{ http: string; mqtt: string }> {
    const last = await readEndpoints(this.paths);
    const http = o.httpUrl ?? last?.probeHttp;
    if (!http) throw new ServerError('SERVER_OPTIONS_INVALID', 'the server has not started on this data directory yet: give --server-url');
    let mqtt = o.mqttUrl;
    if (!mqtt) {
      if (o.httpUrl === undefined && last) mqtt = last.probeMqtt;
      else {
        // Same host as the HTTP URL, the MQTT port of the last start, TLS when the HTTP URL is.
        const u = new URL(http);
        const port = last ? new URL(last.probeMqtt).port || new URL(last.mqtt).port : '';
        if (!port) throw new ServerError('SERVER_OPTIONS_INVALID', 'cannot tell the MQTT port: give --mqtt-url');
        mqtt = `${u.protocol === 'https:' ? 'mqtts' : 'mqtt'}://${u.hostname.includes(':') ? `[${u.hostname}]` : u.hostname}:${port}`;
      }
    }
    for (const [what, url] of [
      ['server', http],
      ['mqtt', mqtt],
    ] as const) {
      let u: URL;
      try {
        u = new URL(url);
      } catch {
        throw new ServerError('SERVER_OPTIONS_INVALID', `the ${what} URL ${url} is not a URL`);
      }
      const ok = what === 'server' ? u.protocol === 'http:' || u.protocol === 'https:' : u.protocol === 'mqtt:' || u.protocol === 'mqtts:';
      if (!ok) throw new ServerError('SERVER_OPTIONS_INVALID', `the ${what} URL ${url} has the wrong scheme`);
    }
    return { http: http.replace(/\/+$/, ''), mqtt };
  }

  async get(id: string): Promise<ProbeRecord> {
    if (!PROBE_ID.test(id)) throw new ServerError('PROBE_ID_INVALID', `not a probe id: ${JSON.stringify(id.slice(0, 80))}`);
    const p = await this.store.probes.get(id);
    if (!p) throw new ServerError('PROBE_NOT_FOUND', `no probe ${id}`);
    return p;
  }

  async detail(id: string): Promise<ProbeDetail> {
    const probe = await this.get(id);
    const [deployments, commands, events] = await Promise.all([
      this.store.probes.deployments(id, 50),
      this.store.commands.forProbe(id, 50),
      this.store.probes.events(id, { limit: 100 }),
    ]);
    return { probe, deployments, commands, events };
  }

  list(query: ProbeQuery, page: { limit: number; offset: number }): Promise<{ probes: ProbeRecord[]; total: number }> {
    return this.store.probes.list(query, page);
  }

  /** The same label change to many probes; the ids that exist. */
  updateMany(ids: readonly string[], patch: ProbePatch): Promise<string[]> {
    return this.store.probes.updateMany(ids, patch);
  }

  /** The fleet overview: counts, and the `limit` probes with the worst problems. */
  async summary(limit: number): Promise<FleetSummary> {
    const [counts, byHealth, byVersion, byChannel, problems] = await Promise.all([
      this.store.probes.counts(),
      this.store.probes.countsBy('health'),
      this.store.probes.countsBy('version'),
      this.store.probes.countsBy('channel'),
      this.store.probes.problems(limit),
    ]);
    return {
      total: counts.total,
      online: counts.online,
      offline: counts.total - counts.online,
      byHealth,
      byVersion,
      byChannel,
      problems: { counts: problems.counts, probes: problems.probes.map((p) => ({ ...probeView(p.probe), problems: p.problems })) },
      at: new Date().toISOString(),
    };
  }

  /** One deployment of a probe with its events (PROBE_NOT_FOUND, DEPLOYMENT_NOT_FOUND). */
  async deployment(id: string, deploymentId: string): Promise<{ deployment: DeploymentRecord; events: StoredEvent[] }> {
    await this.get(id);
    const d = await this.store.probes.deployment(id, deploymentId);
    if (!d) throw new ServerError('DEPLOYMENT_NOT_FOUND', `probe ${id} has no deployment ${JSON.stringify(deploymentId.slice(0, 80))}`);
    return d;
  }

  /** The ids of the probes a target addresses (channel, group, tag, explicit ids; all given must match). */
  match(target: ProbeTarget): Promise<string[]> {
    return this.store.probes.match(target);
  }

  async update(id: string, patch: ProbePatch): Promise<ProbeRecord> {
    await this.get(id);
    const p = await this.store.probes.update(id, patch);
    if (!p) throw new ServerError('PROBE_NOT_FOUND', `no probe ${id}`);
    return p;
  }
}
