import { ApiError, del, get, post, setCsrf } from './api.js';
import type { LiveChange, Session } from './api-types.js';
import { roleAtLeast, type AppCtx, type View, type ViewFactory } from './app.js';
import { h, notice, replace } from './dom.js';
import { Live } from './live.js';
import { auditView } from './views/audit.js';
import { overviewView } from './views/overview.js';
import { packView, packsView } from './views/packs.js';
import { probeView } from './views/probe.js';
import { probesView } from './views/probes.js';
import { rolloutNewView } from './views/rollout-new.js';
import { rolloutView } from './views/rollout.js';
import { rolloutsView } from './views/rollouts.js';
import { tokensView } from './views/tokens.js';

/**
 * The dashboard (docs/dashboard.md): a sign-in page served at `/`, then one page whose views
 * are chosen by the URL's hash (`#/probes?health=down&page=2`), so any view, filters included,
 * can be bookmarked and shared. Plain TypeScript and the DOM, compiled by tsc; no framework.
 */
const ROUTES: readonly [RegExp, ViewFactory, string][] = [
  [/^\/$/, overviewView, '/'],
  [/^\/probes$/, probesView, '/probes'],
  [/^\/probes\/([^/]+)$/, probeView, '/probes'],
  [/^\/packs$/, packsView, '/packs'],
  [/^\/packs\/([0-9a-f]{64})$/, packView, '/packs'],
  [/^\/rollouts$/, rolloutsView, '/rollouts'],
  [/^\/rollouts\/new$/, rolloutNewView, '/rollouts'],
  [/^\/rollouts\/([^/]+)$/, rolloutView, '/rollouts'],
  [/^\/audit$/, auditView, '/audit'],
  [/^\/tokens$/, tokensView, '/tokens'],
];

const NAV: readonly { path: string; label: string; role: 'viewer' | 'admin' }[] = [
  { path: '/', label: 'Overview', role: 'viewer' },
  { path: '/probes', label: 'Probes', role: 'viewer' },
  { path: '/packs', label: 'Packs', role: 'viewer' },
  { path: '/rollouts', label: 'Rollouts', role: 'viewer' },
  { path: '/audit', label: 'Audit log', role: 'admin' },
  { path: '/tokens', label: 'Tokens', role: 'admin' },
];

let current: View | null = null;
let live: Live | null = null;

function parseHash(): { path: string; query: URLSearchParams } {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, q] = raw.split('?', 2) as [string, string | undefined];
  return { path: path || '/', query: new URLSearchParams(q ?? '') };
}

function showSignIn(message?: string): void {
  live?.stop();
  live = null;
  current?.dispose?.();
  current = null;
  setCsrf(null);
  document.title = 'Sonde — sign in';
  const app = document.getElementById('app')!;
  const input = h('input', { id: 'token', name: 'token', type: 'password', required: true, minlength: 32, maxlength: 128, spellcheck: 'false', autocomplete: 'current-password', 'aria-describedby': 'token-help' });
  const msg = h('div', { id: 'signin-message', role: 'alert' }, message ? notice('info', message) : null);
  const form = h(
    'form',
    { id: 'signin-form', method: 'post', action: '/api/v1/session', autocomplete: 'off' },
    h('label', { for: 'token' }, 'Staff token'),
    input,
    h('p', { id: 'token-help', class: 'help' }, 'The token an admin created for you (', h('code', null, 'sonde server token create'), '). It stays on this page only long enough to open a session.'),
    h('button', { type: 'submit' }, 'Sign in'),
    msg,
  );
  replace(app, h('main', { class: 'signin', id: 'signin' }, h('h1', null, 'Sonde fleet dashboard'), form));
  wireSignIn(form, input, msg);
}

function wireSignIn(form: HTMLFormElement, input: HTMLInputElement, msg: HTMLElement): void {
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const token = input.value.trim();
    input.value = '';
    void post<Session>('/api/v1/session', { token })
      .then((s) => start(s))
      .catch((err: unknown) => {
        const code = err instanceof ApiError ? err.code : 'NETWORK_ERROR';
        replace(msg, notice('error', `Sign-in refused (${code}): ${err instanceof ApiError && err.code === 'AUTH_REQUIRED' ? 'this is not an active staff token.' : (err as Error).message}`));
        input.focus();
      });
  });
}

function start(session: Session): void {
  setCsrf(session.csrfToken);
  const ctx: AppCtx = {
    session,
    can: (role) => roleAtLeast(session.role, role),
    navigate: (hash, replaceIt = false) => {
      if (replaceIt) history.replaceState(null, '', `#${hash}`);
      else location.hash = hash;
      if (replaceIt) void route(ctx);
    },
  };
  const status = h('span', { class: 'live live-off', role: 'status' }, 'connecting');
  const signOut = h('button', { type: 'button', id: 'sign-out' }, 'Sign out');
  signOut.addEventListener('click', () => {
    void del('/api/v1/session')
      .catch(() => undefined)
      .then(() => showSignIn('Signed out.'));
  });
  const nav = h(
    'nav',
    { 'aria-label': 'Sections' },
    NAV.filter((n) => ctx.can(n.role)).map((n) => h('a', { href: `#${n.path}`, 'data-path': n.path }, n.label)),
  );
  const main = h('main', { id: 'main', tabindex: '-1' });
  const shell = h(
    'div',
    { class: 'shell' },
    h('header', null, h('span', { class: 'brand' }, 'Sonde'), status, h('span', { class: 'who' }, `${session.name} (${session.role})`), signOut),
    nav,
    main,
  );
  replace(document.getElementById('app')!, shell);
  live?.stop();
  live = new Live(
    (c: LiveChange) => current?.onLive?.(c),
    (up) => {
      status.className = `live ${up ? 'live-on' : 'live-off'}`;
      status.textContent = up ? 'live' : 'reconnecting';
    },
    () => showSignIn('Your session ended (signed out elsewhere, expired, or its token was revoked).'),
  );
  live.start();
  window.onhashchange = () => void route(ctx);
  void route(ctx);
}

let routing = 0;
async function route(ctx: AppCtx): Promise<void> {
  const main = document.getElementById('main');
  if (!main) return;
  const mine = ++routing;
  const { path, query } = parseHash();
  const found = ROUTES.find(([re]) => re.test(path));
  for (const a of document.querySelectorAll<HTMLAnchorElement>('nav a')) {
    if (found && a.dataset['path'] === found[2]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  current?.dispose?.();
  current = null;
  if (!found) {
    replace(main, h('h1', null, 'Not found'), notice('error', `No view ${path}.`));
    return;
  }
  const params = (found[0].exec(path) ?? []).slice(1).map((p) => decodeURIComponent(p));
  try {
    const view = await found[1](ctx, params, query);
    if (mine !== routing) {
      view.dispose?.();
      return;
    }
    current = view;
    document.title = `${view.title} — Sonde`;
    replace(main, view.root);
  } catch (e) {
    if (mine !== routing) return;
    const code = e instanceof ApiError ? e.code : 'ERROR';
    document.title = 'Error — Sonde';
    replace(main, h('h1', null, 'Could not show this view'), notice('error', `${code}: ${(e as Error).message}`));
  }
}

window.addEventListener('sonde:signed-out', () => showSignIn('Your session ended: sign in again.'));

async function boot(): Promise<void> {
  try {
    const s = await get<Session>('/api/v1/session');
    start(s);
  } catch {
    const form = document.getElementById('signin-form') as HTMLFormElement | null;
    const input = document.getElementById('token') as HTMLInputElement | null;
    const msg = document.getElementById('signin-message');
    if (form && input && msg) wireSignIn(form, input, msg);
    else showSignIn();
  }
}

if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', () => void boot());
else void boot();
