import type { ServerContext, ServerModule } from '../context.js';
import { registerRolloutRoutes, ROLLOUT_ROUTES } from '../http/rollouts.js';
import { RolloutEngine, type EngineOptions } from './engine.js';
import { ROLLOUT_STATES } from './machine.js';
import { RolloutService } from './rollout-service.js';

/**
 * The rollouts module (issue 5, Rollouts): its routes, its engine, and the `sonde_rollouts`
 * gauge. One module object may serve several servers in one process (the tests start more than
 * one), so each server's engine is kept by its context; it stops when that server's HTTP side
 * closes, which server.ts does before it closes the bus, the ingest and the store.
 */
const running = new WeakMap<ServerContext, RolloutService>();

export function rolloutsModule(options: EngineOptions = {}): ServerModule {
  return {
    name: 'rollouts',
    routes: ROLLOUT_ROUTES,
    register(ctx, http) {
      const service = new RolloutService(ctx, new RolloutEngine(ctx, options));
      running.set(ctx, service);
      registerRolloutRoutes(http, service);
      http.addHook('onClose', async () => {
        await service.engine.stop();
        running.delete(ctx);
      });
      ctx.metrics.gauge('sonde_rollouts', 'Rollouts, by state', () => ctx.store.rollouts.countByState(), 'state', ROLLOUT_STATES);
    },
    async start(ctx) {
      await running.get(ctx)?.engine.start();
    },
  };
}

/** The rollout service of a running server (tests, and modules that build on rollouts). */
export function rolloutServiceOf(ctx: ServerContext): RolloutService | null {
  return running.get(ctx) ?? null;
}
