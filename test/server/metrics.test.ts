import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimProbe, startTestServer, waitFor, type TestServer } from './harness.js';

/**
 * `/metrics` as an operations team scrapes it (issue 23): prom-client's exposition, accepted by
 * Prometheus's own linter (`promtool check metrics`, Debian's prometheus package), with the
 * families the docs name, and no series that vanishes when its value goes to zero.
 */
const PROMTOOL = '/usr/bin/promtool';

function promtool(text: string): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(PROMTOOL, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('error', reject);
    c.on('close', (code) => resolve({ code, out }));
    c.stdin.end(text);
  });
}

/** Series (name and labels) of an exposition, without their values. */
function series(text: string): Set<string> {
  return new Set(
    text
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'))
      .map((l) => l.slice(0, l.lastIndexOf(' '))),
  );
}

function value(text: string, s: string): number | null {
  const line = text.split('\n').find((l) => l.startsWith(`${s} `));
  return line === undefined ? null : Number(line.slice(s.length + 1));
}

let s: TestServer;
const probes: SimProbe[] = [];
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(async () => {
  for (const p of probes) await p.close();
  await s.close();
});

async function scrape(): Promise<string> {
  const r = await s.api<string>('GET', '/metrics', { token: null });
  expect(r.status).toBe(200);
  expect(r.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  return r.raw.toString('utf8');
}

describe('GET /metrics', () => {
  it('passes promtool check metrics on a fresh server and on a busy one', async () => {
    expect(existsSync(PROMTOOL), `${PROMTOOL} is missing: scripts/setup.sh installs Debian's prometheus package`).toBe(true);
    const fresh = await promtool(await scrape());
    expect(fresh, fresh.out).toMatchObject({ code: 0 });
    expect(fresh.out.trim()).toBe('');
    const p = await SimProbe.connect(s.mqttUrl, await s.enroll('metrics-busy'));
    probes.push(p);
    await p.state({ version: '1.0.0', health: 'ok' });
    await p.event('install-outcome', { outcome: 'failed', code: 'HEALTH_CHECK_FAILED', deploymentId: 'd-1' });
    await s.api('GET', '/api/v1/probes');
    await s.api('GET', '/api/v1/no-such-route');
    await waitFor('the outcome in the metrics', async () => value(await scrape(), 'sonde_install_failures_total{code="HEALTH_CHECK_FAILED"}') === 1);
    const busy = await promtool(await scrape());
    expect(busy, busy.out).toMatchObject({ code: 0 });
    expect(busy.out.trim()).toBe('');
  });

  it('names what the operations team alerts on: build, process, probes by state, version and health, installs, rollouts, HTTP, MQTT', async () => {
    const text = await scrape();
    for (const family of [
      'sonde_build_info',
      'process_cpu_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_p99_seconds',
      'sonde_probes',
      'sonde_probes_by_version',
      'sonde_probes_by_health',
      'sonde_install_outcomes_total',
      'sonde_install_failures_total',
      'sonde_rollouts',
      'sonde_commands',
      'sonde_http_requests_total',
      'sonde_http_request_duration_seconds',
      'sonde_mqtt_connections_total',
      'sonde_mqtt_denied_total',
      'sonde_mqtt_clients',
    ]) {
      expect(text, family).toMatch(new RegExp(`^# TYPE ${family} `, 'm'));
    }
    expect(text).toMatch(/^sonde_build_info\{version="\d+\.\d+\.\d+[^"]*",node="\d+\.\d+\.\d+"\} 1$/m);
    expect(value(text, 'sonde_probes_by_version{version="1.0.0"}')).toBe(1);
    expect(value(text, 'sonde_probes_by_health{health="ok"}')).toBe(1);
    expect(value(text, 'sonde_install_outcomes_total{outcome="failed"}')).toBe(1);
    expect(value(text, 'sonde_install_outcomes_total{outcome="committed"}')).toBe(0);
    expect(value(text, 'sonde_rollouts{state="running"}')).toBe(0);
    expect(value(text, 'sonde_mqtt_connections_total')).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^sonde_http_request_duration_seconds_bucket\{le="[^"]+",method="GET",route="\/api\/v1\/probes"\} \d+$/m);
  });

  it('keeps every series when its value goes to zero: a version no probe runs any more reads 0, not absent', async () => {
    const p = await SimProbe.connect(s.mqttUrl, await s.enroll('metrics-moves'));
    probes.push(p);
    await p.state({ version: '1.1.0', health: 'degraded' });
    await waitFor('1.1.0 in the metrics', async () => value(await scrape(), 'sonde_probes_by_version{version="1.1.0"}') === 1);
    const before = await scrape();
    await p.state({ version: '1.2.0', health: 'ok' });
    await waitFor('1.2.0 in the metrics', async () => value(await scrape(), 'sonde_probes_by_version{version="1.2.0"}') === 1);
    const after = await scrape();
    expect(value(after, 'sonde_probes_by_version{version="1.1.0"}')).toBe(0);
    expect(value(after, 'sonde_probes_by_health{health="degraded"}')).toBe(0);
    const gone = [...series(before)].filter((x) => !series(after).has(x));
    expect(gone).toEqual([]);
  });

  it('a compromised probe cannot grow the output without bound: failure codes that are not code-shaped count as other', async () => {
    const p = await SimProbe.connect(s.mqttUrl, await s.enroll('metrics-hostile'));
    probes.push(p);
    for (let i = 0; i < 5; i++) await p.event('install-outcome', { outcome: 'failed', code: `junk ${i} <script>`, deploymentId: `d-h${i}` });
    await waitFor('the junk codes counted', async () => value(await scrape(), 'sonde_install_failures_total{code="other"}') === 5);
    const text = await scrape();
    expect(text).not.toContain('junk');
  });
});
