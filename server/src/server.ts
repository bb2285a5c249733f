import type { FastifyInstance } from 'fastify';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { authenticate } from './auth/principal.js';
import { hashToken, newTokenId, newTokenSecret } from './auth/tokens.js';
import { ensureCa, ensureTlsCertificate, type TlsMaterial } from './ca/server-ca.js';
import { CommandService } from './commands/command-service.js';
import type { ServerContext, ServerModule } from './context.js';
import { clearUploads, createDataDirs, dataPaths, ensureMqttSecret, lockDataDir, writeEndpoints, type DataPaths } from './data-dir.js';
import { ServerError } from './errors.js';
import { buildHttpApp, SERVER_VERSION } from './http/app.js';
import { SeenTracker } from './inventory/seen-tracker.js';
import { IngestQueue } from './inventory/ingest-queue.js';
import { ProbeService } from './inventory/probe-service.js';
import { StuckCheck } from './inventory/stuck-check.js';
import { RetentionJob, retentionPolicy } from './inventory/retention-job.js';
import { createServerLogger } from './log.js';
import { Metrics } from './metrics/registry.js';
import { ChangeFeed } from './live/change-feed.js';
import { DEFAULT_MODULES } from './modules.js';
import type { Bus } from './mqtt/bus.js';
import { EmbeddedBroker } from './mqtt/embedded-broker.js';
import { ExternalBus } from './mqtt/external-bus.js';
import { refreshMosquittoPasswords } from './mqtt/mosquitto-config.js';
import { messageRouter } from './mqtt/router.js';
import { parseServerOptions, type ServerOptions, type ServerOptionsInput } from './options.js';
import { addTrustedRoots } from './packs/keyring-dir.js';
import { PackService } from './packs/pack-service.js';
import { PackStore } from './packs/pack-store.js';
import { SqliteStore } from './store/sqlite-store.js';
import { COMMAND_STATUSES, type Store } from './store/types.js';
import { WEBHOOK_URL_SETTING, Webhooks } from './webhooks/webhook.js';

/**
 * `sonde server` (issue 5): on an empty data directory it creates the database, an admin token
 * (handed back once, printed once), its CA and the MQTT secret; then it starts the MQTT side
 * (the embedded broker, or a login to --mqtt-url), the ingest, the services and the HTTP API on
 * 127.0.0.1, plus HTTPS and MQTTS on each --listen address under its CA.
 */
export interface StartOptions {
  /** Log destination: a stream, or a file descriptor (default 2, stderr). */
  readonly logDestination?: NodeJS.WritableStream | number;
  readonly logger?: Logger;
  /** Modules run beside the core (default DEFAULT_MODULES, the rollouts module among them). */
  readonly modules?: readonly ServerModule[];
}

export interface RunningServer {
  readonly context: ServerContext;
  readonly http: FastifyInstance;
  /** http://127.0.0.1:P, then https://ADDR:P for each --listen address. */
  readonly httpUrls: readonly string[];
  /** mqtt://127.0.0.1:Q and mqtts://ADDR:Q (embedded), or the --mqtt-url. */
  readonly mqttUrls: readonly string[];
  readonly port: number;
  readonly mqttPort: number | null;
  /** The admin token, on the first start only. */
  readonly adminToken: string | null;
  close(): Promise<void>;
}

export const INITIALISED_SETTING = 'server.initialised_at';

export async function startServer(input: ServerOptionsInput, so: StartOptions = {}): Promise<RunningServer> {
  const options = parseServerOptions(input);
  const log = so.logger ?? createServerLogger(options.logLevel, so.logDestination ?? 2);
  const paths = dataPaths(options.dataDir);
  await createDataDirs(paths);
  const unlock = await lockDataDir(paths);
  const cleanups: (() => Promise<void> | void)[] = [unlock];
  const cleanup = async (): Promise<void> => {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch((e: unknown) => log.error({ err: (e as Error).message }, 'shutdown step failed'));
    cleanups.length = 0;
  };
  try {
    return await boot(options, paths, log, so, cleanups, cleanup);
  } catch (e) {
    await cleanup();
    throw e;
  }
}

async function boot(
  options: ServerOptions,
  paths: DataPaths,
  log: Logger,
  so: StartOptions,
  cleanups: (() => Promise<void> | void)[],
  cleanup: () => Promise<void>,
): Promise<RunningServer> {
  // 1. The database, the CA, the secrets.
  const store = SqliteStore.open(paths.db);
  cleanups.push(() => store.close());
  const { ca } = await ensureCa(paths);
  const mqttSecret = await ensureMqttSecret(paths);
  if (options.keyring) {
    const added = await addTrustedRoots(paths.keyring, options.keyring);
    for (const r of added.roots.filter((x) => x.added)) log.info({ root: r.subject, fingerprint: r.fingerprint }, 'vendor root trusted');
  }
  await clearUploads(paths);
  if (options.webhookUrl) await store.settings.set(WEBHOOK_URL_SETTING, options.webhookUrl);
  const tls: TlsMaterial | null = options.listen.length > 0 ? await ensureTlsCertificate(paths, ca, options.listen) : null;

  // 2. Ingest and the MQTT side.
  const metrics = new Metrics({ version: SERVER_VERSION });
  cleanups.push(() => metrics.close());
  const ingest = new IngestQueue(store, log.child({ component: 'ingest' }), metrics, options.ingestIntervalMs);
  const onMessage = messageRouter(ingest, metrics, log.child({ component: 'mqtt' }));
  const seen = new SeenTracker(store, log.child({ component: 'seen' }), options.seenFlushMs);
  let bus: Bus;
  if (options.mqttUrl) {
    bus = await ExternalBus.connect({ url: options.mqttUrl, password: mqttSecret, ca: ca.certPem, onMessage, log: log.child({ component: 'mqtt' }) });
  } else {
    // Nobody is connected to a broker that has just started; each probe says `online` again.
    await store.probes.markAllOffline();
    bus = await EmbeddedBroker.start({
      concurrency: options.mqttConcurrency,
      host: options.host,
      port: options.mqttPort,
      tls: tls ? { addresses: options.listen, certPem: tls.certPem, keyPem: tls.keyPem } : undefined,
      authenticate: async (probeId, token) => {
        const p = await authenticate(store, token);
        return p?.kind === 'probe' && p.probeId === probeId;
      },
      onMessage,
      onPing: (probeId) => seen.note(probeId),
      log: log.child({ component: 'mqtt' }),
      metrics,
    });
  }
  // Closed before the ingest stops: the wills of the probes it disconnects are still written.
  cleanups.push(() => ingest.stop());
  cleanups.push(() => bus.close());
  cleanups.push(() => seen.stop());
  ingest.start();
  seen.start();

  // 3. Services.
  const webhooks = new Webhooks(store.settings, log.child({ component: 'webhook' }), metrics);
  cleanups.push(() => webhooks.close());
  const packs = new PackService(store, new PackStore(paths.packs, paths.uploads), paths.keyring, log.child({ component: 'packs' }), options.maxPackBytes);
  const probes = new ProbeService(store, paths, log.child({ component: 'probes' }));
  probes.afterEnroll(() => refreshMosquittoPasswords(store, paths));
  const defaultHttpBase = tls ? `https://${hostPart(options.listen[0]!)}:${options.port}` : `http://${hostPart(options.host)}:${options.port}`;
  const commandsOptions = { store, bus, ingest, log: log.child({ component: 'commands' }), metrics, defaultHttpBase, chunkSize: options.fanoutChunk, pollRepeatMs: options.pollRepeatMs };
  const commands = new CommandService(commandsOptions);
  const changes = new ChangeFeed();
  changes.follow(ingest, commands);
  const context: ServerContext = {
    options,
    paths,
    store,
    log,
    metrics,
    webhooks,
    ingest,
    bus,
    packs,
    probes,
    commands,
    changes,
    audit: (e) => store.audit.append({ at: new Date().toISOString(), ...e }),
  };
  registerGauges(metrics, store, ingest, bus);
  const modules = so.modules ?? DEFAULT_MODULES;

  // 4. HTTP, then HTTPS on the --listen addresses.
  const http = await buildHttpApp(context, modules);
  cleanups.push(() => http.close());
  await http.listen({ host: options.host, port: options.port });
  const port = (http.server.address() as AddressInfo).port;
  const httpUrls = [`http://${hostPart(options.host)}:${port}`];
  const secure: HttpsServer[] = [];
  cleanups.push(async () => {
    for (const s of secure) {
      s.closeAllConnections();
      await new Promise<void>((r) => s.close(() => r()));
    }
  });
  for (const address of options.listen) {
    const s = createHttpsServer({ cert: tls!.certPem, key: tls!.keyPem, minVersion: 'TLSv1.2' }, (req, res) => http.routing(req, res));
    await new Promise<void>((resolve, reject) => {
      s.once('error', (e) => reject(new ServerError('LISTEN_ADDRESS_INVALID', `HTTPS cannot listen on ${address}:${port}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
      s.listen(port, address, () => resolve());
    });
    secure.push(s);
    httpUrls.push(`https://${hostPart(address)}:${port}`);
  }
  const mqttPort = bus instanceof EmbeddedBroker ? bus.port : null;
  const mqttUrls =
    bus instanceof EmbeddedBroker ? [`mqtt://${hostPart(options.host)}:${mqttPort}`, ...options.listen.map((a) => `mqtts://${hostPart(a)}:${mqttPort}`)] : [options.mqttUrl!];
  await writeEndpoints(paths, {
    probeHttp: httpUrls[1] ?? httpUrls[0]!,
    probeMqtt: mqttUrls[1] ?? mqttUrls[0]!,
    http: httpUrls[0]!,
    mqtt: mqttUrls[0]!,
    https: httpUrls.slice(1),
    mqtts: bus instanceof EmbeddedBroker ? mqttUrls.slice(1) : [],
  });

  // 5. Background work, and the modules.
  const stuck = new StuckCheck(store, webhooks, log.child({ component: 'stuck-check' }), options.stuckAfterMs, options.stuckCheckEveryMs);
  stuck.start();
  cleanups.push(() => stuck.stop());
  const retention = new RetentionJob(store, retentionPolicy(options), log.child({ component: 'retention' }), options.retentionEveryMs);
  retention.start();
  cleanups.push(() => retention.stop());
  for (const m of modules) {
    if (m.stop) cleanups.push(() => m.stop!());
    await m.start?.(context);
  }
  // Last, once every listener is up: a first start that fails (a port taken) must not make the
  // one admin token that is ever printed, or the folder would hold an admin nobody can log in as.
  const adminToken = await initialiseOnce(store);
  log.info({ http: httpUrls, mqtt: mqttUrls, data: paths.root }, 'server started');

  let closing: Promise<void> | null = null;
  return {
    context,
    http,
    httpUrls,
    mqttUrls,
    port,
    mqttPort,
    adminToken,
    close: () => {
      closing ??= cleanup().then(() => log.info('server stopped'));
      return closing;
    },
  };
}

/** The first start of a data directory makes the admin token; later starts return null. */
async function initialiseOnce(store: Store): Promise<string | null> {
  if (await store.settings.get(INITIALISED_SETTING)) return null;
  const secret = newTokenSecret();
  await store.tokens.create({ id: newTokenId(), kind: 'staff', name: 'admin', role: 'admin', probeId: null, hash: hashToken(secret) });
  await store.settings.set(INITIALISED_SETTING, new Date().toISOString());
  return secret;
}

function registerGauges(metrics: Metrics, store: Store, ingest: IngestQueue, bus: Bus): void {
  metrics.gauge('sonde_probes', 'Enrolled probes, by connection state', async () => {
    const c = await store.probes.counts();
    return { online: c.online, offline: c.total - c.online };
  }, 'status', ['online', 'offline']);
  metrics.gauge('sonde_probes_by_version', 'Enrolled probes, by the release version they last reported (none: no state yet)', () => store.probes.countsBy('version'), 'version');
  metrics.gauge('sonde_probes_by_health', 'Enrolled probes, by the health they last reported (none: no state yet)', () => store.probes.countsBy('health'), 'health', [
    'ok',
    'degraded',
    'down',
    'unknown',
    'none',
  ]);
  metrics.gauge('sonde_packs', 'Packs in the store', async () => (await store.packs.list()).length);
  metrics.gauge('sonde_commands', 'Commands, by status', () => store.commands.countsByStatus(), 'status', COMMAND_STATUSES);
  metrics.gauge('sonde_ingest_queue_depth', 'Messages waiting for the next ingest transaction', () => ingest.depth);
  metrics.gauge('sonde_mqtt_clients', 'Clients connected to the embedded broker (0 with an external broker)', () => bus.clients() ?? 0);
}

function hostPart(address: string): string {
  return address.includes(':') ? `[${address}]` : address;
}
