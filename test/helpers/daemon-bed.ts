import type { SamplePaths } from '../../images/src/samples/index.js';
import { connectServerClient, SERVER_USER, startAedesBroker, type AedesBroker, type ServerClient } from './broker.js';
import { daemonSamples, makeProbe, startDaemon, startFleetHttp, waitUntil, type FleetHttp, type InProcessDaemon, type ProbeFixture, type ProbeOptions } from './daemon-harness.js';
import { onKilled } from './on-killed.js';
import { scratch } from './packs.js';
import { stopApp } from './probe.js';

/**
 * What a daemon test file stands on: the sample packs, an aedes broker with the fleet's ACLs and
 * a server client on it, the fleet server's HTTP stand-in, and probes whose daemons run
 * in-process. `stopDaemons()` after each test, `close()` after all; a worker stopped by a signal
 * still stops the probes' apps (they run detached, as on a probe) and removes its folder.
 */
export interface DaemonBed {
  readonly dir: string;
  readonly samples: SamplePaths;
  readonly broker: AedesBroker;
  readonly http: FleetHttp;
  readonly server: ServerClient;
  /** A probe known to the broker and the HTTP stand-in (its token accepted by both). */
  probe(o?: Omit<ProbeOptions, 'mqttUrl' | 'httpBase'>): Promise<ProbeFixture>;
  /** Starts the probe's daemon and waits until it has subscribed to its commands. */
  daemon(p: ProbeFixture): Promise<InProcessDaemon>;
  stopDaemons(): Promise<void>;
  close(): Promise<void>;
}

const SERVER_PASSWORD = 'server-password-for-tests-only-0123456789';

export async function daemonBed(prefix: string): Promise<DaemonBed> {
  const tmp = await scratch(prefix);
  const samples = await daemonSamples();
  const broker = await startAedesBroker();
  broker.addUser(SERVER_USER, SERVER_PASSWORD);
  const tokens = new Map<string, string>();
  const http = await startFleetHttp(tokens);
  const server = await connectServerClient(broker.url, SERVER_PASSWORD);
  const roots: string[] = [];
  let running: InProcessDaemon[] = [];
  const stopAll = async (): Promise<void> => {
    for (const d of running) await d.stop().catch(() => undefined);
    running = [];
    for (const r of roots) await stopApp(r).catch(() => undefined);
  };
  const offKilled = onKilled(async () => {
    await stopAll();
    await tmp.cleanup();
  });
  return {
    dir: tmp.dir,
    samples,
    broker,
    http,
    server,
    async probe(o = {}) {
      const p = await makeProbe(tmp.dir, { samples, ...o, mqttUrl: broker.url, httpBase: http.base });
      tokens.set(p.id, p.token);
      broker.addUser(p.id, p.token);
      roots.push(p.root);
      return p;
    },
    async daemon(p) {
      const before = broker.subscribes.get(p.id) ?? 0;
      const d = await startDaemon(p);
      running.push(d);
      await waitUntil('the probe subscribed to its commands', () => (broker.subscribes.get(p.id) ?? 0) > before);
      return d;
    },
    async stopDaemons() {
      for (const d of running) await d.stop().catch(() => undefined);
      running = [];
    },
    async close() {
      offKilled();
      await stopAll();
      await server.close();
      await broker.close();
      await http.close();
      await tmp.cleanup();
    },
  };
}
