/**
 * The server's own identity on an MQTT broker, and the names no probe may take. A probe's id is
 * its MQTT username and client id (base/src/protocol/topics.ts); one that equals the server's
 * user would share its password-file line and its ACL (`user sonde-server` reads every probe's
 * topics), so such ids are refused at enrollment and never written to a password file.
 */
export const SERVER_MQTT_USER = 'sonde-server';

/** Names kept for the server, the broker and the administrators: never a probe id. */
export const RESERVED_PROBE_IDS: ReadonlySet<string> = new Set([SERVER_MQTT_USER, 'sonde', 'server', 'broker', 'mosquitto', 'admin', 'root', 'anonymous']);

export function isReservedProbeId(id: string): boolean {
  return RESERVED_PROBE_IDS.has(id) || id.startsWith(`${SERVER_MQTT_USER}.`) || id.startsWith(`${SERVER_MQTT_USER}-`);
}
