import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { AGENT_CONFIG, labAgentConfig } from '../../images/src/lab/probe-image.js';
import { Lab } from '../../lxc/src/lab.js';
import { median } from './measure.js';

/**
 * bench/idle-traffic (issue 24): what an idle probe costs its link, from the probe's own
 * interface counters (the host end of its veth: every byte in and out of the container, Ethernet
 * headers included), over the lab's real MQTTS link to the lab's fleet server.
 *
 * Two probes of the lab: one on the agent's defaults, one on the `metered` profile (their agent
 * configs rewritten, then the probes restarted). After they reconnect and settle, the counters are
 * sampled every second for --minutes. Every second with traffic is one exchange (a keepalive, a
 * state publish); the bench measures the bytes of each kind and counts them:
 *
 * - a month "by the window": the window's bytes scaled to 30 days. Exact for what happened, but a
 *   5-minute window holds a keepalive of a 5-minute cadence once, and one of a 20-minute cadence
 *   with a 1-in-4 chance, and no hourly state at all;
 * - a month "by the cadence": the keepalives and full states a month holds at the probe's
 *   settings, each at its measured size (a keepalive as measured in the window: on the defaults'
 *   probe if the metered one had none; a full state as measured by asking each probe for one with
 *   `report-now` at the end, the command's own bytes counted in). This is the figure the targets
 *   are judged by (defaults <= 5 MB, metered <= 1 MB; MB = 10^6 bytes).
 */
const SONDE = resolve('dist/cli/src/sonde.js');
const MONTH_S = 30 * 86_400;
const MB = 1e6;

const PROFILES = {
  defaults: { profile: 'default', keepaliveSeconds: 300, stateIntervalMs: 3_600_000 },
  metered: { profile: 'metered', keepaliveSeconds: 1200, stateIntervalMs: 21_600_000 },
} as const;
type Which = keyof typeof PROFILES;

function sonde(args: string[], home: string): Promise<string> {
  return new Promise((done, fail) => {
    execFile(process.execPath, [SONDE, ...args], { env: { ...process.env, SONDE_LAB_HOME: home, SONDE_SERVER: '', SONDE_TOKEN: '' }, maxBuffer: 8 << 20, timeout: 600_000 }, (err, stdout, stderr) => {
      if (err) fail(new Error(`sonde ${args.join(' ')} failed: ${stderr.trim().split('\n').slice(-3).join(' / ')}`));
      else done(stdout);
    });
  });
}

async function counters(veth: string): Promise<number> {
  const read = async (f: string): Promise<number> => Number(await readFile(`/sys/class/net/${veth}/statistics/${f}`, 'utf8'));
  return (await read('rx_bytes')) + (await read('tx_bytes'));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Observed {
  bytes: number;
  /** Bytes of each second that had traffic, in order. */
  bursts: number[];
}

async function observe(veths: Record<Which, string>, seconds: number): Promise<Record<Which, Observed>> {
  const out: Record<Which, Observed> = { defaults: { bytes: 0, bursts: [] }, metered: { bytes: 0, bursts: [] } };
  const last: Record<Which, number> = { defaults: await counters(veths.defaults), metered: await counters(veths.metered) };
  const t0 = Date.now();
  for (let i = 1; i <= seconds; i++) {
    await sleep(Math.max(0, t0 + i * 1000 - Date.now()));
    for (const w of ['defaults', 'metered'] as const) {
      const now = await counters(veths[w]);
      const d = now - last[w];
      last[w] = now;
      out[w].bytes += d;
      if (d > 0) out[w].bursts.push(d);
    }
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { minutes: { type: 'string', default: '5' }, home: { type: 'string' }, settle: { type: 'string', default: '30' } } });
  const minutes = Number(values.minutes);
  if (!(minutes > 0)) throw new Error('--minutes: a positive number');
  const home = values.home ? resolve(values.home) : await mkdtemp(join(tmpdir(), 'sonde-bench-idle-'));
  const name = `idle${process.pid % 10000}`;
  console.log(`bench/idle-traffic: lab ${name} (home ${home}), 2 probes over MQTTS, ${minutes} min window, counters of each probe's veth`);
  try {
    await sonde(['lab', 'up', '--count', '2', '--line', 'stable', '--lab', name, '--timeout', '300'], home);
    const lab = await Lab.open(name, { home });
    const probes = (await lab.list()).probes;
    const byWhich = { defaults: probes[0]!, metered: probes[1]! };
    // Each probe's agent on the profile under test: stopped, its config given the profile (the
    // lab's quick settings removed), started again.
    for (const w of ['defaults', 'metered'] as const) await lab.stopProbe(byWhich[w].name, false);
    const client = (await lab.client())!;
    const until = async (what: string, ok: (online: boolean[]) => boolean): Promise<void> => {
      for (let i = 0; ; i++) {
        const seen = await client.probes();
        if (ok(probes.map((p) => seen.get(p.name)?.online === true))) return;
        if (i > 240) throw new Error(`the probes were never ${what}`);
        await sleep(500);
      }
    };
    await until('offline', (o) => o.every((x) => !x));
    for (const w of ['defaults', 'metered'] as const) {
      const path = join(lab.upperOf(byWhich[w].name), AGENT_CONFIG.slice(1));
      const config = { ...labAgentConfig() } as Record<string, unknown>;
      delete config['report'];
      delete config['mqtt'];
      config['profile'] = PROFILES[w].profile;
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, `${JSON.stringify(config, null, 2)}\n`);
    }
    for (const w of ['defaults', 'metered'] as const) await lab.startProbe(byWhich[w].name);
    await until('back online', (o) => o.every(Boolean));
    console.log(`  both probes reconnected on their profiles; settling ${values.settle} s`);
    await sleep(Number(values.settle) * 1000);

    const veths = { defaults: byWhich.defaults.veth, metered: byWhich.metered.veth };
    const window = await observe(veths, Math.round(minutes * 60));
    // One full state each, asked for: its burst is the size of a state publish (plus the command).
    for (const w of ['defaults', 'metered'] as const) await client.api.json('POST', `/api/v1/probes/${byWhich[w].name}/commands`, { type: 'report-now' });
    const asked = await observe(veths, 5);

    const keepaliveBytes: Record<Which, number | null> = { defaults: null, metered: null };
    for (const w of ['defaults', 'metered'] as const) {
      const b = window[w].bursts;
      keepaliveBytes[w] = b.length > 0 ? median(b) : null;
    }
    const results: Record<Which, number> = { defaults: 0, metered: 0 };
    for (const w of ['defaults', 'metered'] as const) {
      const o = window[w];
      const p = PROFILES[w];
      const ka = keepaliveBytes[w] ?? keepaliveBytes.defaults ?? 0;
      const state = asked[w].bytes;
      const byWindow = (o.bytes / (minutes * 60)) * MONTH_S;
      const byCadence = (MONTH_S / p.keepaliveSeconds) * ka + (MONTH_S / (p.stateIntervalMs / 1000)) * state;
      results[w] = byCadence;
      console.log(
        `  ${w.padEnd(8)} window: ${o.bytes} B in ${o.bursts.length} exchange(s) [${o.bursts.join(', ')}]; ` +
          `keepalive exchange ${ka} B${keepaliveBytes[w] === null ? ' (none in the window: the defaults probe\'s)' : ''}, full state ${state} B (with its report-now)`,
      );
      console.log(
        `  ${w.padEnd(8)} month by the window ${(byWindow / MB).toFixed(2)} MB; by the cadence (keepalive ${p.keepaliveSeconds} s, full state every ${p.stateIntervalMs / 3_600_000} h) ${(byCadence / MB).toFixed(2)} MB; target ${w === 'defaults' ? 5 : 1} MB: ${byCadence / MB <= (w === 'defaults' ? 5 : 1) ? 'met' : 'NOT met'}`,
      );
    }
    console.log(`defaults: ${(results.defaults / MB).toFixed(2)} MB/month per probe, metered: ${(results.metered / MB).toFixed(2)} MB/month per probe`);
  } finally {
    await sonde(['lab', 'down', '--all', '--lab', name], home).catch(() => undefined);
    if (!values.home) await rm(home, { recursive: true, force: true });
  }
}

await main();
