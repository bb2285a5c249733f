import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { topics } from '../../../base/src/protocol/topics.js';
import { ServerError } from '../errors.js';
import type { Bus, MessageHandler } from './bus.js';
import { SERVER_MQTT_USER } from './identity.js';

/**
 * `--mqtt-url`: an external broker (Mosquitto, EMQX) instead of the embedded one. The server logs
 * in as its privileged user (`sonde-server`, password in `<data>/mqtt-server.secret`) and
 * subscribes to every probe's state and events; the broker's own ACLs (mosquitto-config.ts)
 * confine the probes. The session is persistent (clean: false, a fixed client id), so QoS 1
 * messages published while the server restarts wait for it at the broker.
 */
export { SERVER_MQTT_USER } from './identity.js';

export interface ExternalBusOptions {
  readonly url: string;
  readonly password: string;
  /** The CA that signed the broker's certificate, for mqtts:. */
  readonly ca?: string | undefined;
  readonly onMessage: MessageHandler;
  readonly log: Logger;
}

export class ExternalBus implements Bus {
  readonly kind = 'external' as const;

  private constructor(private readonly client: MqttClient) {}

  static async connect(o: ExternalBusOptions): Promise<ExternalBus> {
    let client: MqttClient;
    const where = new URL(o.url).host;
    try {
      client = await mqtt.connectAsync(
        o.url,
        {
          clientId: SERVER_MQTT_USER,
          username: SERVER_MQTT_USER,
          password: o.password,
          clean: false,
          protocolVersion: 4,
          reconnectPeriod: 1000,
          connectTimeout: 10_000,
          keepalive: 30,
          ...(o.ca ? { ca: o.ca, rejectUnauthorized: true } : {}),
        },
        false,
      );
    } catch (e) {
      throw new ServerError('MQTT_CONNECT_FAILED', `cannot log in to the MQTT broker at ${where} as ${SERVER_MQTT_USER}: ${(e as Error).message}`, { cause: e });
    }
    client.on('message', (topic, payload) => o.onMessage(topic, payload, performance.now()));
    client.on('offline', () => o.log.warn({ broker: where }, 'mqtt broker unreachable; reconnecting'));
    client.on('connect', () => o.log.info({ broker: where }, 'mqtt connected'));
    client.on('error', (e) => o.log.warn({ broker: where, err: e.message }, 'mqtt error'));
    const granted = await client.subscribeAsync([topics.allStates, topics.allEvents], { qos: 1 });
    if (granted.some((g) => g.qos === 128)) {
      await client.endAsync(true).catch(() => undefined);
      throw new ServerError('MQTT_CONNECT_FAILED', `the broker at ${where} refused the server's subscriptions: check the ACL for ${SERVER_MQTT_USER}`);
    }
    return new ExternalBus(client);
  }

  async publish(topic: string, payload: string | Buffer): Promise<void> {
    await this.client.publishAsync(topic, payload, { qos: 1, retain: false });
  }

  clients(): null {
    return null;
  }

  async close(): Promise<void> {
    await this.client.endAsync().catch(() => undefined);
  }
}
