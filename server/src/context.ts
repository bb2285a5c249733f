import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { CommandService } from './commands/command-service.js';
import type { DataPaths } from './data-dir.js';
import type { IngestQueue } from './inventory/ingest-queue.js';
import type { ProbeService } from './inventory/probe-service.js';
import type { Metrics } from './metrics/registry.js';
import type { Bus } from './mqtt/bus.js';
import type { ServerOptions } from './options.js';
import type { PackService } from './packs/pack-service.js';
import type { AuditEntry, Store } from './store/types.js';
import type { Webhooks } from './webhooks/webhook.js';
import type { ChangeFeed } from './live/change-feed.js';

/**
 * What a running server hands its modules (the rollouts module first): the store, the services,
 * and the plumbing. A module registers its routes on the server's fastify instance; those routes
 * get the same access control, audit, body limits and error shape as the core ones, as long as
 * each declares `config: { access }`.
 */
export interface ServerContext {
  readonly options: ServerOptions;
  readonly paths: DataPaths;
  readonly store: Store;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly webhooks: Webhooks;
  readonly ingest: IngestQueue;
  readonly bus: Bus;
  readonly packs: PackService;
  readonly probes: ProbeService;
  readonly commands: CommandService;
  /** What changed, as it happens (the dashboard's live stream reads it; modules publish their own changes). */
  readonly changes: ChangeFeed;
  /** An audit entry for what a module does on its own (a rollout advancing, pausing itself). */
  audit(entry: Omit<AuditEntry, 'id' | 'at'>): Promise<void>;
}

/** A documented route, for the OpenAPI document (http/openapi.ts). */
export interface RouteDoc {
  readonly method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** OpenAPI style: `/api/v1/rollouts/{id}`. */
  readonly path: string;
  readonly summary: string;
  readonly access: string;
  readonly body?: unknown;
  readonly query?: unknown;
  readonly responses: Readonly<Record<string, string>>;
  /**
   * What each 2xx answer carries: a zod schema (http/response-schemas.ts) for JSON, or the media
   * type of a body that is not JSON (`application/gzip`). A 204 carries nothing.
   */
  readonly returns?: Readonly<Record<string, unknown>>;
  readonly tag: string;
  /** Request headers the route reads (name: what it means). */
  readonly requestHeaders?: Readonly<Record<string, string>>;
  /** Response headers it sets, by status (status: name: what it means). */
  readonly responseHeaders?: Readonly<Record<string, Readonly<Record<string, string>>>>;
}

export interface ServerModule {
  readonly name: string;
  /** Before the server listens: register routes, subscribe to commands.onChange, … */
  register?(ctx: ServerContext, http: FastifyInstance): Promise<void> | void;
  /** Once the server listens (resume work persisted before a restart). */
  start?(ctx: ServerContext): Promise<void> | void;
  stop?(): Promise<void> | void;
  /** The module's routes, for the OpenAPI document. */
  readonly routes?: readonly RouteDoc[];
}
