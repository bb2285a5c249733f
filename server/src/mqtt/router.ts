import type { Logger } from 'pino';
import { assertNever } from '../../../base/src/errors/sonde-error.js';
import { parseTopic } from '../../../base/src/protocol/topics.js';
import type { IngestQueue } from '../inventory/ingest-queue.js';
import type { Metrics } from '../metrics/registry.js';
import type { MessageHandler } from './bus.js';
import { handleEvent } from './events-handler.js';
import { handleState } from './state-handler.js';

/** What the per-topic handlers share. */
export interface HandlerContext {
  readonly ingest: IngestQueue;
  readonly metrics: Metrics;
  refuse(kind: 'state' | 'events', probeId: string, code: string, detail: string): void;
}

/** One warning per probe and code per minute: a misbehaving fleet must not flood the log. */
const LOG_EVERY_MS = 60_000;

/** Routes each probe message to the handler of its topic (one handler per topic, after aedes). */
export function messageRouter(ingest: IngestQueue, metrics: Metrics, log: Logger): MessageHandler {
  const lastLogged = new Map<string, number>();
  const ctx: HandlerContext = {
    ingest,
    metrics,
    refuse(kind, probeId, code, detail) {
      metrics.mqttMessages.inc({ kind, result: 'refused' });
      const key = `${probeId}\u0000${code}`;
      const now = Date.now();
      if ((lastLogged.get(key) ?? 0) + LOG_EVERY_MS > now) return;
      if (lastLogged.size > 10_000) lastLogged.clear();
      lastLogged.set(key, now);
      // The payload is never logged: it may hold anything.
      log.warn({ code, probeId, topic: kind, detail: detail.slice(0, 200) }, 'mqtt message refused');
    },
  };
  return (topic, payload, mark) => {
    const t = parseTopic(topic);
    if (!t) return;
    switch (t.kind) {
      case 'state':
        handleState(t.probeId, payload, mark, ctx);
        return;
      case 'events':
        handleEvent(t.probeId, payload, mark, ctx);
        return;
      case 'commands':
        // Only the server publishes commands; nothing to ingest.
        return;
      default:
        assertNever(t.kind, 'topic kind');
    }
  };
}
