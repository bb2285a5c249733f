import { parseTopic, PROBE_ID } from '../../../base/src/protocol/topics.js';

/**
 * What a probe may do on MQTT (issue 5, Security), whatever the broker: publish to its own state
 * and events topics, subscribe to its own commands topic, nothing else. The username is the probe
 * id; the embedded broker also demands client id = username, so no probe can take over another's
 * session. Mosquitto expresses the same with `%u` pattern ACLs (mosquitto-config.ts).
 */
export function probeMayPublish(probeId: string, topic: string): boolean {
  const t = parseTopic(topic);
  return t !== null && t.probeId === probeId && (t.kind === 'state' || t.kind === 'events');
}

/** Exactly its own commands topic: a wildcard filter would reach other probes' commands. */
export function probeMaySubscribe(probeId: string, filter: string): boolean {
  const t = parseTopic(filter);
  return t !== null && t.probeId === probeId && t.kind === 'commands';
}

export function isProbeId(s: string | undefined): s is string {
  return s !== undefined && PROBE_ID.test(s);
}
