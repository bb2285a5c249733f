import { ApiError, get, post, query } from '../api.js';
import type { LiveChange, RolloutStatus, Target } from '../api-types.js';
import { throttled, type ViewFactory } from '../app.js';
import { badge, h, notice, replace, shortSha, time } from '../dom.js';
import { rolloutBar, waveLabel, whereItStands } from './rollouts.js';

/**
 * One rollout, live: its state (and why it paused), a bar per wave, every probe of the started
 * waves with its state and reason, the history, and the actions its state allows the role.
 */
const ACTIONS: readonly { action: string; label: string; when: readonly string[]; role: 'operator' | 'admin'; danger?: boolean; only?: (r: RolloutStatus) => boolean }[] = [
  { action: 'start', label: 'Start', when: ['draft'], role: 'operator' },
  { action: 'pause', label: 'Pause', when: ['running', 'waiting', 'awaiting-approval'], role: 'operator' },
  { action: 'resume', label: 'Resume', when: ['paused'], role: 'operator' },
  { action: 'approve', label: 'Approve the next wave', when: ['awaiting-approval'], role: 'operator' },
  { action: 'retry', label: 'Retry the failed probes', when: ['running', 'waiting', 'awaiting-approval', 'paused'], role: 'operator' },
  { action: 'abort', label: 'Abort', when: ['draft', 'running', 'waiting', 'awaiting-approval', 'paused'], role: 'operator', danger: true },
  { action: 'promote', label: 'Approve promotion', when: ['completed'], role: 'admin', only: (r) => r.environment !== null && r.environment !== 'production' },
];

const PAUSE_WHY: Record<string, string> = {
  'error-threshold': 'paused by itself: more of a wave failed than its error threshold allows',
  operator: 'paused by an operator',
};

export const rolloutView: ViewFactory = async (ctx, params) => {
  const id = params[0]!;
  const root = h('section', { 'aria-labelledby': 'rollout-title' });
  const message = h('div', { id: 'rollout-message' });

  const act = (action: string, button: HTMLButtonElement): void => {
    if (action === 'abort' && !window.confirm('Abort this rollout? Probes not yet sent the pack will not get it.')) return;
    button.disabled = true;
    void post<unknown>(`/api/v1/rollouts/${encodeURIComponent(id)}/${action}`, {})
      .then(() => {
        replace(message, notice('ok', `${action}: done.`));
        return render();
      })
      .catch((e: unknown) => replace(message, notice('error', h('code', { class: 'error-code' }, e instanceof ApiError ? e.code : 'ERROR'), ` ${(e as Error).message}`)))
      .finally(() => {
        button.disabled = false;
      });
  };

  const render = async (): Promise<void> => {
    const r = await get<RolloutStatus>(`/api/v1/rollouts/${encodeURIComponent(id)}`);
    const targets = await get<Target[]>(`/api/v1/rollouts/${encodeURIComponent(id)}/targets${query({ limit: 500 })}`);
    const buttons = ACTIONS.filter((a) => a.when.includes(r.state) && ctx.can(a.role) && (a.only?.(r) ?? true)).map((a) => {
      const b = h('button', { type: 'button', id: `rollout-${a.action}`, class: a.danger ? 'danger' : a.action === 'retry' ? 'secondary' : null }, a.label);
      b.addEventListener('click', () => act(a.action, b));
      return b;
    });
    const waveName = (w: { wave: number }): string => waveLabel(w.wave, r.hasCanary);
    const failed = targets.filter((t) => t.errorCode !== null || t.state === 'failed' || t.state === 'rolled-back');
    replace(
      root,
      h('p', null, h('a', { href: '#/rollouts' }, '← Rollouts')),
      h('h1', { id: 'rollout-title' }, r.name ?? r.id),
      h(
        'p',
        { id: 'rollout-state' },
        badge(r.state),
        r.state === 'paused' && r.pausedReason ? h('span', { id: 'paused-reason' }, ` ${PAUSE_WHY[r.pausedReason] ?? r.pausedReason}`) : '',
        ` · ${r.product} ${r.version} (`,
        h('a', { href: `#/packs/${r.packSha256}`, class: 'mono' }, shortSha(r.packSha256)),
        `) · ${whereItStands(r)}${r.environment ? ` · ${r.environment}` : ''}`,
        r.waitUntil ? [' · next wave ', time(r.waitUntil)] : '',
        r.window.open ? '' : ` · outside its maintenance windows${r.window.nextOpening ? ` until ${r.window.nextOpening}` : ''}`,
      ),
      buttons.length ? h('div', { class: 'actions' }, buttons) : null,
      message,
      h(
        'section',
        { class: 'panel', 'aria-labelledby': 'waves-h' },
        h('h2', { id: 'waves-h' }, 'Waves'),
        h('p', { class: 'legend' }, ['committed', 'installing', 'failed', 'pending', 'skipped'].map((k) => h('span', null, h('i', { class: `seg-${k}` }), k))),
        h(
          'table',
          { id: 'waves' },
          h('caption', { class: 'visually-hidden' }, 'Progress per wave'),
          h('thead', null, h('tr', null, ['Wave', 'Progress', 'Committed', 'Installing', 'Failed', 'Rolled back', 'Pending', 'Skipped'].map((t) => h('th', { scope: 'col' }, t)))),
          h(
            'tbody',
            null,
            r.waves.map((w) =>
              h(
                'tr',
                { 'data-wave': w.wave },
                h('th', { scope: 'row' }, waveName(w), w.started ? '' : ' (not started)'),
                h('td', null, rolloutBar(w, waveName(w))),
                h('td', { class: 'n-committed' }, w.committed),
                h('td', null, w.sent + w.accepted + w.installing),
                h('td', { class: 'n-failed' }, w.failed),
                h('td', null, w.rolledBack),
                h('td', null, w.pending),
                h('td', null, w.skipped),
              ),
            ),
          ),
        ),
        h('p', null, `Overall: ${r.progress.committed} of ${r.progress.size} committed, ${r.progress.failed + r.progress.rolledBack} failed or rolled back.`),
      ),
      failed.length
        ? h(
            'section',
            { class: 'panel', 'aria-labelledby': 'failures-h' },
            h('h2', { id: 'failures-h' }, 'Failures'),
            h('ul', { id: 'failures' }, failed.map((t) => h('li', null, h('a', { href: `#/probes/${encodeURIComponent(t.probeId)}` }, t.probeId), ' ', badge(t.state), ' ', h('code', { class: 'error-code' }, t.errorCode ?? ''), t.skipReason ? ` ${t.skipReason}` : ''))),
          )
        : null,
      h(
        'section',
        { class: 'panel', 'aria-labelledby': 'targets-h' },
        h('h2', { id: 'targets-h' }, 'Probes'),
        h(
          'div',
          { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'Probes of this rollout' },
          h(
            'table',
            { id: 'targets' },
            h('caption', { class: 'visually-hidden' }, 'Probes of this rollout'),
            h('thead', null, h('tr', null, ['Probe', 'Wave', 'State', 'Reason', 'Attempt', 'Updated'].map((t) => h('th', { scope: 'col' }, t)))),
            h(
              'tbody',
              null,
              targets.map((t) =>
                h(
                  'tr',
                  { 'data-probe': t.probeId },
                  h('td', null, h('a', { href: `#/probes/${encodeURIComponent(t.probeId)}` }, t.probeId)),
                  h('td', null, waveLabel(t.wave, r.hasCanary)),
                  h('td', null, badge(t.state)),
                  h('td', null, t.errorCode ?? t.skipReason ?? ''),
                  h('td', null, t.attempt),
                  h('td', null, time(t.updatedAt)),
                ),
              ),
            ),
          ),
        ),
      ),
      h(
        'details',
        { class: 'panel' },
        h('summary', null, 'History'),
        h('ol', null, r.history.map((x) => h('li', null, `${x.at} ${x.from} → ${x.to} (${x.event}, wave ${x.wave + 1}) by ${x.actor}`))),
      ),
    );
  };
  await render();
  const refresh = throttled(render, 700);
  return { title: `Rollout ${id}`, root, onLive: (c: LiveChange) => (c.resync || c.rollouts?.includes(id) ? refresh() : undefined) };
};
