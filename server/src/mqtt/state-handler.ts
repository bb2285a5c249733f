import { parseMessage, stateSchema } from '../../../base/src/protocol/messages.js';
import type { HandlerContext } from './router.js';

/**
 * `sonde/v1/probes/{id}/state`: parsed with the shared schema; a state that names another probe
 * than its topic is dropped (the broker checked the topic against the login, not the payload).
 */
export function handleState(probeId: string, payload: Buffer, mark: number, ctx: HandlerContext): void {
  const r = parseMessage(stateSchema, payload);
  if (!r.ok) {
    ctx.refuse('state', probeId, r.code, r.message);
    return;
  }
  if (r.value.probeId !== probeId) {
    ctx.refuse('state', probeId, 'MESSAGE_PROBE_MISMATCH', `the state names probe ${r.value.probeId}`);
    return;
  }
  ctx.metrics.mqttMessages.inc({ kind: 'state', result: 'accepted' });
  ctx.ingest.addState(probeId, r.value, mark);
}
