/**
 * MQTT topics, version 1 (DESIGN.md, "Fleet server" -> topics; docs/mqtt.md). The probe id is the
 * MQTT username and client id, so brokers can confine each probe to its own topics with
 * `%u` pattern ACLs.
 */
export const TOPIC_PREFIX = 'sonde/v1/probes';

export const PROBE_ID = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export const topics = {
  state: (probeId: string): string => `${TOPIC_PREFIX}/${probeId}/state`,
  events: (probeId: string): string => `${TOPIC_PREFIX}/${probeId}/events`,
  commands: (probeId: string): string => `${TOPIC_PREFIX}/${probeId}/commands`,
  /** What the server subscribes to. */
  allStates: `${TOPIC_PREFIX}/+/state`,
  allEvents: `${TOPIC_PREFIX}/+/events`,
} as const;

export type TopicKind = 'state' | 'events' | 'commands';

/** Splits a topic into probe id and kind; null for anything else. */
export function parseTopic(topic: string): { probeId: string; kind: TopicKind } | null {
  const parts = topic.split('/');
  if (parts.length !== 5 || `${parts[0]}/${parts[1]}/${parts[2]}` !== TOPIC_PREFIX) return null;
  const probeId = parts[3]!;
  const kind = parts[4];
  if (!PROBE_ID.test(probeId)) return null;
  if (kind !== 'state' && kind !== 'events' && kind !== 'commands') return null;
  return { probeId, kind };
}
