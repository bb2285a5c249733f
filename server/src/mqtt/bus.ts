/**
 * The server's side of MQTT, whichever broker carries it: the embedded aedes broker
 * (embedded-broker.ts) or an external one such as Mosquitto (external-bus.ts). Messages from
 * probes come in through the handler given at start; commands go out through publish().
 */
export type MessageHandler = (topic: string, payload: Buffer, receivedAt: number) => void;

export interface Bus {
  readonly kind: 'embedded' | 'external';
  /**
   * Never retained (notes/fleet-facts.md: no retained per-probe messages). QoS 0 from the
   * embedded broker, QoS 1 to an external one (embedded-broker.ts says why).
   */
  publish(topic: string, payload: string | Buffer): Promise<void>;
  /** Connected MQTT clients, where the bus can tell (the embedded broker). */
  clients(): number | null;
  close(): Promise<void>;
}
