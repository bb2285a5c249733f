import { get, query } from '../api.js';
import type { FleetSummary, LiveChange, Problem, Rollout } from '../api-types.js';
import { listGap, throttled, type ViewFactory } from '../app.js';
import { ago, badge, h, replace, svg } from '../dom.js';
import { whereItStands } from './rollouts.js';

const PROBLEM_WORDS: Record<Problem, string> = {
  offline: 'offline',
  down: 'app down',
  degraded: 'degraded',
  'failed-deployment': 'last deployment failed',
  stuck: 'stuck command',
};

/** Where each problem count links to on the probes page. */
const PROBLEM_FILTER: Record<Problem, Record<string, string>> = {
  offline: { online: 'false' },
  down: { health: 'down' },
  degraded: { health: 'degraded' },
  'failed-deployment': { outcome: 'failed' },
  stuck: {},
};

/** A horizontal bar per version, longest first: an SVG drawn from numbers, no library. */
function versionChart(byVersion: Record<string, number>): Element {
  const rows = Object.entries(byVersion).sort((a, b) => b[1] - a[1]).slice(0, 12);
  const max = Math.max(1, ...rows.map(([, n]) => n));
  const width = 420;
  const rowH = 24;
  const labelW = 110;
  const chart = svg('svg', { class: 'chart', role: 'img', width, height: rows.length * rowH + 4, viewBox: `0 0 ${width} ${rows.length * rowH + 4}`, 'aria-labelledby': 'versions-title' });
  chart.append(svg('title', { id: 'versions-title' }, `Probes by version: ${rows.map(([v, n]) => `${v} ${n}`).join(', ')}`));
  rows.forEach(([v, n], i) => {
    const y = i * rowH + 2;
    const w = Math.max(2, Math.round(((width - labelW - 60) * n) / max));
    chart.append(svg('text', { x: 0, y: y + 16 }, v === 'none' ? '(no state yet)' : v));
    chart.append(svg('rect', { class: 'v', x: labelW, y: y + 4, width: w, height: rowH - 8, rx: 2 }));
    chart.append(svg('text', { x: labelW + w + 6, y: y + 16 }, String(n)));
  });
  return chart;
}

export const overviewView: ViewFactory = async (ctx) => {
  const root = h('section', { 'aria-labelledby': 'overview-title' });
  const render = async (): Promise<void> => {
    const [s, active] = await Promise.all([
      get<FleetSummary>('/api/v1/fleet?limit=25'),
      get<Rollout[]>(`/api/v1/rollouts${query({ state: 'running,waiting,awaiting-approval,paused', limit: 20 })}`),
    ]);
    const healthCard = (k: string, label: string) =>
      h('a', { class: 'card', href: `#/probes${query({ health: k })}` }, h('div', { class: 'n' }, s.byHealth[k] ?? 0), h('div', { class: 'l' }, label));
    replace(
      root,
      h('h1', { id: 'overview-title' }, 'Fleet overview'),
      h(
        'div',
        { class: 'cards', 'aria-label': 'Counts' },
        h('a', { class: 'card', href: '#/probes' }, h('div', { class: 'n', id: 'count-total' }, s.total), h('div', { class: 'l' }, 'probes')),
        h('a', { class: 'card', href: `#/probes${query({ online: 'true' })}` }, h('div', { class: 'n', id: 'count-online' }, s.online), h('div', { class: 'l' }, 'online')),
        h('a', { class: 'card', href: `#/probes${query({ online: 'false' })}` }, h('div', { class: 'n', id: 'count-offline' }, s.offline), h('div', { class: 'l' }, 'offline')),
        healthCard('ok', 'healthy'),
        healthCard('degraded', 'degraded'),
        healthCard('down', 'app down'),
      ),
      h(
        'div',
        { class: 'grid2' },
        h('section', { class: 'panel', 'aria-labelledby': 'versions-h' }, h('h2', { id: 'versions-h' }, 'Versions'), Object.keys(s.byVersion).length ? versionChart(s.byVersion) : h('p', { class: 'muted' }, 'No probe yet.')),
        h(
          'section',
          { class: 'panel', 'aria-labelledby': 'rollouts-h' },
          h('h2', { id: 'rollouts-h' }, 'Active rollouts'),
          active.length === 0
            ? h('p', { class: 'muted' }, 'None under way.')
            : h(
                'ul',
                { class: 'plain' },
                active.map((r) => h('li', null, h('a', { href: `#/rollouts/${encodeURIComponent(r.id)}` }, r.name ?? r.id), ' ', badge(r.state), ` ${r.product} ${r.version}, ${whereItStands(r)}`)),
              ),
          ctx.can('operator') ? h('p', null, h('a', { href: '#/rollouts/new' }, 'New rollout')) : null,
        ),
      ),
      h(
        'section',
        { class: 'panel', 'aria-labelledby': 'problems-h' },
        h('h2', { id: 'problems-h' }, 'Probes with problems'),
        h(
          'p',
          { class: 'legend' },
          (Object.keys(PROBLEM_WORDS) as Problem[]).map((k) => h('a', { href: `#/probes${query(PROBLEM_FILTER[k])}` }, `${PROBLEM_WORDS[k]}: ${s.problems.counts[k] ?? 0}`)),
        ),
        s.problems.probes.length === 0
          ? h('p', { class: 'muted', id: 'no-problems' }, 'Nothing wrong right now.')
          : h(
              'div',
              { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'Probes with problems' },
              h(
                'table',
                { id: 'problems' },
                h('caption', { class: 'visually-hidden' }, 'Probes with problems, worst first'),
                h('thead', null, h('tr', null, ['Probe', 'Problems', 'Version', 'Health', 'Last deployment', 'Last seen'].map((t) => h('th', { scope: 'col' }, t)))),
                h(
                  'tbody',
                  null,
                  s.problems.probes.map((p) =>
                    h(
                      'tr',
                      null,
                      h('td', null, h('a', { href: `#/probes/${encodeURIComponent(p.id)}` }, p.id)),
                      h('td', null, p.problems.map((k) => [badge(k), ' '])),
                      h('td', null, p.version ?? '—'),
                      h('td', null, badge(p.health)),
                      h('td', null, p.lastDeployment ? [badge(p.lastDeployment.outcome), ' ', p.lastDeployment.errorCode ?? ''] : '—'),
                      h('td', null, ago(p.lastSeen)),
                    ),
                  ),
                ),
              ),
            ),
      ),
    );
  };
  await render();
  let flooding = false;
  const refresh = throttled(render, listGap(() => flooding));
  return {
    title: 'Overview',
    root,
    onLive: (c: LiveChange) => {
      flooding = c.probes === '*';
      if (c.resync || c.probes === '*' || (c.probes?.length ?? 0) > 0 || (c.rollouts?.length ?? 0) > 0) refresh();
    },
  };
};
