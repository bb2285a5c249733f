#!/usr/bin/env node
/**
 * bench/install (issue 3): a 256 MiB encrypted product pack of the sample app, from "received" to
 * "switched" (verified, staged into the inactive slot, database and config migrated on copies,
 * swapped in, pointer flipped), timed from the agent's own per-state timings. In the same run:
 * `sonde verify --key --extract` of the same pack (verify-only), and the reference pipeline,
 * `openssl dgst -sha256` of the pack followed by `tar -x` of the plain payload. The health window
 * is at its minimum (one check) and reported on its own line; peak RSS is the install process's.
 * Usage: node dist/bench/src/install.js [--size 256] [--runs 3] [--dir .bench/install]
 */
import { X509Certificate } from 'node:crypto';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { initCa, issueIntermediate, issueRecipient, issueSigner } from '../../images/src/keys/key-dir.js';
import { loadPrivateKey, makePlan, writePack } from '../../pack/src/index.js';
import { sampleRelease, writeReleaseRecipe } from '../../images/src/samples/index.js';
import { Engine } from '../../agent/src/update/engine.js';
import { makeDataset } from './dataset.js';
import { MB, median, remove, settle, spread, timed } from './measure.js';
import { benchArgs } from './bench-args.js';

const { arg, num } = benchArgs('Usage: bench/install [--size 256] [--runs 3] [--dir .bench/install]', { values: ['dir', 'runs', 'size'] });
const sizeMiB = num('size', 256, 1);
const runs = num('runs', 3, 1);
const work = resolve(arg('dir', '.bench/install'));
const sonde = fileURLToPath(new URL('../../cli/src/sonde.js', import.meta.url));

async function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => done(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

async function main(): Promise<void> {
  await remove(work);
  await mkdir(work, { recursive: true });
  const keys = join(work, 'keys');
  await initCa(keys);
  await issueIntermediate(keys);
  await issueSigner(keys);
  await issueRecipient(keys, { name: 'fleet' });
  const chainPem = (await readFile(join(keys, 'signer.crt'), 'utf8')).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];

  // The sample app's 1.0.0 product, with the benchmark payload inside its app folder.
  const recipe = join(work, 'recipe');
  await writeReleaseRecipe(recipe, sampleRelease('1.0.0'));
  const { files, bytes } = await makeDataset(join(recipe, 'app', 'share-data'), sizeMiB);
  const spk = join(work, 'product.spk');
  await writePack(await makePlan(recipe, {}), {
    out: spk,
    signer: { key: await loadPrivateKey(join(keys, 'signer.key')), chainPem },
    recipients: [{ cert: new X509Certificate(await readFile(join(keys, 'fleet.crt'), 'utf8')) }],
  });
  const spkBytes = (await stat(spk)).size;
  const plainTar = join(work, 'payload.tar');
  await timed('tar', ['-cf', plainTar, '-C', recipe, 'app', 'db', 'config']);

  const verifyS: number[] = [];
  const refS: number[] = [];
  const dgstS: number[] = [];
  const tarS: number[] = [];
  const installS: number[] = [];
  const toSwitchedS: number[] = [];
  const healthS: number[] = [];
  const rss: number[] = [];
  /** "user + sys" CPU seconds of each run's tar -x and install, to tell a slow file system from slow code. */
  const cpu: string[] = [];
  const states: Record<string, number[]> = {};
  // Each run works in folders of its own, removed together after the last run (see settle()).
  const trees: string[] = [];
  for (let r = 0; r < runs; r++) {
    const vx = join(work, `verify-x-${r}`);
    const tx = join(work, `tar-x-${r}`);
    const root = join(work, `probe-${r}`);
    trees.push(vx, tx, root);
    await settle();
    verifyS.push((await timed(process.execPath, [sonde, 'verify', spk, '--keyring', join(keys, 'root.crt'), '--key', join(keys, 'fleet.key'), '--extract', vx])).seconds);
    await settle();
    await mkdir(tx);
    const dg = await timed('openssl', ['dgst', '-sha256', spk]);
    const tr = await timed('tar', ['-xf', plainTar, '-C', tx]);
    refS.push(dg.seconds + tr.seconds);
    dgstS.push(dg.seconds);
    tarS.push(tr.seconds);
    await mkdir(join(root, 'etc'), { recursive: true });
    await writeFile(join(root, 'etc', 'config.json'), JSON.stringify({ port: await freePort(), measurements: { paused: true } }));
    await settle();
    const run = await timed(process.execPath, [
      sonde, 'agent', 'install', spk, '--root', root, '--keyring', join(keys, 'root.crt'), '--key', join(keys, 'fleet.key'),
      '--health-checks', '1', '--health-interval', '50', '--json',
    ]);
    const receipt = JSON.parse(run.stdout) as { ok: boolean; timings: Record<string, number> };
    if (!receipt.ok) throw new Error(`install did not commit: ${run.stdout}`);
    const t = receipt.timings;
    installS.push(run.seconds);
    toSwitchedS.push(((t.received ?? 0) + (t.verified ?? 0) + (t.staged ?? 0) + (t.switching ?? 0)) / 1000);
    healthS.push((t.trial ?? 0) / 1000);
    for (const k of ['received', 'verified', 'staged', 'switching', 'trial', 'committed']) (states[k] ??= []).push((t[k] ?? 0) / 1000);
    rss.push(run.maxRssKiB);
    cpu.push(`tar -x ${tr.userSeconds.toFixed(2)} + ${tr.sysSeconds.toFixed(2)}, install ${run.userSeconds.toFixed(2)} + ${run.sysSeconds.toFixed(2)}`);
    const engine = await Engine.open({ root });
    await engine.context.runner.stop();
    engine.close();
  }
  await remove(...trees);
  const v = median(verifyS);
  const sw = median(toSwitchedS);
  const ref = median(refS);
  console.log(`install: ${sizeMiB} MiB payload (${files} files, ${(bytes / MB).toFixed(1)} MB) in the sample app 1.0.0 product, .spk ${(spkBytes / MB).toFixed(1)} MB encrypted; ${runs} run(s), median`);
  console.log('  (every timed step starts at least 36 s after the last delete, on freshly warmed memory: bench/src/measure.ts says why)');
  console.log(`  reference: openssl dgst + tar -x      ${ref.toFixed(3)} s  (${spread(refS)}; openssl ${median(dgstS).toFixed(3)} s, tar -x ${median(tarS).toFixed(3)} s)`);
  console.log(`  sonde verify --key --extract           ${v.toFixed(3)} s  (${spread(verifyS)})`);
  console.log(`  install, received -> switched          ${sw.toFixed(3)} s  (${spread(toSwitchedS)})  = ${(sw / v).toFixed(2)}x verify-only (target <= 1.30x), ${(sw / ref).toFixed(2)}x reference (target <= 1.40x)`);
  // The reference moves with the file system more than the install does: each run's own pair.
  console.log(`    each run, install / reference: ${toSwitchedS.map((x, i) => `${x.toFixed(3)} / ${refS[i]!.toFixed(3)} s = ${(x / refS[i]!).toFixed(2)}x`).join('; ')}`);
  console.log(`    each run, CPU seconds (user + sys): ${cpu.join('; ')}`);
  console.log(`    per state: ${Object.entries(states).map(([k, xs]) => `${k} ${median(xs).toFixed(3)} s`).join(', ')}`);
  console.log(`  health window (1 check, minimum)       ${median(healthS).toFixed(3)} s`);
  console.log(`  whole CLI run (incl. start, health)    ${median(installS).toFixed(3)} s`);
  console.log(`  install peak RSS                       ${(Math.max(...rss) / 1024).toFixed(1)} MiB (target <= 120 MiB)`);
}

await main();
