import { readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { extractPack, loadKeyring, readPack, verifyPack } from '../../../agent/src/bundle/index.js';
import { isSondeError } from '../../../agent/src/errors/sonde-error.js';
import { Engine } from '../../../agent/src/update/engine.js';
import { layoutOf } from '../../../agent/src/update/layout.js';
import { setSiteVar } from '../../../agent/src/update/site-vars.js';
import { readStatus } from '../../../agent/src/update/status.js';
import { loadPrivateKey } from '../keys/key-files.js';
import { buildSamples, type SamplePackId } from '../samples/index.js';

/**
 * The main job until the fleet server and the lab exist: the sample releases built, signed and
 * encrypted; one verified as a probe would and a tampered copy refused; then a local probe (a
 * folder, the real sample app as a process) taken through 1.0.0 -> 1.1.0 -> 1.1.1, and the bad
 * release rolled back by itself. Everything lands in one output folder, made afresh each run.
 */
async function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => done(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

export async function runLocalDemo(outDir: string, log: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<boolean> {
  const out = resolve(outDir);
  const probeRoot = join(out, 'probe');
  // A previous run may have left its probe app running.
  await Engine.open({ root: probeRoot }).then(async (e) => {
    await e.context.runner.stop();
    e.close();
  }).catch(() => undefined);
  await rm(out, { recursive: true, force: true });
  log(`Sonde local demo (the fleet server and the lab come later); output in ${out}`);

  log('1. the vendor builds the sample releases: a PKI, then signed packs encrypted for the fleet key');
  const samples = await buildSamples(join(out, 'samples'));
  const keysDir = join(out, 'samples', 'keys');
  for (const id of Object.keys(samples.packs)) log(`   ${samples.packs[id as SamplePackId]}`);

  log('2. a probe verifies a pack against its keyring and decrypts it with the fleet key');
  const keyring = await loadKeyring(join(keysDir, 'root.crt'));
  const fleetKey = await loadPrivateKey(join(keysDir, 'fleet.key'));
  const verified = await verifyPack(await readPack(samples.packs['1.1.0']), keyring);
  const result = await extractPack(verified, { mode: 'extract', staging: join(out, 'verify-staging'), key: fleetKey });
  log(`   TRUSTED probe-app ${verified.manifest.version}: ${result.payloads.map((p) => `${p.entry.name} (${p.entries} entries)`).join(', ')}`);

  log('3. a copy with one byte flipped inside an encrypted payload is refused');
  const bytes = await readFile(samples.packs['1.1.0']);
  // Inside the first encrypted chunk of the app payload (its data follows its 512-byte header).
  let header = bytes.indexOf('payloads/01-app');
  while (header % 512 !== 0) header = bytes.indexOf('payloads/01-app', header + 1); // the manifest names it too
  const at = header + 512 + 64;
  bytes[at] = bytes[at]! ^ 0x01;
  const tampered = join(out, 'tampered.spk');
  await writeFile(tampered, bytes);
  let refused = false;
  try {
    const v = await verifyPack(await readPack(tampered), keyring);
    await extractPack(v, { mode: 'extract', staging: join(out, 'tampered-staging'), key: fleetKey });
  } catch (e) {
    if (!isSondeError(e)) throw e;
    refused = true;
    log(`   REJECTED ${e.code}: ${e.message}`);
  }

  log(`4. a local probe in ${probeRoot} installs the releases with the real sample app`);
  const port = await freePort();
  await mkdir(join(probeRoot, 'etc'), { recursive: true });
  await writeFile(join(probeRoot, 'etc', 'config.json'), `${JSON.stringify({ port })}\n`);
  await setSiteVar(layoutOf(probeRoot).siteVars, 'CollectorPassword', 'demo-secret');
  const engine = await Engine.open({
    root: probeRoot,
    keyring: join(keysDir, 'root.crt'),
    recipientKey: fleetKey,
    health: { required: 2, intervalMs: 300, windowMs: 6000 },
  });
  let ok = refused;
  try {
    for (const id of ['1.0.0', '1.1.0', '1.1.1', '1.2.0-bad'] as const) {
      const r = await engine.install(samples.packs[id]);
      const d = r.deployment;
      const s = await readStatus(engine.context);
      log(
        `   ${id.padEnd(10)} ${d.state.toUpperCase()}${d.errorCode ? ` ${d.errorCode}: ${d.errorMessage}` : ''}` +
          ` -> running ${s.version} in slot ${s.slot}, database v${s.dbVersion}, config v${s.configVersion}`,
      );
      const expected = id === '1.2.0-bad' ? d.state === 'rolled-back' : r.committed;
      ok &&= expected;
    }
    await engine.context.runner.stop();
  } finally {
    engine.close();
  }
  log(ok ? 'verdict: genuine packs trusted and installed, the tampered copy refused, the bad release rolled back' : 'verdict: FAILED (see above)');
  log(`look at: npx sonde agent status --root ${probeRoot}`);
  log(`         npx sonde agent history --root ${probeRoot}`);
  log(`         npx sonde verify ${samples.packs['1.1.0']} --keyring ${join(keysDir, 'root.crt')} --key ${join(keysDir, 'fleet.key')}`);
  return ok;
}
