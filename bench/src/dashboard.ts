#!/usr/bin/env node
/**
 * bench/dashboard (issue 22, Performance): a fleet server seeded with N probes (10,000 by
 * default: real inventory rows, enrolled through the store, with states as agents publish them:
 * versions across three releases, a few degraded, down or offline, some with a failed last
 * deployment, groups and tags), and the dashboard in Debian's Chromium:
 *
 *  - first meaningful paint of the probes page: a fresh page load (signed in) to the first row
 *    of the table drawn, read in the page (performance.now() from navigation start), --loads times;
 *  - applying a filter or changing the page: from the hash change to the table showing the new
 *    result, --actions times, alternating filters, sorts and pages.
 *
 * Targets: first paint <= 1 s, filter/page p95 <= 200 ms. Nothing asserts.
 * Usage: node dist/bench/src/dashboard.js [--probes 10000] [--loads 10] [--actions 60] [--keep]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { hashToken, newTokenId, newTokenSecret } from '../../server/src/auth/tokens.js';
import { createDataDirs, dataPaths } from '../../server/src/data-dir.js';
import { startServer } from '../../server/src/server.js';
import { SqliteStore } from '../../server/src/store/sqlite-store.js';
import type { ProbeState } from '../../base/src/protocol/messages.js';
import { launch, signedInPage } from './dashboard-pages.js';
import { benchArgs } from './bench-args.js';

const { num, flag } = benchArgs('Usage: bench/dashboard [--probes 10000] [--loads 10] [--actions 60] [--keep]', { values: ['probes', 'loads', 'actions'], flags: ['keep'] });
const N = num('probes', 10_000, 1);
const LOADS = num('loads', 10, 1);
const ACTIONS = num('actions', 60, 1);
const keep = flag('keep');

/** The page's globals as the timing functions (run in the page) see them; the benchmarks have no DOM types. */
interface Doc {
  document: { querySelector(s: string): { hasAttribute(k: string): boolean } | null };
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] ?? Number.NaN;
};
const ms = (x: number) => `${x.toFixed(0)} ms`;
function line(label: string, value: string, note = ''): void {
  console.log(`${label.padEnd(46)} ${value.padEnd(22)} ${note}`);
}

/** A probe as the field has them: mostly current and healthy, some behind, a few in trouble. */
function stateOf(i: number, id: string, now: number): ProbeState {
  const version = i % 10 < 7 ? '1.1.1' : i % 10 < 9 ? '1.1.0' : '1.0.0';
  const health = i % 97 === 0 ? 'down' : i % 31 === 0 ? 'degraded' : 'ok';
  const failed = i % 53 === 0;
  return {
    v: 1,
    probeId: id,
    at: new Date(now - (i % 600) * 1000).toISOString(),
    agentVersion: '0.1.0',
    product: 'probe-app',
    version,
    appVersion: version,
    slot: i % 2 ? 'a' : 'b',
    dbVersion: 3,
    configVersion: 2,
    health,
    appRunning: health !== 'down',
    lastDeployment: {
      id: `d-${i}`,
      outcome: failed ? 'failed' : 'committed',
      errorCode: failed ? 'HEALTH_CHECK_FAILED' : null,
      version,
      at: new Date(now - 86_400_000).toISOString(),
    },
    busy: false,
    disk: { freeBytes: 8e9 - (i % 100) * 5e7, totalBytes: 16e9 },
    uptimeSeconds: 3600 + i,
    inbox: { waiting: 0, incomplete: 0 },
  };
}

async function seed(dataDir: string): Promise<string> {
  const paths = dataPaths(dataDir);
  await createDataDirs(paths);
  const store = SqliteStore.open(paths.db);
  const t0 = performance.now();
  const now = Date.now();
  try {
    const secret = newTokenSecret();
    await store.tokens.create({ id: newTokenId(), kind: 'staff', name: 'bench', role: 'operator', probeId: null, hash: hashToken(secret) });
    const states: { probeId: string; state: ProbeState; receivedAt: string }[] = [];
    store.sql.tx(() => {
      for (let i = 0; i < N; i++) {
        const id = `probe-${String(i).padStart(5, '0')}`;
        store.sql.run(`INSERT INTO probes (id, channel, enrolled_at, http_base, mqtt_hash, online) VALUES (?, ?, ?, NULL, NULL, ?)`, id, i % 20 === 0 ? 'beta' : 'stable', new Date(now - 90 * 86_400_000).toISOString(), i % 41 === 0 ? 0 : 1);
        store.sql.run('INSERT INTO probe_groups (probe_id, name) VALUES (?, ?)', id, `site-${i % 40}`);
        if (i % 3 === 0) store.sql.run('INSERT INTO probe_tags (probe_id, name) VALUES (?, ?)', id, `rack-${i % 12}`);
        states.push({ probeId: id, state: stateOf(i, id, now), receivedAt: new Date(now).toISOString() });
      }
    });
    for (let i = 0; i < states.length; i += 2000) await store.ingest({ states: states.slice(i, i + 2000), events: [] });
    line('seeded', `${N} probes`, `(${((performance.now() - t0) / 1000).toFixed(1)} s: rows, groups, tags, then states through store.ingest)`);
    return secret;
  } finally {
    await store.close();
  }
}

async function main(): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'sonde-bench-dashboard-'));
  const token = await seed(join(work, 'data'));
  const server = await startServer({ dataDir: join(work, 'data'), port: 0, logLevel: 'warn' }, { logger: pino({ level: 'warn' }) });
  const url = server.httpUrls[0]!;
  const browser = await launch();
  try {
    const page = await signedInPage(browser, url, token, '#/probes');
    await page.waitForSelector('#probes tbody tr');

    // First meaningful paint: a fresh load of the probes page, to its first row drawn.
    const paints: number[] = [];
    for (let i = 0; i < LOADS; i++) {
      await page.goto('about:blank');
      await page.goto(`${url}/#/probes`);
      const t = (
        await page.waitForFunction(() => ((globalThis as unknown as Doc).document.querySelector('#probes tbody tr') ? performance.now() : false), null, { polling: 'raf', timeout: 30_000 })
      ).jsonValue();
      paints.push(Number(await t));
    }
    line('probes page: first paint, median / p95 / max', `${ms(pct(paints, 50))} / ${ms(pct(paints, 95))} / ${ms(Math.max(...paints))}`, `(target <= 1 s; ${LOADS} fresh loads of ${N} probes, 50 a page)`);

    // Filters, sorts and pages, each from the hash change to the table showing its result.
    const steps = [
      'health=degraded',
      'health=degraded&page=2',
      'q=site-1',
      'q=site-1&page=5',
      'version=1.0.0&sort=lastSeen&order=desc',
      'sort=version&order=desc&page=40',
      'outcome=failed',
      'online=false',
      'page=100',
      'tag=rack-3&sort=health',
    ];
    const took: number[] = [];
    for (let i = 0; i < ACTIONS; i++) {
      const q = steps[i % steps.length]!;
      const marker = `${i}`;
      await page.evaluate(([hash, m]) => {
        const w = globalThis as unknown as { __t0: number; __m: string; location: { hash: string }; document: { querySelector(s: string): { setAttribute(k: string, v: string): void } | null } };
        // The table on screen now is the old one: the new view draws a new table.
        w.document.querySelector('#probes')?.setAttribute('data-old', '1');
        w.__t0 = performance.now();
        w.__m = m!;
        w.location.hash = hash!;
      }, [`/probes?${q}&_=${marker}`, marker]);
      const handle = await page.waitForFunction(
        () => {
          const w = globalThis as unknown as Doc & { __t0: number; __m: string; location: { hash: string } };
          const t = w.document.querySelector('#probes');
          return t && !t.hasAttribute('data-old') && w.location.hash.endsWith(`_=${w.__m}`) ? performance.now() - w.__t0 : false;
        },
        null,
        { polling: 'raf', timeout: 30_000 },
      );
      took.push(Number(await handle.jsonValue()));
    }
    line('filter / sort / page: median / p95 / max', `${ms(pct(took, 50))} / ${ms(pct(took, 95))} / ${ms(Math.max(...took))}`, `(target p95 <= 200 ms; ${ACTIONS} actions over ${steps.length} kinds, timed in the page to the new table drawn)`);
  } finally {
    await browser.close();
    await server.close();
    if (!keep) await rm(work, { recursive: true, force: true });
    else console.log(`kept ${work}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
