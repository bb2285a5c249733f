/**
 * The fleet server's public surface (issue 5): start it, and the seams other modules build on.
 *
 * For the rollouts module:
 *  - ServerModule / ServerContext: register routes and background work (modules.ts lists them);
 *  - ctx.probes.match(target): the probe ids a channel / group / tag / explicit list addresses;
 *  - ctx.commands.sendMany(ids, { type: 'install', packSha256 }, { rolloutId }), onChange(),
 *    forRollout(), cancel(): commands kept until acknowledged, redelivered to returning probes;
 *  - ctx.store.packs.pin/unpin(sha256, 'rollout:<id>'): keep a pack from garbage collection;
 *  - ctx.webhooks.notify('rollout.paused', {...}); ctx.audit({...});
 *  - MIGRATIONS (store/migrations.ts) for its tables; TRANSFER_SECTIONS for export/import.
 */
export { startServer, type RunningServer, type StartOptions } from './server.js';
export { parseServerOptions, DEFAULT_PORT, type ServerOptions, type ServerOptionsInput } from './options.js';
export type { ServerContext, ServerModule, RouteDoc } from './context.js';
export { DEFAULT_MODULES } from './modules.js';
export { CommandService, newCommandId, type CommandSpec, type CommandListener, type SendOptions } from './commands/command-service.js';
export { ProbeService, type EnrollmentFile, type ProbeDetail } from './inventory/probe-service.js';
export { IngestQueue, type IngestListener } from './inventory/ingest-queue.js';
export { PackService } from './packs/pack-service.js';
export { Webhooks, WEBHOOK_URL_SETTING, type WebhookPayload } from './webhooks/webhook.js';
export { MIGRATIONS, type Migration } from './store/migrations.js';
export { SqliteStore } from './store/sqlite-store.js';
export { TRANSFER_SECTIONS, type TransferSection } from './transfer/sections.js';
export { ServerError, SERVER_CODES, type ServerCode } from './errors.js';
export * from './store/types.js';
