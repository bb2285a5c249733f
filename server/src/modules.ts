import type { ServerModule } from './context.js';
import { diagnosticsModule } from './diagnostics/module.js';
import { rolloutsModule } from './rollouts/module.js';

/**
 * The modules every `sonde server` runs beside the core. The rollouts module (issue 5, staged
 * rollouts) is added here: it gets the store, the commands service (send, sendMany, onChange),
 * the probe matching (probes.match) and the webhook through its ServerContext. The diagnostics
 * module: remote diagnostics bundles (request, upload by the probe, list, download).
 */
export const DEFAULT_MODULES: readonly ServerModule[] = Object.freeze([rolloutsModule(), diagnosticsModule()]);
