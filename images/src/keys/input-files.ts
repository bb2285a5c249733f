import { readFile } from 'node:fs/promises';
import { CliError } from '../../../base/src/cli/cli-error.js';

/** The vendor tools' input files (`sonde pack`, `sonde diagnostics request`): text, and PEM certificates in it. */
export const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g;

export async function readText(path: string, what: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    throw new CliError('INPUT_UNREADABLE', `${what} ${path} cannot be read`, { cause: e });
  }
}

/** Every certificate in a PEM file, each ending in a newline, in file order. */
export async function readCertificates(path: string, what: string): Promise<string[]> {
  return ((await readText(path, what)).match(PEM_CERT) ?? []).map((pem) => (pem.endsWith('\n') ? pem : `${pem}\n`));
}
