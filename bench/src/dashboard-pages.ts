import { chromium, type Browser, type Page } from 'playwright-core';

/**
 * Dashboards in Debian's Chromium for the benchmarks (bench/dashboard, bench/fleet --dashboards):
 * each page signs in with a staff token and opens a view, the way a support engineer keeps one
 * open. Nothing here asserts; the callers time what they need.
 */
export const CHROMIUM = process.env['SONDE_CHROMIUM'] ?? '/usr/bin/chromium';

export async function launch(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
}

/** A page signed in (its own context: its own session cookie), showing `hash`. */
export async function signedInPage(browser: Browser, url: string, token: string, hash: string): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${url}/`);
  await page.fill('#token', token);
  await page.click('#signin-form button[type=submit]');
  await page.waitForSelector('#overview-title', { timeout: 30_000 });
  // `blank`: Chromium and the signed-in context, but no dashboard (and no live stream) open.
  await page.goto(hash === 'blank' ? 'about:blank' : `${url}/${hash}`);
  return page;
}

export async function openDashboards(url: string, token: string, n: number, hash = '#/probes'): Promise<{ pages: Page[]; close(): Promise<void> }> {
  const browser = await launch();
  const pages: Page[] = [];
  for (let i = 0; i < n; i++) pages.push(await signedInPage(browser, url, token, hash));
  return { pages, close: () => browser.close() };
}
