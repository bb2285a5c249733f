import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { AGENT_CONFIG, labAgentConfig } from '../../images/src/lab/probe-image.js';
import { Lab } from '../../lxc/src/lab.js';
import { median } from './measure.js';

/**
 * bench/idle-traffic (issue 24): what an idle probe costs its link, over the lab's real MQTTS link
 * to the lab's fleet server, from counters:
 *
 * - the probe's interface counters (the host end of its veth): every byte in and out of the
 *   container, Ethernet headers included, which also carries what the kernels send on their own
 *   (IPv6 router solicitations, ARP) whatever Sonde does;
 * - nftables counters on the host of the probe's IPv4 traffic with the server (14 bytes of
 *   Ethernet added per packet): Sonde's own bytes.
 *
 * Two probes: one on the agent's defaults, one on the `metered` profile (their agent configs
 * rewritten while stopped, then started). After they reconnect and settle, the counters are
 * sampled every second for --minutes. Each second with traffic to the server is one exchange: a
 * keepalive (PINGREQ, PINGRESP, an ACK) or a state publish. Two months are printed:
 *
 * - "by the window": the window's bytes scaled to 30 days. Exact for what happened, but a 5-minute
 *   window holds a 5-minute keepalive once, a 20-minute one with a 1-in-4 chance, and no hourly
 *   state at all;
 * - "by the cadence": the keepalives and full states a month holds at the profile's settings,
 *   each at its measured size (the keepalive exchange measured in the window, on the defaults'
 *   probe when the metered one had none; the full state measured by asking each probe for one
 *   with `report-now` at the end, the command's own bytes counted in). The targets are judged on
 *   this figure (defaults <= 5 MB, metered <= 1 MB; MB = 10^6 bytes).
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

async function ifaceBytes(veth: string): Promise<number> {
  const read = async (f: string): Promise<number> => Number(await readFile(`/sys/class/net/${veth}/statistics/${f}`, 'utf8'));
  return (await read('rx_bytes')) + (await read('tx_bytes'));
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((done, fail) => execFile(cmd, args, { maxBuffer: 8 << 20 }, (err, stdout, stderr) => (err ? fail(new Error(`${cmd} ${args.join(' ')}: ${stderr.trim()}`)) : done(stdout))));
}

/**
 * The probe's traffic with the fleet server only, counted by nftables on the host (the lab's
 * server listens there): every IPv4 packet from the probe's address into the host and from the host
 * to it, with 14 bytes of Ethernet header added per packet so that it compares with the
 * interface counters. The interface counters also carry what the kernels send on their own (IPv6
 * router solicitations, ARP), which no setting of Sonde changes.
 */
class SondeCounters {
  constructor(readonly table: string) {}

  static async create(probes: Record<Which, string>): Promise<SondeCounters> {
    const t = new SondeCounters(`sonde_idle_${process.pid}`);
    await run('nft', ['add', 'table', 'inet', t.table]);
    await run('nft', ['add', 'chain', 'inet', t.table, 'in', '{ type filter hook input priority -10; policy accept; }']);
    await run('nft', ['add', 'chain', 'inet', t.table, 'out', '{ type filter hook output priority -10; policy accept; }']);
    for (const w of ['defaults', 'metered'] as const) {
      await run('nft', ['add', 'rule', 'inet', t.table, 'in', 'ip', 'saddr', probes[w], 'counter', 'comment', `"${w}"`]);
      await run('nft', ['add', 'rule', 'inet', t.table, 'out', 'ip', 'daddr', probes[w], 'counter', 'comment', `"${w}"`]);
    }
    return t;
  }

  async read(): Promise<Record<Which, number>> {
    const json = JSON.parse(await run('nft', ['-j', 'list', 'table', 'inet', this.table])) as { nftables: { rule?: { comment?: string; expr: { counter?: { packets: number; bytes: number } }[] } }[] };
    const out: Record<Which, number> = { defaults: 0, metered: 0 };
    for (const item of json.nftables) {
      const rule = item.rule;
      const c = rule?.expr.find((e) => e.counter)?.counter;
      if (rule?.comment && c && (rule.comment === 'defaults' || rule.comment === 'metered')) out[rule.comment] += c.bytes + 14 * c.packets;
    }
    return out;
  }

  async remove(): Promise<void> {
    await run('nft', ['delete', 'table', 'inet', this.table]).catch(() => undefined);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Observed {
  /** Bytes between the probe and the server. */
  bytes: number;
  /** Bytes of each second that had such traffic, in order: each a keepalive exchange or a state. */
  bursts: number[];
  /** Every byte on the probe's link (its interface counters). */
  linkBytes: number;
}

async function observe(sonde: SondeCounters, veths: Record<Which, string>, seconds: number): Promise<Record<Which, Observed>> {
  const out: Record<Which, Observed> = { defaults: { bytes: 0, bursts: [], linkBytes: 0 }, metered: { bytes: 0, bursts: [], linkBytes: 0 } };
  let last = await sonde.read();
  const link0 = { defaults: await ifaceBytes(veths.defaults), metered: await ifaceBytes(veths.metered) };
  const t0 = Date.now();
  for (let i = 1; i <= seconds; i++) {
    await sleep(Math.max(0, t0 + i * 1000 - Date.now()));
    const now = await sonde.read();
    for (const w of ['defaults', 'metered'] as const) {
      const d = now[w] - last[w];
      out[w].bytes += d;
      if (d > 0) out[w].bursts.push(d);
    }
    last = now;
  }
  for (const w of ['defaults', 'metered'] as const) out[w].linkBytes = (await ifaceBytes(veths[w])) - link0[w];
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { minutes: { type: 'string', default: '5' }, home: { type: 'string' }, settle: { type: 'string', default: '30' } } });
  const minutes = Number(values.minutes);
  if (!(minutes > 0)) throw new Error('--minutes: a positive number');
  const home = values.home ? resolve(values.home) : await mkdtemp(join(tmpdir(), 'sonde-bench-idle-'));
  const name = `idle${process.pid % 10000}`;
  console.log(`bench/idle-traffic: lab ${name} (home ${home}), 2 probes over MQTTS, ${minutes} min window, interface and nftables counters`);
  let counters: SondeCounters | null = null;
  try {
    await sonde(['lab', 'up', '--count', '2', '--line', 'stable', '--lab', name, '--timeout', '300'], home);
    const lab = await Lab.open(name, { home });
    const probes = (await lab.list()).probes;
    if (probes.length !== 2) throw new Error(`the lab has ${probes.length} probes, not 2`);
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
    const ips = { defaults: byWhich.defaults.ip, metered: byWhich.metered.ip };
    counters = await SondeCounters.create(ips);
    console.log(`  both probes reconnected on their profiles; settling ${values.settle} s`);
    await sleep(Number(values.settle) * 1000);

    const veths = { defaults: byWhich.defaults.veth, metered: byWhich.metered.veth };
    const window = await observe(counters, veths, Math.round(minutes * 60));
    // One full state each, asked for: its burst is the size of a state publish (plus the command).
    // Each probe in turn, until its state has gone out (a burst of more than 500 bytes), at most 30 s.
    const asked: Record<Which, number> = { defaults: 0, metered: 0 };
    for (const w of ['defaults', 'metered'] as const) {
      const before = (await counters.read())[w];
      await client.api.json('POST', `/api/v1/probes/${byWhich[w].name}/commands`, { type: 'report-now' });
      for (let i = 0; i < 30 && (await counters.read())[w] - before < 500; i++) await sleep(1000);
      // The PUBACK's ACK and the like trail by a moment.
      await sleep(2000);
      asked[w] = (await counters.read())[w] - before;
    }

    // A keepalive exchange is the small burst (PINGREQ, PINGRESP, an ACK); a state is several hundred bytes more.
    const small = (w: Which): number[] => window[w].bursts.filter((x) => x < 500);
    const keepaliveBytes: Record<Which, number | null> = { defaults: small('defaults').length ? median(small('defaults')) : null, metered: small('metered').length ? median(small('metered')) : null };
    const results: Record<Which, number> = { defaults: 0, metered: 0 };
    for (const w of ['defaults', 'metered'] as const) {
      const o = window[w];
      const p = PROFILES[w];
      const ka = keepaliveBytes[w] ?? keepaliveBytes.defaults;
      if (ka === null) throw new Error('no keepalive exchange in the window: run with --minutes 5 or more');
      const state = asked[w];
      const perMonth = (bytes: number): number => (bytes / (minutes * 60)) * MONTH_S;
      const byCadence = (MONTH_S / p.keepaliveSeconds) * ka + (MONTH_S / (p.stateIntervalMs / 1000)) * state;
      results[w] = byCadence;
      console.log(
        `  ${w.padEnd(8)} window: ${o.bytes} B with the server in ${o.bursts.length} exchange(s) [${o.bursts.join(', ')}]; ${o.linkBytes} B on the link in all (the kernels' own IPv6 router solicitations and ARP included); ` +
          `keepalive exchange ${ka} B${keepaliveBytes[w] === null ? ' (none in the window: the defaults probe\'s)' : ''}, full state ${state} B (with its report-now)`,
      );
      console.log(
        `  ${w.padEnd(8)} month by the window: ${(perMonth(o.bytes) / MB).toFixed(2)} MB with the server, ${(perMonth(o.linkBytes) / MB).toFixed(2)} MB on the link; ` +
          `by the cadence (keepalive ${p.keepaliveSeconds} s, full state every ${p.stateIntervalMs / 3_600_000} h): ${(byCadence / MB).toFixed(2)} MB; target ${w === 'defaults' ? 5 : 1} MB: ${byCadence / MB <= (w === 'defaults' ? 5 : 1) ? 'met' : 'NOT met'}`,
      );
    }
    console.log(`defaults: ${(results.defaults / MB).toFixed(2)} MB/month per probe, metered: ${(results.metered / MB).toFixed(2)} MB/month per probe`);
  } finally {
    await counters?.remove();
    await sonde(['lab', 'down', '--all', '--lab', name], home).catch(() => undefined);
    if (!values.home) await rm(home, { recursive: true, force: true });
  }
}

await main();
