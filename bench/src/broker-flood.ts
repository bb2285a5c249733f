#!/usr/bin/env node
/**
 * bench/broker-flood (issue 18): the fleet server's memory under an unauthenticated MQTT flood.
 * It starts `sonde server` on a fresh data directory (loopback ports), then opens `--sockets`
 * connections to the embedded broker at once; each sends a CONNECT fixed header that declares
 * 256 MiB, then writes 64 KiB pieces as fast as the socket takes them, until the server closes it,
 * and connects again, for `--seconds`. It samples the server's VmRSS every 100 ms and prints the
 * growth over the idle figure beside the target (< 20 MiB), with the bytes the flood offered.
 * Bounded: at most `--max-connections` connections and `--seconds` seconds; loopback only.
 * Usage: node dist/bench/src/broker-flood.js [--sockets 8] [--seconds 10] [--max-connections 20000] [--pace limit|none]
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { canConnect } from '../../base/src/net/can-connect.js';
import { ConnectLimiter, DEFAULT_CONNECT_LIMIT } from '../../server/src/mqtt/frame-guard.js';
import { benchArgs } from './bench-args.js';

const { arg, flag, num } = benchArgs('Usage: bench/broker-flood [--sockets 8] [--seconds 10] [--max-connections 20000] [--pace limit|none] [--header-only]', { values: ['max-connections', 'pace', 'seconds', 'sockets'], flags: ['header-only'] });
const sockets = num('sockets', 8, 1);
const seconds = num('seconds', 10, 1);
const maxConnections = num('max-connections', 20_000, 1);
/**
 * `limit` (the default): connections are paced as the broker's per-address limit paces one
 * attacker off loopback (DEFAULT_CONNECT_LIMIT), since the
 * server exempts loopback, where this benchmark runs. `none`: as fast as loopback allows.
 */
const pace = arg('pace', 'limit');
/** `--header-only`: each connection sends the 5-byte header and nothing more (what connection churn alone costs). */
const headerOnly = flag('header-only');
const TARGET_MIB = 20;
const sonde = fileURLToPath(new URL('../../cli/src/sonde.js', import.meta.url));

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0));
    });
  });
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? NaN) / 1024;
}

/** A CONNECT fixed header declaring 256 MiB - 1 (the largest length MQTT can state). */
const HEADER = Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]);
const JUNK = Buffer.alloc(64 * 1024, 0x61);

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'sonde-broker-flood-'));
  const [httpPort, mqttPort] = [await freePort(), await freePort()];
  let logLines = 0;
  const server = spawn(process.execPath, [sonde, 'server', '--data', join(dir, 'data'), '--port', String(httpPort), '--mqtt-port', String(mqttPort)], { stdio: ['ignore', 'pipe', 'pipe'] });
  for (const out of [server.stdout, server.stderr]) out.on('data', (d: Buffer) => (logLines += d.toString().split('\n').length - 1));
  try {
    const started = Date.now();
    while (!(await canConnect(mqttPort))) {
      if (Date.now() - started > 30_000) throw new Error('the server did not listen within 30 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 2000));
    const idle = rssMiB(server.pid!);
    let peak = idle;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(server.pid!))), 100);
    let offered = 0;
    let connections = 0;
    let closedByServer = 0;
    const deadline = Date.now() + seconds * 1000;
    const pacer = new ConnectLimiter({ ...DEFAULT_CONNECT_LIMIT, exemptLoopback: false });
    const worker = async (): Promise<void> => {
      while (Date.now() < deadline && connections < maxConnections) {
        if (pace === 'limit' && !pacer.admit('attacker')) {
          await new Promise((r) => setTimeout(r, 10));
          continue;
        }
        connections++;
        await new Promise<void>((resolve) => {
          const s = connect(mqttPort, '127.0.0.1');
          const stop = setTimeout(() => s.destroy(), Math.max(0, deadline - Date.now()));
          s.on('error', () => undefined);
          s.on('close', () => {
            clearTimeout(stop);
            if (Date.now() < deadline) closedByServer++;
            resolve();
          });
          s.on('connect', () => {
            s.write(HEADER);
            offered += HEADER.length;
            const pump = (): void => {
              while (!headerOnly && !s.destroyed && s.write(JUNK)) offered += JUNK.length;
            };
            s.on('drain', pump);
            pump();
          });
        });
      }
    };
    await Promise.all(Array.from({ length: sockets }, worker));
    await new Promise((r) => setTimeout(r, 500));
    clearInterval(sampler);
    peak = Math.max(peak, rssMiB(server.pid!));
    const growth = peak - idle;
    console.log(`broker-flood: ${sockets} sockets for ${seconds} s on 127.0.0.1:${mqttPort}, each CONNECT declaring 256 MiB${headerOnly ? ' (the header only)' : ''}, reconnects paced: ${pace === 'limit' ? `as the per-address limit paces an attacker (burst ${DEFAULT_CONNECT_LIMIT.burst}, ${DEFAULT_CONNECT_LIMIT.perSecond}/s)` : 'none'}`);
    console.log(`  offered                    ${(offered / 1024 / 1024).toFixed(1)} MiB over ${connections} connections (${closedByServer} closed by the server)`);
    console.log(`  server RSS idle / peak     ${idle.toFixed(1)} / ${peak.toFixed(1)} MiB`);
    console.log(`  growth                     ${growth.toFixed(1)} MiB   (target < ${TARGET_MIB} MiB: ${growth < TARGET_MIB ? 'met' : 'NOT met'})`);
    console.log(`  server log lines           ${logLines} (the broker logs one line per 10 s of flood, with a count)`);
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
