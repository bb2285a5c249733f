import type { DeploymentRecord, StoredEvent } from '../store/types.js';
import type { ReceiptView } from './response-schemas.js';

/**
 * A deployment's receipt as the server can tell it (the dashboard's probe page): each install
 * state the probe reported with when it entered it and how long it stayed, the outcome with its
 * code and message (the agent puts the app's last words there when the app died), and every event.
 */
export function receiptOf(d: { deployment: DeploymentRecord; events: readonly StoredEvent[] }): ReceiptView {
  const STEPS = new Set(['command-accepted', 'download-started', 'download-complete', 'download-failed', 'install-state', 'install-outcome']);
  const marks = d.events
    .filter((e) => STEPS.has(e.event.type))
    .map((e) => ({ state: e.event.type === 'install-state' ? (e.event.state ?? 'unknown') : e.event.type === 'install-outcome' ? (e.event.outcome ?? 'outcome') : e.event.type, at: e.event.at }));
  const steps = marks.map((m, i) => {
    const next = marks[i + 1];
    return { state: m.state, at: m.at, seconds: next ? Math.max(0, (Date.parse(next.at) - Date.parse(m.at)) / 1000) : null };
  });
  const o = [...d.events].reverse().find((e) => e.event.type === 'install-outcome');
  return {
    deployment: d.deployment,
    steps,
    outcome: o ? { outcome: o.event.outcome ?? 'failed', code: o.event.code ?? null, message: o.event.message ?? null, at: o.event.at } : null,
    events: d.events.map((e) => ({ ...e.event, receivedAt: e.receivedAt })),
  };
}
