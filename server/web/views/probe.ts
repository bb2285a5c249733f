import { ApiError, get, post } from '../api.js';
import type { Deployment, LiveChange, ProbeDetail, Receipt } from '../api-types.js';
import { throttled, type ViewFactory } from '../app.js';
import { ago, badge, bytes, h, notice, replace, seconds, time } from '../dom.js';

/**
 * One probe: its live state, its deployments (open one for its receipt: each state with its
 * time, the reason and the app's last words on failure), its recent commands and events.
 */
function receiptView(r: Receipt): HTMLElement {
  return h(
    'div',
    { class: 'receipt', 'data-deployment': r.deployment.deploymentId },
    r.outcome
      ? h(
          'p',
          null,
          badge(r.outcome.outcome),
          r.outcome.code ? [' ', h('code', { class: 'error-code' }, r.outcome.code)] : null,
          r.outcome.message ? h('span', { class: 'reason' }, ` ${r.outcome.message}`) : null,
        )
      : h('p', { class: 'muted' }, 'No outcome yet.'),
    h(
      'table',
      null,
      h('caption', null, 'Timings'),
      h('thead', null, h('tr', null, h('th', { scope: 'col' }, 'Step'), h('th', { scope: 'col' }, 'At'), h('th', { scope: 'col' }, 'Took'))),
      h('tbody', null, r.steps.map((s) => h('tr', null, h('td', null, s.state), h('td', null, h('time', { datetime: s.at }, new Date(s.at).toLocaleTimeString())), h('td', null, seconds(s.seconds))))),
    ),
  );
}

function stateList(state: Record<string, unknown> | null): HTMLElement {
  if (!state) return h('p', { class: 'muted' }, 'This probe has not reported a state yet.');
  const disk = state['disk'] as { freeBytes: number; totalBytes: number } | undefined;
  const inbox = state['inbox'] as { waiting: number; incomplete: number } | undefined;
  const rows: [string, string][] = [
    ['Product', String(state['product'] ?? '—')],
    ['Release', String(state['version'] ?? '—')],
    ['App version', String(state['appVersion'] ?? '—')],
    ['Slot', String(state['slot'] ?? '—')],
    ['Database version', String(state['dbVersion'] ?? '—')],
    ['Config version', String(state['configVersion'] ?? '—')],
    ['App running', state['appRunning'] ? 'yes' : 'no'],
    ['Busy installing', state['busy'] ? 'yes' : 'no'],
    ['Agent', String(state['agentVersion'] ?? '—')],
    ['Disk free', disk ? `${bytes(disk.freeBytes)} of ${bytes(disk.totalBytes)}` : '—'],
    ['Inbox', inbox ? `${inbox.waiting} waiting, ${inbox.incomplete} incomplete` : '—'],
    ['Up for', typeof state['uptimeSeconds'] === 'number' ? seconds(state['uptimeSeconds']) : '—'],
  ];
  return h('dl', { class: 'kv', id: 'probe-state' }, rows.map(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

export const probeView: ViewFactory = async (ctx, params) => {
  const id = params[0]!;
  const root = h('section', { 'aria-labelledby': 'probe-title' });
  const open = new Set<string>();
  const receipts = new Map<string, Receipt>();
  const message = h('div');

  const deploymentRow = (d: Deployment): HTMLElement[] => {
    const toggle = h('button', { type: 'button', class: 'secondary', 'aria-expanded': open.has(d.deploymentId) ? 'true' : 'false', 'data-receipt': d.deploymentId }, open.has(d.deploymentId) ? 'Hide receipt' : 'Receipt');
    toggle.addEventListener('click', () => {
      if (open.has(d.deploymentId)) open.delete(d.deploymentId);
      else open.add(d.deploymentId);
      void render();
    });
    const row = h(
      'tr',
      null,
      h('td', null, h('code', null, d.deploymentId)),
      h('td', null, d.version ?? '—'),
      h('td', null, badge(d.outcome ?? d.state ?? 'pending')),
      h('td', null, d.errorCode ? h('code', null, d.errorCode) : ''),
      h('td', null, time(d.startedAt)),
      h('td', null, toggle),
    );
    const r = receipts.get(d.deploymentId);
    return open.has(d.deploymentId) && r ? [row, h('tr', null, h('td', { colspan: 6 }, receiptView(r)))] : [row];
  };

  const render = async (): Promise<void> => {
    const p = await get<ProbeDetail>(`/api/v1/probes/${encodeURIComponent(id)}`);
    await Promise.all(
      [...open].map(async (dep) => {
        receipts.set(dep, await get<Receipt>(`/api/v1/probes/${encodeURIComponent(id)}/deployments/${encodeURIComponent(dep)}`));
      }),
    );
    const actions = ctx.can('operator')
      ? h(
          'div',
          { class: 'actions' },
          (
            [
              ['report-now', 'Ask for a report now', { type: 'report-now' }],
              ['rollback', 'Roll back to the previous release', { type: 'rollback' }],
            ] as const
          ).map(([k, label, body]) => {
            const b = h('button', { type: 'button', class: k === 'rollback' ? 'danger' : 'secondary', id: `action-${k}` }, label);
            b.addEventListener('click', () => {
              if (k === 'rollback' && !window.confirm(`Roll ${id} back to its previous committed release?`)) return;
              b.disabled = true;
              void post<{ commandId: string; status: string }>(`/api/v1/probes/${encodeURIComponent(id)}/commands`, body)
                .then((c) => replace(message, notice('ok', `Command ${c.commandId}: ${c.status}.`)))
                .catch((e: unknown) => replace(message, notice('error', `${e instanceof ApiError ? e.code : 'ERROR'}: ${(e as Error).message}`)))
                .finally(() => {
                  b.disabled = false;
                });
            });
            return b;
          }),
        )
      : null;
    replace(
      root,
      h('p', null, h('a', { href: '#/probes' }, '← Probes')),
      h('h1', { id: 'probe-title' }, `Probe ${p.id}`),
      h(
        'p',
        null,
        badge(p.online ? 'online' : 'offline'),
        ' ',
        badge(p.health),
        ` ${p.version ?? 'no release reported'} · channel ${p.channel} · groups ${p.groups.join(', ') || '—'} · tags ${p.tags.join(', ') || '—'} · last seen ${ago(p.lastSeen)}`,
      ),
      actions,
      message,
      h('div', { class: 'grid2' }, h('section', { class: 'panel', 'aria-labelledby': 'state-h' }, h('h2', { id: 'state-h' }, 'State'), stateList(p.state)), h(
        'section',
        { class: 'panel', 'aria-labelledby': 'commands-h' },
        h('h2', { id: 'commands-h' }, 'Recent commands'),
        p.commands.length === 0
          ? h('p', { class: 'muted' }, 'None.')
          : h('ul', null, p.commands.slice(0, 10).map((c) => h('li', null, `${c.type} `, badge(c.status), c.errorCode ? ` ${c.errorCode}` : '', ' ', time(c.createdAt)))),
      )),
      h(
        'section',
        { class: 'panel', 'aria-labelledby': 'deployments-h' },
        h('h2', { id: 'deployments-h' }, 'Deployments'),
        p.deployments.length === 0
          ? h('p', { class: 'muted' }, 'None yet.')
          : h(
              'div',
              { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'Deployments' },
              h(
                'table',
                { id: 'deployments' },
                h('caption', { class: 'visually-hidden' }, 'Deployments, newest first'),
                h('thead', null, h('tr', null, ['Deployment', 'Version', 'Outcome', 'Code', 'Started', ''].map((t) => h('th', { scope: 'col' }, t)))),
                h('tbody', null, p.deployments.map(deploymentRow)),
              ),
            ),
      ),
      h(
        'section',
        { class: 'panel', 'aria-labelledby': 'events-h' },
        h('h2', { id: 'events-h' }, 'Recent events'),
        h(
          'div',
          { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'Recent events' },
          h(
            'table',
            { id: 'events' },
            h('caption', { class: 'visually-hidden' }, 'Recent events, newest first'),
            h('thead', null, h('tr', null, ['#', 'Event', 'Detail', 'At'].map((t) => h('th', { scope: 'col' }, t)))),
            h(
              'tbody',
              null,
              [...p.events].reverse().slice(0, 40).map((e) =>
                h('tr', null, h('td', null, e.seq), h('td', null, e.type), h('td', null, [e.state, e.outcome, e.code, e.version, e.message].filter(Boolean).join(' · ')), h('td', null, time(e.at))),
              ),
            ),
          ),
        ),
      ),
    );
  };
  await render();
  const refresh = throttled(render, 1000);
  return {
    title: `Probe ${id}`,
    root,
    onLive: (c: LiveChange) => {
      if (c.resync || c.probes === '*' || c.probes?.includes(id) || c.events?.some((e) => e.probeId === id) || c.commands?.some((x) => x.probeId === id)) refresh();
    },
  };
};
