import { get, query } from '../api.js';
import type { AuditEntry } from '../api-types.js';
import type { ViewFactory } from '../app.js';
import { h, notice, replace } from '../dom.js';

/** The audit log (admins): who did what, refused calls included, newest first, paged by id. */
export const auditView: ViewFactory = async (ctx, _p, q) => {
  const root = h('section', { 'aria-labelledby': 'audit-title' });
  if (!ctx.can('admin')) {
    replace(root, h('h1', { id: 'audit-title' }, 'Audit log'), notice('info', 'The audit log is for admins.'));
    return { title: 'Audit log', root };
  }
  const before = q.get('before') ?? undefined;
  const actor = q.get('actor') ?? '';
  const action = q.get('action') ?? '';
  const entries = await get<AuditEntry[]>(`/api/v1/audit${query({ limit: 100, before, actor, action })}`);
  const actorIn = h('input', { id: 'a-actor', value: actor, placeholder: 'staff:tok_…' });
  const actionIn = h('input', { id: 'a-action', value: action, placeholder: 'POST /api/v1/packs' });
  const form = h(
    'form',
    { class: 'filters', role: 'search' },
    h('div', null, h('label', { for: 'a-actor' }, 'Actor'), actorIn),
    h('div', null, h('label', { for: 'a-action' }, 'Action'), actionIn),
    h('button', { type: 'submit' }, 'Filter'),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    ctx.navigate(`/audit${query({ actor: actorIn.value.trim(), action: actionIn.value.trim() })}`);
  });
  const last = entries.at(-1);
  replace(
    root,
    h('h1', { id: 'audit-title' }, 'Audit log'),
    form,
    h(
      'div',
      { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'Audit entries' },
      h(
        'table',
        { id: 'audit' },
        h('caption', { class: 'visually-hidden' }, 'Audit entries, newest first'),
        h('thead', null, h('tr', null, ['At', 'Who', 'What', 'Target', 'Status', 'Detail'].map((t) => h('th', { scope: 'col' }, t)))),
        h(
          'tbody',
          null,
          entries.map((e) =>
            h(
              'tr',
              null,
              h('td', null, h('time', { datetime: e.at }, e.at.replace('T', ' ').slice(0, 19))),
              h('td', null, `${e.actorName} `, h('span', { class: 'muted mono' }, e.actor)),
              h('td', null, h('code', null, e.action)),
              h('td', null, e.target ?? ''),
              h('td', null, String(e.status)),
              h('td', null, e.detail ? h('code', null, JSON.stringify(e.detail).slice(0, 300)) : ''),
            ),
          ),
        ),
      ),
    ),
    last && entries.length === 100 ? h('p', null, h('a', { href: `#/audit${query({ before: last.id, actor, action })}` }, 'Older →')) : null,
  );
  return { title: 'Audit log', root };
};
