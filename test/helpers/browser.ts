import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { expect } from 'vitest';

/**
 * Real headless Chromium for the dashboard's tests: Debian's `chromium` (scripts/setup.sh installs
 * it), driven by playwright-core. Nothing is downloaded. Without the binary the browser tests are
 * skipped on a developer's machine, and fail under CI=true, where setup.sh must have installed it.
 */
export const CHROMIUM = process.env['SONDE_CHROMIUM'] ?? '/usr/bin/chromium';

export function chromiumMissing(): boolean {
  if (existsSync(CHROMIUM)) return false;
  if (process.env['CI'] === 'true') throw new Error(`${CHROMIUM} is missing: scripts/setup.sh installs Debian's chromium`);
  return true;
}

export async function launchChromium(): Promise<Browser> {
  // --no-sandbox: the tests run as root in CI, where Chromium refuses its sandbox.
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
}

/** Collects what the page says went wrong: uncaught errors and CSP violations fail the test at the end. */
export function watchPage(page: Page): { problems: string[] } {
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    const t = m.text();
    if (m.type() === 'error' && !/status of 40[13]|status of 422|status of 409|status of 503/.test(t)) problems.push(`console: ${t}`);
    if (/Content Security Policy/i.test(t)) problems.push(`csp: ${t}`);
  });
  return { problems };
}

const require = createRequire(import.meta.url);
let axeSource: string | null = null;

/**
 * axe-core run in the page (injected through the DevTools protocol, so the page's own CSP, which
 * allows no inline script, stays in force). Fails on any serious or critical violation.
 */
export async function expectAccessible(page: Page, what: string): Promise<void> {
  axeSource ??= await readFile(require.resolve('axe-core/axe.min.js'), 'utf8');
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(ctx: unknown, o: unknown): Promise<{ violations: { id: string; impact: string | null; help: string; nodes: { target: unknown[] }[] }[] }> } }).axe;
    const r = await axe.run((globalThis as unknown as { document: unknown }).document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => JSON.stringify(n.target)) }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  expect(bad, `${what}: ${JSON.stringify(bad, null, 1)}`).toEqual([]);
}

/** A screenshot of the view: into SONDE_SCREENSHOTS (docs/dashboard/ when refreshing the docs), else the scratch folder. */
export async function screenshot(page: Page, dir: string, name: string): Promise<string> {
  const out = process.env['SONDE_SCREENSHOTS'] ?? dir;
  await mkdir(out, { recursive: true });
  const path = join(out, `${name}.png`);
  await page.screenshot({ path, fullPage: false });
  return path;
}
