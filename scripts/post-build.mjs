// Makes the compiled CLI executable, so `npx sonde` and dist/agent/src/cli/sonde.js run directly.
import { chmodSync } from 'node:fs';
chmodSync(new URL('../dist/agent/src/cli/sonde.js', import.meta.url), 0o755);
