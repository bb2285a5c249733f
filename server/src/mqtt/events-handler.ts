import { eventSchema, parseMessage } from '../../../base/src/protocol/messages.js';
import type { HandlerContext } from './router.js';

/**
 * `sonde/v1/probes/{id}/events`: parsed with the shared schema and queued in arrival order; the
 * ingest drops a duplicate by its event id. An event naming another probe is dropped.
 */
export function handleEvent(probeId: string, payload: Buffer, mark: number, ctx: HandlerContext): void {
  const r = parseMessage(eventSchema, payload);
  if (!r.ok) {
    ctx.refuse('events', probeId, r.code, r.message);
    return;
  }
  if (r.value.probeId !== probeId) {
    ctx.refuse('events', probeId, 'MESSAGE_PROBE_MISMATCH', `the event names probe ${r.value.probeId}`);
    return;
  }
  ctx.metrics.mqttMessages.inc({ kind: 'events', result: 'accepted' });
  ctx.ingest.addEvent(probeId, r.value, mark);
}
