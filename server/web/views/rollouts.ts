import { get, query } from '../api.js';
import type { LiveChange, Rollout, WaveCounts } from '../api-types.js';
import { throttled, type ViewFactory } from '../app.js';
import { badge, h, replace, shortSha, time } from '../dom.js';

/** A wave as staff name it: the canary, then waves 1, 2, … (the API counts from 0, canary included). */
export function waveLabel(wave: number, hasCanary: boolean): string {
  if (wave < 0) return 'not started';
  if (hasCanary && wave === 0) return 'canary';
  return `wave ${hasCanary ? wave : wave + 1}`;
}

/** "canary", "wave 2 of 3": where a rollout stands. */
export function whereItStands(r: { wave: number; waveCount: number; hasCanary: boolean }): string {
  if (r.wave < 0) return 'not started';
  const waves = r.hasCanary ? r.waveCount - 1 : r.waveCount;
  return r.hasCanary && r.wave === 0 ? `canary, then ${waves} wave${waves === 1 ? '' : 's'}` : `${waveLabel(r.wave, r.hasCanary)} of ${waves}`;
}

/** A wave's (or a rollout's) progress as one bar: committed, installing, failed, pending, skipped. */
export function rolloutBar(c: WaveCounts, label: string): HTMLElement {
  const installing = c.sent + c.accepted + c.installing;
  const failed = c.failed + c.rolledBack;
  const parts: [string, number][] = [
    ['committed', c.committed],
    ['installing', installing],
    ['failed', failed],
    ['pending', c.pending],
    ['skipped', c.skipped],
  ];
  const total = Math.max(1, c.size);
  const bar = h('div', { class: 'bar', role: 'img', 'aria-label': `${label}: ${parts.map(([k, n]) => `${n} ${k}`).join(', ')} of ${c.size}` });
  for (const [k, n] of parts) {
    if (n === 0) continue;
    const seg = h('span', { class: `seg-${k}`, title: `${n} ${k}` });
    seg.style.width = `${(100 * n) / total}%`;
    bar.append(seg);
  }
  return bar;
}

export const rolloutsView: ViewFactory = async (ctx, _p, q) => {
  const root = h('section', { 'aria-labelledby': 'rollouts-title' });
  const host = h('div');
  const state = q.get('state') ?? '';
  const stateSel = h(
    'select',
    { id: 'rollout-state' },
    [
      ['', 'all'],
      ['running,waiting,awaiting-approval,paused', 'under way'],
      ['draft', 'drafts'],
      ['completed', 'completed'],
      ['aborted', 'aborted'],
    ].map(([v, t]) => h('option', { value: v!, selected: v === state }, t!)),
  );
  stateSel.addEventListener('change', () => ctx.navigate(`/rollouts${query({ state: stateSel.value })}`));
  const render = async (): Promise<void> => {
    const list = await get<Rollout[]>(`/api/v1/rollouts${query({ state, limit: 200 })}`);
    replace(
      host,
      list.length === 0
        ? h('p', { class: 'muted' }, 'No rollout.')
        : h(
            'div',
            { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'Rollouts' },
            h(
              'table',
              { id: 'rollouts' },
              h('caption', { class: 'visually-hidden' }, 'Rollouts, newest first'),
              h('thead', null, h('tr', null, ['Rollout', 'State', 'Pack', 'Wave', 'Environment', 'Created'].map((t) => h('th', { scope: 'col' }, t)))),
              h(
                'tbody',
                null,
                list.map((r) =>
                  h(
                    'tr',
                    { 'data-rollout': r.id },
                    h('td', null, h('a', { href: `#/rollouts/${encodeURIComponent(r.id)}` }, r.name ?? r.id)),
                    h('td', null, badge(r.state), r.pausedReason ? ` (${r.pausedReason})` : ''),
                    h('td', null, `${r.product} ${r.version} `, h('span', { class: 'mono muted' }, shortSha(r.packSha256))),
                    h('td', null, whereItStands(r)),
                    h('td', null, r.environment ?? '—'),
                    h('td', null, time(r.createdAt), ` by ${r.createdByName}`),
                  ),
                ),
              ),
            ),
          ),
    );
  };
  await render();
  replace(
    root,
    h('h1', { id: 'rollouts-title' }, 'Rollouts'),
    h('div', { class: 'toolbar' }, h('div', null, h('label', { for: 'rollout-state' }, 'Show'), stateSel), ctx.can('operator') ? h('a', { href: '#/rollouts/new', id: 'new-rollout' }, 'New rollout') : null),
    host,
  );
  const refresh = throttled(render, 1000);
  return { title: 'Rollouts', root, onLive: (c: LiveChange) => (c.resync || c.rollouts?.length ? refresh() : undefined) };
};
