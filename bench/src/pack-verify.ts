#!/usr/bin/env node
/**
 * bench/pack-verify (issue 2): generates a mixed payload (large incompressible files plus about
 * 2,000 small text files), packs it encrypted for the fleet key, then times, on the same machine
 * and in the same run:
 *   - `openssl dgst -sha256` of the .spk (the hashing limit),
 *   - `tar -x` of the same payload as a plain tar (the extraction limit),
 *   - `sonde verify --key --extract` (signature, chain, hash, decrypt, decompress, safe extract).
 * It prints MB/s for all three, the ratio to openssl, and sonde's peak RSS, for each size asked.
 * Usage: node dist/bench/src/pack-verify.js [--sizes 64,256,1024] [--runs 3] [--dir .bench/pack-verify] [--keep] [--compression auto|gzip|none] [--extract-root DIR]
 */
import { mkdir, stat, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { initCa, issueIntermediate, issueRecipient, issueSigner } from '../../images/src/keys/key-dir.js';
import { loadPrivateKey, makePlan, writePack } from '../../pack/src/index.js';
import { makeDataset } from './dataset.js';
import { MB, median, remove, settle, spread, timed } from './measure.js';
import { benchArgs } from './bench-args.js';

const { arg, flag, num } = benchArgs('Usage: bench/pack-verify [--sizes 64,256,1024] [--runs 3] [--dir .bench/pack-verify] [--keep] [--compression auto|gzip|none] [--extract-root DIR]', { values: ['compression', 'dir', 'extract-root', 'runs', 'sizes'], flags: ['keep'] });
const sizes = arg('sizes', '256').split(',').map(Number);
const runs = num('runs', 3, 1);
const work = resolve(arg('dir', '.bench/pack-verify'));
const keep = flag('keep');
const compression = arg('compression', 'auto') as 'auto' | 'gzip' | 'none';
/** Where tar -x and sonde verify extract: the work dir (disk) by default, or e.g. /dev/shm. */
const extractRoot = resolve(arg('extract-root', work));
const sonde = fileURLToPath(new URL('../../cli/src/sonde.js', import.meta.url));

async function main(): Promise<void> {
  await mkdir(work, { recursive: true });
  const keys = join(work, 'keys');
  await remove(keys);
  await initCa(keys);
  await issueIntermediate(keys);
  await issueSigner(keys);
  await issueRecipient(keys, { name: 'fleet' });
  const chainPem = (await readFile(join(keys, 'signer.crt'), 'utf8')).match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
  const signer = { key: await loadPrivateKey(join(keys, 'signer.key')), chainPem };
  const fleet = new X509Certificate(await readFile(join(keys, 'fleet.crt'), 'utf8'));

  console.log(`pack-verify: ${runs} run(s) per measure, median shown; work dir ${work}, extracting under ${extractRoot}`);
  console.log('  (every timed step starts at least 36 s after the last delete, on freshly warmed memory: bench/src/measure.ts says why)');
  for (const sizeMiB of sizes) {
    const data = join(work, `data-${sizeMiB}`);
    const { files, bytes } = await makeDataset(data, sizeMiB);
    const spk = join(work, `bench-${sizeMiB}.spk`);
    const t0 = Date.now();
    await writePack(await makePlan(data, { product: 'bench', version: '1.0.0', compatible: ['probe-x1'], compression }), { out: spk, signer, recipients: [{ cert: fleet }] });
    const packSeconds = (Date.now() - t0) / 1000;
    const spkBytes = (await stat(spk)).size;
    const plainTar = join(work, `payload-${sizeMiB}.tar`);
    await timed('tar', ['-cf', plainTar, '-C', data, '.']);
    const tarBytes = (await stat(plainTar)).size;

    const dgst: number[] = [];
    const untar: number[] = [];
    const verify: number[] = [];
    const rss: number[] = [];
    const cpu: string[] = [];
    // Each run extracts into folders of its own, removed together after the last run (see settle()).
    const trees: string[] = [];
    for (let r = 0; r < runs; r++) {
      await settle();
      dgst.push((await timed('openssl', ['dgst', '-sha256', spk])).seconds);
      const tx = join(extractRoot, `sonde-bench-tar-x-${r}`);
      const vx = join(extractRoot, `sonde-bench-verify-x-${r}`);
      await remove(tx, vx);
      trees.push(tx, vx);
      await settle();
      await mkdir(tx);
      const tr = await timed('tar', ['-xf', plainTar, '-C', tx]);
      untar.push(tr.seconds);
      await settle();
      const v = await timed(process.execPath, [sonde, 'verify', spk, '--keyring', join(keys, 'root.crt'), '--key', join(keys, 'fleet.key'), '--extract', vx]);
      if (!v.stdout.startsWith('TRUSTED')) throw new Error(`verify did not say TRUSTED: ${v.stdout}`);
      verify.push(v.seconds);
      rss.push(v.maxRssKiB);
      cpu.push(`tar -x ${tr.userSeconds.toFixed(2)} + ${tr.sysSeconds.toFixed(2)}, sonde ${v.userSeconds.toFixed(2)} + ${v.sysSeconds.toFixed(2)}`);
    }
    await remove(...trees);
    const mbps = (b: number, s: number): string => `${(b / MB / s).toFixed(0).padStart(5)} MB/s`;
    const dg = median(dgst);
    const vf = median(verify);
    console.log(`\n${sizeMiB} MiB payload (--compression ${compression}): ${files} files (${(bytes / MB).toFixed(1)} MB), .spk ${(spkBytes / MB).toFixed(1)} MB encrypted, plain tar ${(tarBytes / MB).toFixed(1)} MB; packed in ${packSeconds.toFixed(1)} s`);
    console.log(`  openssl dgst -sha256 .spk       ${mbps(spkBytes, dg)}  (${dg.toFixed(3)} s; ${spread(dgst)})  hashing limit`);
    console.log(`  tar -x plain payload            ${mbps(tarBytes, median(untar))}  (${median(untar).toFixed(3)} s; ${spread(untar)})  extraction limit`);
    console.log(`  sonde verify --key --extract    ${mbps(spkBytes, vf)}  (${vf.toFixed(3)} s; ${spread(verify)})  = ${(dg / vf).toFixed(2)}x openssl   target >= 0.50x`);
    console.log(`    each run, CPU seconds (user + sys): ${cpu.join('; ')}`);
    console.log(`  sonde verify peak RSS           ${(Math.max(...rss) / 1024).toFixed(1)} MiB   target <= 100 MiB`);
    if (!keep) {
      await remove(data, plainTar, spk);
    }
  }
}

await main();
