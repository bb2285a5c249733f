import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, Page } from 'playwright-core';
import { chromiumMissing, launchChromium, watchPage } from '../../helpers/browser.js';
import { SimProbe, startTestServer, waitFor, type TestServer } from '../harness.js';

/**
 * Attack: a compromised probe reports markup (an event message, an error code, a version string
 * with an `onerror` handler) hoping the dashboard runs it in a staff member's signed-in browser,
 * where it could act with their session. The page builds every text as a text node (never
 * innerHTML) and the Content-Security-Policy allows no inline script: the markup shows as text
 * and nothing runs. Real Chromium.
 */
const skip = chromiumMissing();
let s: TestServer;
let sim: SimProbe;
let browser: Browser;
let page: Page;

const PAYLOAD = '<img src=x onerror="window.__pwned=1">';

beforeAll(async () => {
  if (skip) return;
  s = await startTestServer();
  sim = await SimProbe.connect(s.mqttUrl, await s.enroll('evil-probe'));
  await sim.state({ health: 'degraded', lastDeployment: { id: 'd-evil', outcome: 'failed', errorCode: '<b onmouseover=x>E</b>', version: null, at: new Date().toISOString() } });
  await sim.event('install-state', { deploymentId: 'd-evil', state: 'staged' });
  await sim.event('install-outcome', { id: 'outcome-d-evil', deploymentId: 'd-evil', outcome: 'failed', code: 'HEALTH_CHECK_FAILED', message: `its last output: ${PAYLOAD}<script>window.__pwned=2</script>` });
  await s.settle();
  await waitFor('the events stored', async () => (await s.api<{ deployments: unknown[] }>('GET', '/api/v1/probes/evil-probe')).body.deployments.length === 1);
  browser = await launchChromium();
  page = await browser.newPage();
});
afterAll(async () => {
  if (skip) return;
  await browser?.close();
  await sim?.close();
  await s?.close();
});

describe.skipIf(skip)('markup from a compromised probe', () => {
  it('is shown as text on the overview, the probe page and its receipt, and never runs', async () => {
    const watched = watchPage(page);
    await page.goto(s.url);
    await page.fill('#token', s.admin);
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('#problems');
    expect(await page.locator('#problems').innerText()).toContain('<b onmouseover=x>E</b>');
    await page.goto(`${s.url}/#/probes/evil-probe`);
    await page.waitForSelector('#deployments button[data-receipt]');
    await page.click('#deployments button[data-receipt]');
    await page.waitForSelector('.receipt .reason');
    expect(await page.locator('.receipt .reason').innerText()).toContain(PAYLOAD);
    expect(await page.locator('#events').innerText()).toContain('<script>');
    // Nothing the probe sent became an element, and nothing ran.
    expect(await page.locator('main img, main script, main b').count()).toBe(0);
    expect(await page.evaluate(() => (globalThis as unknown as { __pwned?: number }).__pwned)).toBeUndefined();
    expect(watched.problems).toEqual([]);
  });
});
