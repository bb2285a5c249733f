// Makes the compiled CLI executable, so `npx sonde` and dist/cli/src/sonde.js run directly.
import { chmodSync } from 'node:fs';
chmodSync(new URL('../dist/cli/src/sonde.js', import.meta.url), 0o755);
