import { ApiError, del, get, post } from '../api.js';
import type { TokenView } from '../api-types.js';
import type { ViewFactory } from '../app.js';
import { h, notice, replace, time } from '../dom.js';

/** Staff tokens (admins): create one (its secret is shown once, here), list, revoke. */
export const tokensView: ViewFactory = async (ctx) => {
  const root = h('section', { 'aria-labelledby': 'tokens-title' });
  if (!ctx.can('admin')) {
    replace(root, h('h1', { id: 'tokens-title' }, 'Tokens'), notice('info', 'Token management is for admins.'));
    return { title: 'Tokens', root };
  }
  const host = h('div');
  const message = h('div', { id: 'token-message' });
  const name = h('input', { id: 't-name', required: true, maxlength: 100 });
  const role = h('select', { id: 't-role' }, ['viewer', 'operator', 'admin'].map((r) => h('option', { value: r }, r)));
  const form = h(
    'form',
    { class: 'toolbar panel', id: 'token-form', 'aria-label': 'Create a staff token' },
    h('div', null, h('label', { for: 't-name' }, 'Name'), name),
    h('div', null, h('label', { for: 't-role' }, 'Role'), role),
    h('button', { type: 'submit' }, 'Create token'),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    void post<{ id: string; name: string; role: string; token: string }>('/api/v1/tokens', { name: name.value.trim(), role: role.value })
      .then((t) => {
        name.value = '';
        replace(message, notice('ok', `Token ${t.id} for ${t.name} (${t.role}). Copy it now: it is not shown again.`, h('div', { class: 'secret', id: 'new-secret' }, t.token)));
        return render();
      })
      .catch((err: unknown) => replace(message, notice('error', `${err instanceof ApiError ? err.code : 'ERROR'}: ${(err as Error).message}`)));
  });
  const render = async (): Promise<void> => {
    const tokens = (await get<TokenView[]>('/api/v1/tokens')).filter((t) => t.kind === 'staff');
    replace(
      host,
      h(
        'div',
        { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': 'Staff tokens' },
        h(
          'table',
          { id: 'tokens' },
          h('caption', { class: 'visually-hidden' }, 'Staff tokens'),
          h('thead', null, h('tr', null, ['Id', 'Name', 'Role', 'Created', 'Revoked', ''].map((t) => h('th', { scope: 'col' }, t)))),
          h(
            'tbody',
            null,
            tokens.map((t) => {
              const revoke = h('button', { type: 'button', class: 'danger', 'data-token': t.id, disabled: t.revokedAt !== null || t.id === ctx.session.tokenId }, 'Revoke');
              revoke.addEventListener('click', () => {
                if (!window.confirm(`Revoke ${t.name}'s token? Its sessions end at once.`)) return;
                void del(`/api/v1/tokens/${encodeURIComponent(t.id)}`)
                  .then(() => render())
                  .catch((err: unknown) => replace(message, notice('error', `${err instanceof ApiError ? err.code : 'ERROR'}: ${(err as Error).message}`)));
              });
              return h(
                'tr',
                null,
                h('td', { class: 'mono' }, t.id),
                h('td', null, t.name, t.id === ctx.session.tokenId ? ' (you)' : ''),
                h('td', null, t.role ?? ''),
                h('td', null, time(t.createdAt)),
                h('td', null, t.revokedAt ? time(t.revokedAt) : ''),
                h('td', null, revoke),
              );
            }),
          ),
        ),
      ),
    );
  };
  await render();
  replace(root, h('h1', { id: 'tokens-title' }, 'Staff tokens'), form, message, host);
  return { title: 'Tokens', root };
};
