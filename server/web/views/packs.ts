import { ApiError, call, get, query, upload } from '../api.js';
import type { LiveChange, Pack, PackDetail, Rollout } from '../api-types.js';
import { throttled, type ViewFactory } from '../app.js';
import { badge, bytes, h, notice, replace, shortSha, time } from '../dom.js';

/**
 * Packs: the list, the upload (streamed from disk with a progress bar; the server verifies the
 * pack exactly as a probe would and answers its verdict with a code), and each pack's page:
 * manifest, release notes, the signer's chain as the keyring judges it today, and where the
 * pack is deployed (its rollouts, and how many probes run its version).
 */
export const packsView: ViewFactory = async (ctx) => {
  const root = h('section', { 'aria-labelledby': 'packs-title' });
  const listHost = h('div');
  const verdict = h('div', { id: 'upload-verdict' });

  const uploader = (): HTMLElement => {
    const file = h('input', { type: 'file', id: 'pack-file', accept: '.spk,application/octet-stream', required: true });
    const bar = h('progress', { id: 'upload-progress', max: 100, value: 0, 'aria-label': 'Upload progress' });
    const label = h('span', { class: 'muted', id: 'upload-status' });
    const send = h('button', { type: 'submit', id: 'upload-button' }, 'Upload and verify');
    const form = h(
      'form',
      { class: 'panel', id: 'upload-form', 'aria-labelledby': 'upload-h' },
      h('h2', { id: 'upload-h' }, 'Upload a pack'),
      h('div', { class: 'field' }, h('label', { for: 'pack-file' }, 'Service pack (.spk)'), file),
      send,
      h('div', { class: 'field' }, bar, label),
      verdict,
    );
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const f = file.files?.[0];
      if (!f) return;
      send.disabled = true;
      replace(verdict);
      const started = Date.now();
      void upload<Pack & { created: boolean }>('/api/v1/packs', f, (sent, total) => {
        bar.value = total > 0 ? Math.round((100 * sent) / total) : 0;
        label.textContent = `${bytes(sent)} of ${bytes(total)} sent`;
      })
        .then((p) => {
          bar.value = 100;
          label.textContent = `sent in ${((Date.now() - started) / 1000).toFixed(1)} s`;
          replace(
            verdict,
            notice(
              'ok',
              h('strong', null, p.created ? 'Verified and stored: ' : 'Verified; the server already held it: '),
              h('a', { href: `#/packs/${p.sha256}` }, `${p.product} ${p.version}`),
              ` (${p.kind}, signed by ${p.signer})`,
            ),
          );
          return render();
        })
        .catch((err: unknown) => {
          const code = err instanceof ApiError ? err.code : 'ERROR';
          replace(verdict, notice('error', h('strong', null, 'Refused: '), h('code', { class: 'error-code' }, code), ` ${(err as Error).message}`));
        })
        .finally(() => {
          send.disabled = false;
        });
    });
    return form;
  };

  const render = async (): Promise<void> => {
    const packs = await get<Pack[]>('/api/v1/packs');
    replace(
      listHost,
      packs.length === 0
        ? h('p', { class: 'muted' }, 'No pack yet.')
        : h(
            'div',
            { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'Packs' },
            h(
              'table',
              { id: 'packs' },
              h('caption', { class: 'visually-hidden' }, 'Packs'),
              h('thead', null, h('tr', null, ['Pack', 'Product', 'Version', 'Kind', 'Size', 'Signer', 'Uploaded'].map((t) => h('th', { scope: 'col' }, t)))),
              h(
                'tbody',
                null,
                packs.map((p) =>
                  h(
                    'tr',
                    null,
                    h('td', null, h('a', { href: `#/packs/${p.sha256}`, class: 'mono' }, shortSha(p.sha256))),
                    h('td', null, p.product),
                    h('td', null, p.version),
                    h('td', null, p.kind, p.encrypted ? ' (encrypted)' : ''),
                    h('td', null, bytes(p.size)),
                    h('td', null, p.signer),
                    h('td', null, time(p.uploadedAt), ` by ${p.uploadedBy}`),
                  ),
                ),
              ),
            ),
          ),
    );
  };
  await render();
  replace(root, h('h1', { id: 'packs-title' }, 'Packs'), ctx.can('operator') ? uploader() : null, h('h2', null, 'Stored packs'), listHost);
  const refresh = throttled(render, 1000);
  return { title: 'Packs', root, onLive: (c: LiveChange) => (c.resync || c.packs ? refresh() : undefined) };
};

export const packView: ViewFactory = async (ctx, params) => {
  const sha = params[0]!;
  const root = h('section', { 'aria-labelledby': 'pack-title' });
  const render = async (): Promise<void> => {
    const p = await get<PackDetail>(`/api/v1/packs/${sha}`);
    const [rollouts, running] = await Promise.all([
      get<Rollout[]>(`/api/v1/rollouts${query({ pack: sha, limit: 50 })}`),
      call<unknown[]>('GET', `/api/v1/probes${query({ version: p.version, limit: 1 })}`),
    ]);
    const onVersion = Number(running.headers.get('x-total-count') ?? 0);
    const chain = p.signerChain;
    replace(
      root,
      h('p', null, h('a', { href: '#/packs' }, '← Packs')),
      h('h1', { id: 'pack-title' }, `${p.product} ${p.version}`),
      h(
        'dl',
        { class: 'kv panel' },
        [
          ['sha256', h('code', null, p.sha256)],
          ['Kind', `${p.kind}${p.encrypted ? ', encrypted' : ''}`],
          ['Size', bytes(p.size)],
          ['Compatible', p.compatible.join(', ') || '—'],
          ['Requires', p.requires ?? 'any version'],
          ['Security version', String(p.securityVersion)],
          ['Created', p.createdAt],
          ['Uploaded', `${p.uploadedAt} by ${p.uploadedBy}`],
          ['Payloads', p.payloads.map((x) => `${x.name} (${x.type}, ${bytes(x.size)})`).join(', ')],
        ].map(([k, v]) => [h('dt', null, k as string), h('dd', null, v as string | Node)]),
      ),
      h(
        'section',
        { class: 'panel', 'aria-labelledby': 'signer-h' },
        h('h2', { id: 'signer-h' }, 'Signer and chain'),
        chain.trusted
          ? notice('ok', 'The keyring trusts this signer today.')
          : notice('error', h('strong', null, 'The keyring no longer trusts this signer: '), h('code', { class: 'error-code' }, chain.code ?? ''), ` ${chain.message ?? ''}`),
        chain.chain.length
          ? h(
              'ol',
              { id: 'chain' },
              chain.chain.map((c) => h('li', null, h('strong', null, c.subject), h('br'), h('span', { class: 'muted' }, `issued by ${c.issuer}; valid ${c.validFrom.slice(0, 10)} to ${c.validTo.slice(0, 10)}; SHA-256 ${c.fingerprint256}`))),
            )
          : h('p', null, `Signer: ${p.signer}`),
      ),
      h(
        'section',
        { class: 'panel', 'aria-labelledby': 'deployed-h' },
        h('h2', { id: 'deployed-h' }, 'Where it is deployed'),
        h('p', null, h('a', { href: `#/probes${query({ version: p.version })}` }, `${onVersion} probes`), ` report version ${p.version}.`),
        rollouts.length === 0
          ? h('p', { class: 'muted' }, 'No rollout of this pack.')
          : h('ul', null, rollouts.map((r) => h('li', null, h('a', { href: `#/rollouts/${encodeURIComponent(r.id)}` }, r.name ?? r.id), ' ', badge(r.state), r.environment ? ` ${r.environment}` : ''))),
        ctx.can('operator') ? h('p', null, h('a', { href: `#/rollouts/new?pack=${sha}` }, 'Roll this pack out')) : null,
      ),
      h('section', { class: 'panel', 'aria-labelledby': 'notes-h' }, h('h2', { id: 'notes-h' }, 'Release notes'), p.releaseNotes ? h('pre', { class: 'notes' }, p.releaseNotes) : h('p', { class: 'muted' }, 'None.')),
      h('details', { class: 'panel' }, h('summary', null, 'Manifest'), h('pre', null, JSON.stringify(p.manifest, null, 2))),
    );
  };
  await render();
  const refresh = throttled(render, 2000);
  return { title: `Pack ${shortSha(sha)}`, root, onLive: (c: LiveChange) => (c.resync || c.rollouts?.length ? refresh() : undefined) };
};
