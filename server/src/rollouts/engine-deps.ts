import type { Logger } from 'pino';
import type { ServerContext } from '../context.js';
import type { RolloutRepository } from './rollout-repository.js';

/** What the engine's parts (engine.ts: the queue and the tick; sending.ts; reports.ts) share. */
export interface EngineDeps {
  readonly ctx: ServerContext;
  /** The rollouts' store; every write announced to the dashboard's change feed (heard-repository.ts). */
  readonly repo: RolloutRepository;
  readonly log: Logger;
  readonly now: () => Date;
  /** Targets handled per chunk, with a turn of the event loop between chunks. */
  readonly chunkSize: number;
  /** True once the engine is stopping: long loops end early. */
  readonly stopped: () => boolean;
}

/** The most rollouts (and, times ten, targets) one read takes. */
export const PAGE = 10_000;
