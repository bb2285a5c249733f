// Makes the compiled CLI executable, so `npx sonde` and dist/cli/src/sonde.js run directly, and
// puts the dashboard's static files (server/web/static/) beside its compiled script in dist/server/web/.
import { chmodSync, cpSync } from 'node:fs';
chmodSync(new URL('../dist/cli/src/sonde.js', import.meta.url), 0o755);
cpSync(new URL('../server/web/static/', import.meta.url), new URL('../dist/server/web/', import.meta.url), { recursive: true });
