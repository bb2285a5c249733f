import { ApiError, call, patch, query } from '../api.js';
import type { LiveChange, Probe } from '../api-types.js';
import { listGap, throttled, type ViewFactory } from '../app.js';
import { ago, badge, h, notice, replace } from '../dom.js';

/**
 * The probes page: the whole fleet, paged, sorted and filtered by the server (GET /api/v1/probes
 * with q, version, channel, group, tag, health, online, outcome, sort, order, limit, offset). The
 * filters, the page, the page size and the columns are the URL's: a view can be shared. Operators
 * select rows and set the channel, groups and tags of all of them at once (PATCH /api/v1/probes).
 */
const FILTERS = ['q', 'version', 'agentBelow', 'channel', 'group', 'tag', 'health', 'online', 'outcome'] as const;

interface Column {
  readonly key: string;
  readonly label: string;
  /** The API's sort key, when the column sorts. */
  readonly sort?: string;
  readonly cell: (p: Probe) => Node | string;
}

const COLUMNS: readonly Column[] = [
  { key: 'id', label: 'Probe', sort: 'id', cell: (p) => h('a', { href: `#/probes/${encodeURIComponent(p.id)}` }, p.id) },
  { key: 'online', label: 'Online', sort: 'online', cell: (p) => badge(p.online ? 'online' : 'offline') },
  { key: 'health', label: 'Health', sort: 'health', cell: (p) => badge(p.health) },
  { key: 'version', label: 'Version', sort: 'version', cell: (p) => p.version ?? '—' },
  { key: 'channel', label: 'Channel', sort: 'channel', cell: (p) => p.channel },
  { key: 'groups', label: 'Groups', cell: (p) => p.groups.join(', ') },
  { key: 'tags', label: 'Tags', cell: (p) => p.tags.join(', ') },
  { key: 'outcome', label: 'Last deployment', sort: 'outcome', cell: (p) => (p.lastDeployment ? h('span', null, badge(p.lastDeployment.outcome), ' ', p.lastDeployment.errorCode ?? '') : '—') },
  { key: 'lastSeen', label: 'Last seen', sort: 'lastSeen', cell: (p) => ago(p.lastSeen) },
  { key: 'slot', label: 'Slot', cell: (p) => p.slot ?? '—' },
  { key: 'agent', label: 'Agent', cell: (p) => p.agentVersion ?? '—' },
];
const DEFAULT_COLUMNS = ['id', 'online', 'health', 'version', 'channel', 'groups', 'outcome', 'lastSeen'];
const SIZES = [25, 50, 100, 200];

function select(id: string, label: string, value: string, options: readonly (readonly [string, string])[]): HTMLElement {
  return h('div', null, h('label', { for: id }, label), h('select', { id, name: id.replace(/^f-/, '') }, options.map(([v, t]) => h('option', { value: v, selected: v === value }, t))));
}

export const probesView: ViewFactory = async (ctx, _params, q) => {
  const size = SIZES.includes(Number(q.get('size'))) ? Number(q.get('size')) : 50;
  const page = Math.max(1, Math.floor(Number(q.get('page') ?? '1')) || 1);
  const sort = q.get('sort') ?? 'id';
  const order = q.get('order') === 'desc' ? 'desc' : 'asc';
  const cols = (q.get('cols') ?? DEFAULT_COLUMNS.join(',')).split(',').filter((c) => COLUMNS.some((k) => k.key === c));
  const shown = COLUMNS.filter((c) => cols.includes(c.key));
  const selected = new Set<string>();

  /** The URL for this view with some parameters changed (a filter change goes back to page 1). */
  const url = (changes: Record<string, string | null>): string => {
    const next = new URLSearchParams(q);
    for (const [k, v] of Object.entries(changes)) {
      if (v === null || v === '') next.delete(k);
      else next.set(k, v);
    }
    const s = next.toString();
    return `/probes${s ? `?${s}` : ''}`;
  };

  const root = h('section', { 'aria-labelledby': 'probes-title' });
  const status = h('p', { class: 'muted', id: 'probes-count', role: 'status' });
  const tableHost = h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'Probes' });
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  const bulkHost = h('div');

  const filterForm = h(
    'form',
    { class: 'filters', id: 'probe-filters', role: 'search' },
    h('div', null, h('label', { for: 'f-q' }, 'Search'), h('input', { id: 'f-q', name: 'q', type: 'search', value: q.get('q') ?? '', placeholder: 'id, group or tag' })),
    h('div', null, h('label', { for: 'f-version' }, 'Version'), h('input', { id: 'f-version', name: 'version', value: q.get('version') ?? '', size: 10 })),
    h('div', null, h('label', { for: 'f-agentBelow' }, 'Agent older than'), h('input', { id: 'f-agentBelow', name: 'agentBelow', value: q.get('agentBelow') ?? '', size: 8 })),
    select('f-channel', 'Channel', q.get('channel') ?? '', [['', 'any'], ['stable', 'stable'], ['old-stable', 'old-stable'], ['beta', 'beta']]),
    h('div', null, h('label', { for: 'f-group' }, 'Group'), h('input', { id: 'f-group', name: 'group', value: q.get('group') ?? '', size: 10 })),
    h('div', null, h('label', { for: 'f-tag' }, 'Tag'), h('input', { id: 'f-tag', name: 'tag', value: q.get('tag') ?? '', size: 10 })),
    select('f-health', 'Health', q.get('health') ?? '', [['', 'any'], ['ok', 'ok'], ['degraded', 'degraded'], ['down', 'down'], ['unknown', 'unknown'], ['none', 'no state yet']]),
    select('f-online', 'Online', q.get('online') ?? '', [['', 'any'], ['true', 'online'], ['false', 'offline']]),
    select('f-outcome', 'Last deployment', q.get('outcome') ?? '', [['', 'any'], ['committed', 'committed'], ['failed', 'failed'], ['rolled-back', 'rolled back'], ['duplicate', 'duplicate'], ['none', 'none yet']]),
    h('button', { type: 'submit' }, 'Apply'),
    h('button', { type: 'button', class: 'secondary', id: 'f-clear' }, 'Clear'),
  );
  filterForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const data = new FormData(filterForm);
    const changes: Record<string, string | null> = { page: null };
    for (const f of FILTERS) changes[f] = String(data.get(f) ?? '').trim() || null;
    ctx.navigate(url(changes));
  });
  filterForm.querySelector('#f-clear')!.addEventListener('click', () => {
    const changes: Record<string, string | null> = { page: null };
    for (const f of FILTERS) changes[f] = null;
    ctx.navigate(url(changes));
  });

  const columnChooser = h(
    'details',
    { class: 'panel' },
    h('summary', null, 'Columns'),
    h(
      'fieldset',
      null,
      h('legend', null, 'Show these columns'),
      COLUMNS.map((c) => {
        const box = h('input', { type: 'checkbox', id: `col-${c.key}`, checked: cols.includes(c.key), disabled: c.key === 'id' });
        box.addEventListener('change', () => {
          const next = COLUMNS.filter((k) => (k.key === c.key ? box.checked : cols.includes(k.key))).map((k) => k.key);
          ctx.navigate(url({ cols: next.join(',') === DEFAULT_COLUMNS.join(',') ? null : next.join(',') }));
        });
        return h('label', { for: `col-${c.key}` }, box, ` ${c.label} `);
      }),
    ),
  );

  const bulk = (): HTMLElement => {
    const msg = h('div', { role: 'status' });
    const channel = h('select', { id: 'bulk-channel' }, [['', 'keep'], ['stable', 'stable'], ['old-stable', 'old-stable'], ['beta', 'beta']].map(([v, t]) => h('option', { value: v! }, t!)));
    const fields = ['add-group', 'remove-group', 'add-tag', 'remove-tag'].map((k) => [k, h('input', { id: `bulk-${k}`, size: 10 })] as const);
    const apply = h('button', { type: 'submit', id: 'bulk-apply' }, 'Apply to selected');
    const form = h(
      'form',
      { class: 'toolbar panel', id: 'bulk', 'aria-label': 'Change the selected probes' },
      h('strong', { id: 'bulk-count' }, `${selected.size} selected`),
      h('div', null, h('label', { for: 'bulk-channel' }, 'Channel'), channel),
      fields.map(([k, input]) => h('div', null, h('label', { for: `bulk-${k}` }, k.replace('-', ' ')), input)),
      apply,
      msg,
    );
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const v = Object.fromEntries(fields.map(([k, i]) => [k, i.value.trim()]));
      const list = (s: string | undefined) => (s ? s.split(/[\s,]+/).filter(Boolean) : undefined);
      const body = {
        probeIds: [...selected],
        ...(channel.value ? { channel: channel.value } : {}),
        ...(list(v['add-group']) ? { addGroups: list(v['add-group']) } : {}),
        ...(list(v['remove-group']) ? { removeGroups: list(v['remove-group']) } : {}),
        ...(list(v['add-tag']) ? { addTags: list(v['add-tag']) } : {}),
        ...(list(v['remove-tag']) ? { removeTags: list(v['remove-tag']) } : {}),
      };
      apply.disabled = true;
      void patch<{ updated: string[]; missing: string[] }>('/api/v1/probes', body)
        .then((r) => {
          replace(msg, notice('ok', `${r.updated.length} probes changed${r.missing.length ? `; ${r.missing.length} no longer exist` : ''}.`));
          return render();
        })
        .catch((err: unknown) => replace(msg, notice('error', `${err instanceof ApiError ? err.code : 'ERROR'}: ${(err as Error).message}`)))
        .finally(() => {
          apply.disabled = false;
        });
    });
    return form;
  };

  const render = async (): Promise<void> => {
    const filters = Object.fromEntries(FILTERS.map((f) => [f, q.get(f)]));
    const { body: probes, headers } = await call<Probe[]>('GET', `/api/v1/probes${query({ ...filters, sort, order, limit: size, offset: (page - 1) * size })}`);
    const total = Number(headers.get('x-total-count') ?? probes.length);
    const pages = Math.max(1, Math.ceil(total / size));
    status.textContent = `${total} probes match${total > 0 ? `; page ${page} of ${pages}` : ''}.`;
    const allBox = h('input', { type: 'checkbox', id: 'select-all', 'aria-label': 'Select every probe on this page' });
    allBox.addEventListener('change', () => {
      for (const p of probes) {
        if (allBox.checked) selected.add(p.id);
        else selected.delete(p.id);
      }
      void render();
    });
    const header = shown.map((c) => {
      if (!c.sort) return h('th', { scope: 'col' }, c.label);
      const active = sort === c.sort;
      const next = active && order === 'asc' ? 'desc' : 'asc';
      const b = h('button', { type: 'button', class: 'sort', 'data-sort': c.sort }, c.label);
      b.addEventListener('click', () => ctx.navigate(url({ sort: c.sort!, order: next, page: null })));
      return h('th', { scope: 'col', 'aria-sort': active ? (order === 'asc' ? 'ascending' : 'descending') : null }, b, active ? (order === 'asc' ? ' ▲' : ' ▼') : '');
    });
    replace(
      tableHost,
      h(
        'table',
        { id: 'probes' },
        h('caption', { class: 'visually-hidden' }, 'Probes'),
        h('thead', null, h('tr', null, ctx.can('operator') ? h('th', { scope: 'col' }, allBox) : null, header)),
        h(
          'tbody',
          null,
          probes.map((p) => {
            const box = h('input', { type: 'checkbox', 'aria-label': `Select ${p.id}`, checked: selected.has(p.id), 'data-probe': p.id });
            box.addEventListener('change', () => {
              if (box.checked) selected.add(p.id);
              else selected.delete(p.id);
              syncBulk();
            });
            return h('tr', { 'data-probe': p.id }, ctx.can('operator') ? h('td', null, box) : null, shown.map((c) => h('td', null, c.cell(p))));
          }),
        ),
      ),
    );
    const prev = h('a', { href: `#${url({ page: String(page - 1) })}`, 'aria-disabled': page <= 1 ? 'true' : null, id: 'page-prev' }, '← Previous');
    const next = h('a', { href: `#${url({ page: String(page + 1) })}`, 'aria-disabled': page >= pages ? 'true' : null, id: 'page-next' }, 'Next →');
    const sizeSel = h('select', { id: 'page-size' }, SIZES.map((n) => h('option', { value: String(n), selected: n === size }, `${n} per page`)));
    sizeSel.addEventListener('change', () => ctx.navigate(url({ size: sizeSel.value, page: null })));
    replace(pager, page > 1 ? prev : h('span', { class: 'muted' }, '← Previous'), h('span', null, `Page ${page} of ${pages}`), page < pages ? next : h('span', { class: 'muted' }, 'Next →'), h('label', { for: 'page-size', class: 'visually-hidden' }, 'Page size'), sizeSel);
    syncBulk();
  };

  /** Shows the bulk form while rows are selected, keeping what was typed into it across refreshes. */
  const syncBulk = (): void => {
    if (!ctx.can('operator')) return;
    if (selected.size === 0) {
      replace(bulkHost);
      return;
    }
    const count = bulkHost.querySelector('#bulk-count');
    if (count) count.textContent = `${selected.size} selected`;
    else replace(bulkHost, bulk());
  };

  try {
    await render();
  } catch (e) {
    replace(tableHost, notice('error', `${e instanceof ApiError ? e.code : 'ERROR'}: ${(e as Error).message}`));
  }
  replace(root, h('h1', { id: 'probes-title' }, 'Probes'), filterForm, columnChooser, status, bulkHost, tableHost, pager);
  let flooding = false;
  const refresh = throttled(render, listGap(() => flooding));
  return {
    title: 'Probes',
    root,
    onLive: (c: LiveChange) => {
      flooding = c.probes === '*';
      if (c.resync || c.probes === '*' || (c.probes?.length ?? 0) > 0) refresh();
    },
  };
};
