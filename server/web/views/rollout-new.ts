import { ApiError, get, post } from '../api.js';
import type { Pack, Rollout } from '../api-types.js';
import type { ViewFactory } from '../app.js';
import { h, notice, replace } from '../dom.js';

/**
 * A rollout's creation form: everything POST /api/v1/rollouts takes (pack, target, canary,
 * waves, thresholds, wait or approval between waves, maintenance windows, environment, download
 * limits, the agent update sent first to probes too old for the pack, draft). The server judges the definition; its refusal is shown with its code.
 */
function field(id: string, label: string, input: HTMLElement, help?: string): HTMLElement {
  return h('div', { class: 'field' }, h('label', { for: id }, label), input, help ? h('p', { class: 'help', id: `${id}-help` }, help) : null);
}

const num = (el: HTMLInputElement): number | undefined => (el.value.trim() === '' ? undefined : Number(el.value));
const list = (el: HTMLInputElement | HTMLTextAreaElement): string[] => el.value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);

export const rolloutNewView: ViewFactory = async (ctx, _p, q) => {
  const root = h('section', { 'aria-labelledby': 'new-title' });
  if (!ctx.can('operator')) {
    replace(root, h('h1', { id: 'new-title' }, 'New rollout'), notice('info', 'Creating a rollout needs the operator role.'));
    return { title: 'New rollout', root };
  }
  const packs = (await get<Pack[]>('/api/v1/packs')).filter((p) => p.kind !== 'trust');
  const message = h('div', { id: 'create-message' });
  const i = (id: string, attrs: Record<string, string | number | boolean> = {}) => h('input', { id, name: id, ...attrs });
  const name = i('r-name', { maxlength: 100 });
  const pack = h('select', { id: 'r-pack', name: 'r-pack', required: true }, packs.map((p) => h('option', { value: p.sha256, selected: p.sha256 === q.get('pack') }, `${p.product} ${p.version} (${p.sha256.slice(0, 12)})`)));
  const channel = h('select', { id: 'r-channel' }, [['', 'any'], ['stable', 'stable'], ['old-stable', 'old-stable'], ['beta', 'beta']].map(([v, t]) => h('option', { value: v! }, t!)));
  const group = i('r-group');
  const tag = i('r-tag');
  const probeIds = h('textarea', { id: 'r-probes', rows: 2, cols: 40 });
  const agentBelow = i('r-agent-below', { size: 12, placeholder: '0.2.0' });
  const canaryKind = h('select', { id: 'r-canary-kind' }, [['none', 'no canary'], ['probes', 'a number of probes'], ['percent', 'a percentage'], ['probeIds', 'named probes']].map(([v, t]) => h('option', { value: v! }, t!)));
  const canaryValue = i('r-canary', { size: 30 });
  const waves = i('r-waves', { value: '100', size: 20 });
  const success = i('r-success', { type: 'number', min: 0, max: 100, value: 90 });
  const errors = i('r-errors', { type: 'number', min: 0, max: 100, value: 10 });
  const advance = h('select', { id: 'r-advance' }, [['wait', 'wait, then go on'], ['approval', 'wait for an approval']].map(([v, t]) => h('option', { value: v! }, t!)));
  const waitSeconds = i('r-wait', { type: 'number', min: 0, value: 600 });
  const skipCurrent = i('r-skip', { type: 'checkbox', checked: true });
  const windows = h('textarea', { id: 'r-windows', rows: 2, cols: 40, placeholder: '22:00-04:00 +01:00 mon,tue,wed' });
  const agentFirst = h(
    'select',
    { id: 'r-agent-first' },
    [h('option', { value: '' }, 'none'), ...packs.filter((p) => p.kind === 'agent').map((p) => h('option', { value: p.sha256 }, `${p.product} ${p.version} (${p.sha256.slice(0, 12)})`))],
  );
  const environment = h('select', { id: 'r-env' }, [['', 'none'], ['integration', 'integration'], ['qa', 'qa'], ['uat', 'uat'], ['production', 'production']].map(([v, t]) => h('option', { value: v! }, t!)));
  const cap = i('r-cap', { type: 'number', min: 1, placeholder: 'KiB/s' });
  const dlWindow = i('r-dl-window', { placeholder: '01:00-05:00@Europe/Paris', size: 28 });
  const draft = i('r-draft', { type: 'checkbox' });
  const submit = h('button', { type: 'submit', id: 'r-create' }, 'Create rollout');

  const form = h(
    'form',
    { id: 'rollout-form' },
    h(
      'fieldset',
      null,
      h('legend', null, 'What'),
      field('r-name', 'Name (optional)', name),
      field('r-pack', 'Pack', pack),
      field('r-agent-first', 'Agent update first (optional)', agentFirst, "An agent pack that probes whose agent is older than the pack's minAgentVersion install first."),
      field('r-env', 'Environment (promotion gate)', environment),
    ),
    h(
      'fieldset',
      null,
      h('legend', null, 'Which probes'),
      h('p', { class: 'help' }, 'Every field given must match; give at least one.'),
      field('r-channel', 'Channel', channel),
      field('r-group', 'Group', group),
      field('r-tag', 'Tag', tag),
      field('r-probes', 'Probe ids', probeIds, 'Separated by spaces or commas.'),
      field('r-agent-below', 'Agents older than', agentBelow, 'Only probes whose agent reports an older version.'),
    ),
    h(
      'fieldset',
      null,
      h('legend', null, 'How'),
      field('r-canary-kind', 'Canary (first wave)', canaryKind),
      field('r-canary', 'Canary size or probes', canaryValue, 'A number, a percentage, or probe ids, as chosen above.'),
      field('r-waves', 'Waves (cumulative %)', waves, 'e.g. 10, 50, 100: the last must be 100.'),
      field('r-success', 'A wave passes at (% committed)', success),
      field('r-errors', 'Pause when failures exceed (%)', errors),
      field('r-advance', 'Between waves', advance),
      field('r-wait', 'Wait (seconds)', waitSeconds),
      h('div', { class: 'field' }, skipCurrent, h('label', { for: 'r-skip' }, ' Skip probes already on this version')),
    ),
    h(
      'fieldset',
      null,
      h('legend', null, 'When'),
      field('r-windows', 'Maintenance windows (one per line)', windows, 'HH:MM-HH:MM, then an optional UTC offset and days; none: any time.'),
      field('r-cap', 'Download cap (KiB/s, optional)', cap),
      field('r-dl-window', 'Download window (optional)', dlWindow, 'HH:MM-HH:MM@Zone, in the probe\'s local time.'),
      h('div', { class: 'field' }, draft, h('label', { for: 'r-draft' }, ' Create as a draft (start it later)')),
    ),
    submit,
    message,
  );

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    let body: Record<string, unknown>;
    try {
      body = buildBody();
    } catch (err) {
      replace(message, notice('error', (err as Error).message));
      return;
    }
    submit.disabled = true;
    void post<Rollout>('/api/v1/rollouts', body)
      .then((r) => ctx.navigate(`/rollouts/${encodeURIComponent(r.id)}`))
      .catch((err: unknown) => replace(message, notice('error', h('code', { class: 'error-code' }, err instanceof ApiError ? err.code : 'ERROR'), ` ${(err as Error).message}`)))
      .finally(() => {
        submit.disabled = false;
      });
  });

  function buildBody(): Record<string, unknown> {
    const target: Record<string, unknown> = {};
    if (channel.value) target['channel'] = channel.value;
    if (group.value.trim()) target['group'] = group.value.trim();
    if (tag.value.trim()) target['tag'] = tag.value.trim();
    if (list(probeIds).length) target['probeIds'] = list(probeIds);
    if (agentBelow.value.trim()) target['agentBelow'] = agentBelow.value.trim();
    const strategy: Record<string, unknown> = {
      waves: list(waves).map(Number),
      successThreshold: (num(success) ?? 90) / 100,
      errorThreshold: (num(errors) ?? 10) / 100,
      advance: advance.value === 'approval' ? { mode: 'approval' } : { mode: 'wait', seconds: num(waitSeconds) ?? 0 },
      skipCurrent: skipCurrent.checked,
    };
    if (canaryKind.value === 'probes') strategy['canary'] = { probes: Number(canaryValue.value) };
    if (canaryKind.value === 'percent') strategy['canary'] = { percent: Number(canaryValue.value) };
    if (canaryKind.value === 'probeIds') strategy['canary'] = { probeIds: list(canaryValue) };
    const win = windows.value
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean)
      .map((l) => {
        const m = /^(\d\d:\d\d)-(\d\d:\d\d)(?:\s+(Z|[+-]\d\d:\d\d))?(?:\s+([a-z,]+))?$/.exec(l);
        if (!m) throw new Error(`Maintenance window "${l}": write HH:MM-HH:MM, then an optional offset (+01:00) and days (mon,tue).`);
        return { start: m[1], end: m[2], ...(m[3] ? { utcOffset: m[3] } : {}), ...(m[4] ? { days: m[4].split(',') } : {}) };
      });
    const download: Record<string, unknown> = {};
    if (num(cap) !== undefined) download['maxBytesPerSecond'] = Math.round(num(cap)! * 1024);
    if (dlWindow.value.trim()) {
      const m = /^(\d\d:\d\d)-(\d\d:\d\d)@(.+)$/.exec(dlWindow.value.trim());
      if (!m) throw new Error('Download window: write HH:MM-HH:MM@Zone, e.g. 01:00-05:00@Europe/Paris.');
      download['window'] = { start: m[1], end: m[2], timeZone: m[3] };
    }
    return {
      ...(name.value.trim() ? { name: name.value.trim() } : {}),
      packSha256: pack.value,
      ...(agentFirst.value ? { agentPackSha256: agentFirst.value } : {}),
      ...(environment.value ? { environment: environment.value } : {}),
      target,
      strategy,
      windows: win,
      ...(Object.keys(download).length ? { download } : {}),
      draft: draft.checked,
    };
  }

  replace(root, h('p', null, h('a', { href: '#/rollouts' }, '← Rollouts')), h('h1', { id: 'new-title' }, 'New rollout'), packs.length ? form : notice('info', 'Upload a pack first.'));
  return { title: 'New rollout', root };
};
