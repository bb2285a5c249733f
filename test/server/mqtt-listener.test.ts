import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MQTT_ACCEPT_BACKLOG } from '../../server/src/mqtt/embedded-broker.js';
import { startTestServer, type TestServer } from './harness.js';

/**
 * When a whole fleet reconnects at once, the connections wait in the MQTT listener's accept queue
 * until the broker takes them. With Node's default queue (511) the kernel dropped the SYNs past it
 * and those probes waited for retransmits past their connect timeout (bench/fleet's storm).
 */
let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s.close());

describe('the embedded broker listener', () => {
  it('has an accept queue as long as the kernel allows (net.core.somaxconn), not the default 511', () => {
    const port = new URL(s.mqttUrl).port;
    // For a listening socket, ss shows the accept queue's length in the Send-Q column.
    const line = execFileSync('ss', ['-ltnH', `sport = :${port}`], { encoding: 'utf8' }).trim().split('\n')[0]!;
    const queue = Number(line.trim().split(/\s+/)[2]);
    const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'));
    expect(queue).toBe(Math.min(MQTT_ACCEPT_BACKLOG, somaxconn));
  });
});
