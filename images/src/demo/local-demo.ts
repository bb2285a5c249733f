import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { extractPack, loadKeyring, readPack, verifyPack } from '../../../agent/src/bundle/index.js';
import { isSondeError } from '../../../agent/src/errors/sonde-error.js';
import { initCa, issueIntermediate, issueRecipient, issueSigner } from '../keys/key-dir.js';
import { loadPrivateKey } from '../keys/key-files.js';
import { makePlan } from '../pack/recipe.js';
import { writePack } from '../pack/pack-writer.js';

/**
 * The main job until the fleet server and the lab exist: make a vendor PKI, pack a sample release
 * encrypted for the fleet key, verify and extract it as a probe would, and show that a tampered
 * copy is refused. Everything lands in one output folder, made afresh each run.
 */
async function writeSampleRelease(dir: string): Promise<void> {
  await mkdir(join(dir, 'app', 'bin'), { recursive: true });
  await mkdir(join(dir, 'config'), { recursive: true });
  await writeFile(join(dir, 'app', 'bin', 'probe-app.js'), "console.log('probe-app 1.0.0');\n");
  await writeFile(join(dir, 'app', 'VERSION'), '1.0.0\n');
  await writeFile(join(dir, 'config', 'config.template.json'), `${JSON.stringify({ configVersion: 1, port: 8080 }, null, 2)}\n`);
  await writeFile(
    join(dir, 'pack.json'),
    `${JSON.stringify(
      {
        kind: 'product',
        product: 'probe-app',
        version: '1.0.0',
        compatible: ['probe-x1'],
        securityVersion: 1,
        releaseNotes: 'First release of the sample probe application.',
        payloads: { app: 'app', config: 'config' },
      },
      null,
      2,
    )}\n`,
  );
}

export async function runLocalDemo(outDir: string, log: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<boolean> {
  const out = resolve(outDir);
  await rm(out, { recursive: true, force: true });
  const keys = join(out, 'keys');
  log(`Sonde local demo (the fleet server and the lab come later); output in ${out}`);

  log('1. vendor PKI: root CA (kept offline), intermediate, code-signing certificate, fleet recipient key');
  await initCa(keys, { name: 'Demo Vendor Root CA' });
  await issueIntermediate(keys, { name: 'Demo Vendor Release CA' });
  await issueSigner(keys, { name: 'Demo Release Signer' });
  await issueRecipient(keys, { name: 'fleet' });

  log('2. a sample release: probe-app 1.0.0 (app + config payloads)');
  const src = join(out, 'release-1.0.0');
  await writeSampleRelease(src);
  const packPath = join(out, 'probe-app-1.0.0.spk');
  const plan = await makePlan(src, {});
  const { X509Certificate } = await import('node:crypto');
  const signerPem = await readFile(join(keys, 'signer.crt'), 'utf8');
  const chainPem = signerPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
  const written = await writePack(plan, {
    out: packPath,
    signer: { key: await loadPrivateKey(join(keys, 'signer.key')), chainPem },
    recipients: [{ cert: new X509Certificate(await readFile(join(keys, 'fleet.crt'), 'utf8')) }],
  });
  log(`   packed ${packPath} (${written.size} bytes, encrypted for the fleet key, sha256 ${written.sha256.slice(0, 16)}…)`);

  log('3. the probe verifies it against its keyring and decrypts it with the fleet key');
  const keyring = await loadKeyring(join(keys, 'root.crt'));
  const fleetKey = await loadPrivateKey(join(keys, 'fleet.key'));
  const staging = join(out, 'probe-staging');
  const verified = await verifyPack(await readPack(packPath), keyring);
  const result = await extractPack(verified, { mode: 'extract', staging, key: fleetKey });
  log(`   TRUSTED probe-app ${verified.manifest.version}: ${result.payloads.map((p) => `${p.entry.name} (${p.entries} entries)`).join(', ')} extracted to ${staging}`);

  log('4. a copy with one byte flipped inside an encrypted payload is refused');
  const bytes = await readFile(packPath);
  bytes[bytes.length - 2048] = bytes[bytes.length - 2048]! ^ 0x01;
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
  log(refused ? 'verdict: the genuine pack is trusted, the tampered copy is refused' : 'verdict: FAILED, the tampered copy was accepted');
  log(`try it yourself: npx sonde verify ${packPath} --keyring ${join(keys, 'root.crt')} --key ${join(keys, 'fleet.key')}`);
  return refused;
}
