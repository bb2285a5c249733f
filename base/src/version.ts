import { readFileSync } from 'node:fs';

/** Sonde's version: the package's (the build in dist/ sits one level deeper than the sources). */
export const SONDE_VERSION: string = (() => {
  for (const up of ['../../../package.json', '../../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(up, import.meta.url), 'utf8')) as { version: string }).version;
    } catch {
      // the other depth
    }
  }
  return 'unknown';
})();
