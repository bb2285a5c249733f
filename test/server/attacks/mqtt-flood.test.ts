import { connect, type Socket } from 'node:net';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmbeddedBroker } from '../../../server/src/mqtt/embedded-broker.js';
import { MqttFrameGuard } from '../../../server/src/mqtt/frame-guard.js';
import { Metrics } from '../../../server/src/metrics/registry.js';
import { SimProbe, startTestServer, type TestServer } from '../harness.js';

/**
 * Attack: someone on the MQTT port makes the broker hold memory before it knows who they are
 * (a CONNECT declaring hundreds of megabytes, trickled in), or an enrolled probe publishes a
 * packet far past any legitimate message, or one host opens connections as fast as it can.
 * The broker reads each packet's declared length and closes the connection at once when it is
 * over the limit; connection attempts per address go through a token bucket.
 */
let s: TestServer;
let port: number;

beforeAll(async () => {
  s = await startTestServer();
  port = Number(new URL(s.mqttUrl).port);
});
afterAll(() => s.close());

/** The fixed header of a packet of `type` declaring `length` bytes (MQTT 3.1.1, 2.2). */
function header(type: number, length: number): Buffer {
  const bytes = [type << 4];
  let n = length;
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    bytes.push(b);
  } while (n > 0);
  return Buffer.from(bytes);
}

/** Writes `first`, then junk in 64 KiB pieces for up to `ms`; resolves with the bytes written before the server closed. */
function flood(first: Buffer, ms: number): Promise<{ closed: boolean; written: number }> {
  return new Promise((resolve) => {
    const socket: Socket = connect(port, '127.0.0.1');
    let written = 0;
    let closed = false;
    const junk = Buffer.alloc(64 * 1024, 0x61);
    const stop = setTimeout(() => socket.destroy(), ms);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(stop);
      resolve({ closed, written });
    });
    socket.on('end', () => (closed = true));
    socket.on('connect', () => {
      socket.write(first);
      written += first.length;
      const pump = (): void => {
        while (!socket.destroyed && socket.write(junk)) written += junk.length;
      };
      socket.on('drain', pump);
      pump();
    });
    socket.on('close', () => (closed = closed || !socket.destroyed));
  });
}

describe('the embedded broker under an unauthenticated flood', () => {
  it('closes a connection whose CONNECT declares 200 MB, after reading little of it', async () => {
    const r = await flood(header(1, 200 * 1024 * 1024), 5000);
    // Closed by the server well before 5 s of writing at loopback speed would have finished.
    expect(r.written).toBeLessThan(64 * 1024 * 1024);
  });

  it('still serves an enrolled probe while it does so', async () => {
    const creds = await s.enroll('flood-bystander');
    const p = await SimProbe.connect(s.mqttUrl, creds);
    await p.close();
  });

  it('disconnects an enrolled probe that publishes a packet past the largest legitimate message', async () => {
    const creds = await s.enroll('flood-probe');
    const p = await SimProbe.connect(s.mqttUrl, creds);
    const closed = new Promise<void>((resolve) => p.client.stream.once('close', () => resolve()));
    // A PUBLISH header declaring 10 MiB, then its first bytes: the broker must not wait for the rest.
    p.client.stream.write(Buffer.concat([header(3, 10 * 1024 * 1024), Buffer.alloc(1024)]));
    await closed;
  });
});

describe('MqttFrameGuard', () => {
  it('follows packets split across chunks at any byte, and names the first one over its limit', () => {
    const g = new MqttFrameGuard({ firstPacket: 100, packet: 1000 });
    const stream = Buffer.concat([header(1, 50), Buffer.alloc(50), header(3, 900), Buffer.alloc(900), header(3, 1001)]);
    let why: string | null = null;
    for (let i = 0; i < stream.length && why === null; i += 7) why = g.feed(stream.subarray(i, i + 7));
    expect(why).toMatch(/packet 3 declares 1001 bytes; at most 1000/);
  });

  it('refuses a CONNECT over the pre-authentication limit, and a length field past 4 bytes', () => {
    expect(new MqttFrameGuard({ firstPacket: 100, packet: 1000 }).feed(header(1, 101))).toMatch(/before the client is authenticated/);
    expect(new MqttFrameGuard({ firstPacket: 100, packet: 1000 }).feed(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x01]))).toMatch(/longer than 4 bytes/);
  });
});

describe('connection attempts from one address', () => {
  it('are refused past the bucket, and the refusals are counted', async () => {
    const metrics = new Metrics();
    const broker = await EmbeddedBroker.start({
      host: '127.0.0.1',
      port: 0,
      authenticate: async () => false,
      onMessage: () => undefined,
      log: pino({ level: 'silent' }),
      metrics,
      connectLimit: { perSecond: 0.001, burst: 3, exemptLoopback: false },
    });
    try {
      const outcomes: boolean[] = [];
      for (let i = 0; i < 6; i++) {
        outcomes.push(
          await new Promise<boolean>((resolve) => {
            const c = connect(broker.port, '127.0.0.1');
            c.on('error', () => undefined);
            // Admitted: the broker waits for a CONNECT (kept open). Refused: closed at once.
            const t = setTimeout(() => {
              c.destroy();
              resolve(true);
            }, 300);
            c.on('close', () => {
              clearTimeout(t);
              resolve(false);
            });
          }),
        );
      }
      expect(outcomes).toEqual([true, true, true, false, false, false]);
      expect(await metrics.value(metrics.mqttDenied, { action: 'connect-rate' })).toBe(3);
    } finally {
      await broker.close();
    }
  });
});
