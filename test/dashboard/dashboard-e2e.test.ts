import { createHash } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromiumMissing, expectAccessible, launchChromium, screenshot, watchPage } from '../helpers/browser.js';
import { makeProbe, startDaemon, type InProcessDaemon, type ProbeFixture } from '../helpers/daemon-harness.js';
import { stopApp } from '../helpers/probe.js';
import { serverSamples, tampered, tempDir, waitFor, type TestServer } from '../server/harness.js';
import { SimFleet, startRolloutServer, statusOf } from '../server/rollout-fleet.js';
import type { SamplePaths } from '../../images/src/samples/index.js';

/**
 * The dashboard end to end (issue 22): real headless Chromium (Debian's), the real fleet server
 * with its rollouts engine, one real agent (it downloads, installs and commits the canary for
 * real) and four simulated probes for the second wave (one fails, three hang after switching).
 * Support staff sign in, upload a pack and see it verified, see a tampered pack refused with its
 * code, put probes in a group in bulk, create a canary rollout, watch the canary commit and the
 * failing wave pause the rollout with the reason shown, resume, abort, and read a receipt; a
 * viewer sees no action and the API refuses one forged anyway. axe-core checks every main view.
 */
const skip = chromiumMissing();

let s: TestServer;
let samples: SamplePaths;
let dir: string;
let probe: ProbeFixture;
let daemon: InProcessDaemon | null = null;
let fleet: SimFleet;
let browser: Browser;
let admin: BrowserContext;
let page: Page;
let watched: { problems: string[] };
let viewerToken: string;

const SIMS = ['sim-01', 'sim-02', 'sim-03', 'sim-04'];

/**
 * What the functions run in the page see (the tests have no DOM types). Functions, not strings:
 * the page's CSP forbids eval, which a string predicate would need.
 */
interface Doc {
  document: { querySelector(s: string): { textContent: string | null } | null; querySelectorAll(s: string): { length: number } };
  location: { hash: string };
}

beforeAll(async () => {
  if (skip) return;
  samples = await serverSamples();
  dir = await tempDir('sonde-dashboard-e2e-');
  ({ s } = await startRolloutServer({ packs: ['1.0.0'], engine: { tickMs: 100 } }));
  // The real agent first installs 1.0.0, as a probe in the field would already run it.
  probe = await makeProbe(dir, { samples, mqttUrl: s.mqttUrl, httpBase: s.url, id: 'agent-e2e', siteVars: { CollectorPassword: 'e2e-secret' } });
  await writeFile(probe.credentialsPath, `${JSON.stringify(await s.enroll('agent-e2e'), null, 2)}\n`, { mode: 0o600 });
  daemon = await startDaemon(probe);
  await waitFor('the agent online', async () => (await s.api<{ online: boolean }>('GET', '/api/v1/probes/agent-e2e')).body.online, 20_000);
  const v100 = createHash('sha256').update(await readFile(samples.packs['1.0.0'])).digest('hex');
  const c = await s.server.context.commands.send('agent-e2e', { type: 'install', packSha256: v100 });
  await waitFor('1.0.0 installed', async () => (await s.server.context.commands.get(c.commandId)).status === 'succeeded', 60_000);
  fleet = await SimFleet.start(s, SIMS, { newVersion: '1.1.0', oldVersion: '1.0.0' });
  fleet.verdict = (id) => (id === 'sim-01' ? 'fail' : 'hold');
  viewerToken = (await s.api<{ token: string }>('POST', '/api/v1/tokens', { body: { name: 'vera', role: 'viewer' } })).body.token;
  browser = await launchChromium();
  admin = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  page = await admin.newPage();
  page.on('dialog', (d) => void d.accept());
  watched = watchPage(page);
}, 180_000);

afterAll(async () => {
  if (skip) return;
  await browser?.close();
  await fleet?.close();
  await daemon?.stop();
  await stopApp(probe.root).catch(() => undefined);
  await s?.close();
  await rm(dir, { recursive: true, force: true });
});

const text = (sel: string) => page.locator(sel).first().innerText();

describe.skipIf(skip)('the dashboard in Chromium', () => {
  it('refuses a wrong token at sign-in, then signs in with a staff token and shows the fleet', async () => {
    await page.goto(s.url);
    expect(await page.title()).toContain('sign in');
    await page.fill('#token', 'A'.repeat(43));
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('#signin-message .notice-error');
    expect(await text('#signin-message')).toContain('AUTH_REQUIRED');
    await page.fill('#token', s.admin);
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('#overview-title');
    expect(await text('#count-total')).toBe('5');
    await page.waitForSelector('.live-on');
    await expectAccessible(page, 'overview');
    await screenshot(page, dir, 'overview');
  });

  it('uploads a pack with a progress bar and shows the server\'s verdict; a tampered pack is refused with its code', async () => {
    await page.goto(`${s.url}/#/packs`);
    await page.waitForSelector('#upload-form');
    await page.setInputFiles('#pack-file', samples.packs['1.1.0']);
    await page.click('#upload-button');
    await page.waitForSelector('#upload-verdict .notice-ok');
    expect(await text('#upload-verdict')).toContain('Verified and stored');
    expect(await page.locator('#upload-progress').getAttribute('value')).toBe('100');
    await page.waitForSelector('#packs tbody tr >> nth=1');
    const bad = await tampered(samples.packs['1.1.0'], join(dir, 'tampered.spk'), (n) => n.startsWith('payloads/'));
    await page.setInputFiles('#pack-file', bad);
    await page.click('#upload-button');
    await page.waitForSelector('#upload-verdict .notice-error');
    expect(await text('#upload-verdict .error-code')).toBe('PAYLOAD_HASH_MISMATCH');
    expect((await s.api<unknown[]>('GET', '/api/v1/packs')).body).toHaveLength(2);
    await expectAccessible(page, 'packs');
    await screenshot(page, dir, 'packs');
    await page.click('#packs tbody a >> text=/^[0-9a-f]{12}$/ >> nth=0');
    await page.waitForSelector('#chain li');
    expect(await text('#signer-h + .notice')).toContain('trusts this signer');
    await expectAccessible(page, 'pack');
    await screenshot(page, dir, 'pack');
  });

  it('filters the probes in the URL, and puts the selected ones in a group in bulk', async () => {
    await page.goto(`${s.url}/#/probes?q=sim`);
    await page.waitForSelector('#probes tbody tr');
    expect(await page.locator('#probes tbody tr').count()).toBe(4);
    expect(await text('#probes-count')).toContain('4 probes match');
    await page.goto(`${s.url}/#/probes`);
    await page.waitForFunction(() => (globalThis as unknown as Doc).document.querySelectorAll('#probes tbody tr').length === 5);
    await page.check('#select-all');
    await page.waitForSelector('#bulk');
    await page.fill('#bulk-add-group', 'field');
    await page.click('#bulk-apply');
    await page.waitForSelector('#bulk .notice-ok');
    expect(await text('#bulk .notice-ok')).toContain('5 probes changed');
    const inGroup = await s.api<unknown[]>('GET', '/api/v1/probes?group=field');
    expect(inGroup.headers['x-total-count']).toBe('5');
    await page.click('button[data-sort="version"]');
    await page.waitForFunction(() => (globalThis as unknown as Doc).location.hash.includes('sort=version'));
    await expectAccessible(page, 'probes');
    await screenshot(page, dir, 'probes');
  });

  it('creates a canary rollout, watches the canary commit and the failing wave pause it with the reason, then resumes and aborts', async () => {
    await page.goto(`${s.url}/#/rollouts/new`);
    await page.waitForSelector('#rollout-form');
    await page.fill('#r-name', 'field 1.1.0');
    await page.selectOption('#r-pack', createHash('sha256').update(await readFile(samples.packs['1.1.0'])).digest('hex'));
    await page.fill('#r-group', 'field');
    await page.selectOption('#r-canary-kind', 'probeIds');
    await page.fill('#r-canary', 'agent-e2e');
    await page.fill('#r-waves', '100');
    await page.fill('#r-wait', '0');
    await expectAccessible(page, 'new rollout');
    await page.click('#r-create');
    await page.waitForSelector('#rollout-title');
    const id = decodeURIComponent(new URL(page.url()).hash.replace('#/rollouts/', ''));
    // The canary is the real agent: it downloads, installs and commits 1.1.0.
    await page.waitForFunction(() => (globalThis as unknown as Doc).document.querySelector('#waves tr[data-wave="0"] .n-committed')?.textContent === '1', null, { timeout: 90_000 });
    // The second wave: sim-01 fails, more than the 10 % error threshold: the rollout pauses itself.
    await page.waitForSelector('#paused-reason', { timeout: 30_000 });
    expect(await text('#paused-reason')).toContain('error threshold');
    expect(await text('#failures')).toContain('sim-01');
    expect(await text('#failures')).toContain('MIGRATION_FAILED');
    await expectAccessible(page, 'rollout');
    await screenshot(page, dir, 'rollout');
    await page.click('#rollout-resume');
    await waitFor('resumed', async () => (await statusOf(s, id)).state === 'running');
    await page.waitForSelector('#rollout-abort');
    await page.click('#rollout-abort');
    await page.waitForSelector('#rollout-state .badge-aborted');
    expect((await statusOf(s, id)).state).toBe('aborted');
  }, 150_000);

  it("shows a probe's deployments with the receipt's timings", async () => {
    await page.goto(`${s.url}/#/probes/agent-e2e`);
    await page.waitForSelector('#deployments tbody tr');
    await page.click('#deployments button[data-receipt] >> nth=0');
    await page.waitForSelector('.receipt table tbody tr');
    expect(await text('.receipt')).toContain('committed');
    expect(await text('.receipt')).toMatch(/staged|switched|committed/);
    await expectAccessible(page, 'probe');
    await screenshot(page, dir, 'probe');
  });

  it('shows the audit log and token management to an admin', async () => {
    await page.goto(`${s.url}/#/audit`);
    await page.waitForSelector('#audit tbody tr');
    expect(await text('#audit')).toContain('POST /api/v1/rollouts/:id/abort');
    await expectAccessible(page, 'audit');
    await screenshot(page, dir, 'audit');
    await page.goto(`${s.url}/#/tokens`);
    await page.waitForSelector('#tokens tbody tr');
    await expectAccessible(page, 'tokens');
    expect(watched.problems).toEqual([]);
  });

  it('a viewer sees no action it may not take, and the API refuses one forged from the page', async () => {
    const ctx = await browser.newContext();
    const v = await ctx.newPage();
    const vw = watchPage(v);
    await v.goto(s.url);
    await v.fill('#token', viewerToken);
    await v.click('#signin-form button[type=submit]');
    await v.waitForSelector('#overview-title');
    expect(await v.locator('nav a').allInnerTexts()).toEqual(['Overview', 'Probes', 'Packs', 'Rollouts']);
    await v.goto(`${s.url}/#/packs`);
    await v.waitForSelector('#packs');
    expect(await v.locator('#upload-form').count()).toBe(0);
    await v.goto(`${s.url}/#/rollouts`);
    await v.waitForSelector('#rollouts tbody tr');
    expect(await v.locator('#new-rollout').count()).toBe(0);
    await v.click('#rollouts tbody a >> nth=0');
    await v.waitForSelector('#rollout-title');
    expect(await v.locator('.actions button').count()).toBe(0);
    await v.goto(`${s.url}/#/probes`);
    await v.waitForSelector('#probes tbody tr');
    expect(await v.locator('#select-all').count()).toBe(0);
    // The page hides it; the server refuses it anyway, with the session's own CSRF token.
    const status = await v.evaluate(async () => {
      const me = (await (await fetch('/api/v1/session')).json()) as { csrfToken: string };
      const r = await fetch('/api/v1/probes/sim-02', { method: 'PATCH', headers: { 'content-type': 'application/json', 'x-csrf-token': me.csrfToken }, body: '{"addTags":["x"]}' });
      return r.status;
    });
    expect(status).toBe(403);
    await v.click('#sign-out');
    await v.waitForSelector('#signin-form');
    expect(vw.problems.filter((p) => !p.includes('403'))).toEqual([]);
    await ctx.close();
  });
});
