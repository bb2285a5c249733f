import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import type { RouteDoc, ServerContext, ServerModule } from '../context.js';
import { ServerError } from '../errors.js';
import { parseWith } from '../http/replies.js';
import { commandParam, noBody, probeParam } from '../http/schemas.js';
import { commandView } from '../http/views.js';
import { TERMINAL_STATUSES } from '../store/types.js';
import { DiagnosticsStore, parseContentRange } from './diagnostics-store.js';
import { commandViewSchema, diagnosticsEntrySchema, uploadProgressSchema } from '../http/response-schemas.js';

/**
 * Remote diagnostics (issue 23): staff ask a probe for a bundle, the probe uploads it over HTTP
 * (resumable, size-capped, only against a diagnose command addressed to it), staff list and
 * download it. Requests are audited like every mutating call; a viewer may list, not request or
 * download (a bundle shows the probe's inner workings, its secrets masked).
 */
const uploadParams = z.object({ id: z.string(), commandId: z.string() }).strict();
const sha256Header = z.string().regex(/^[0-9a-f]{64}$/);

export const DIAGNOSTICS_ROUTES: readonly RouteDoc[] = [
  {
    method: 'POST',
    path: '/api/v1/probes/{id}/diagnose',
    tag: 'diagnostics',
    summary: 'Ask a probe for a diagnostics bundle (a diagnose command; an offline probe answers when it next connects)',
    access: 'operator',
    returns: { '202': commandViewSchema },
    responses: { '202': 'the command', '404': 'PROBE_NOT_FOUND' },
  },
  {
    method: 'GET',
    path: '/api/v1/probes/{id}/diagnostics',
    tag: 'diagnostics',
    summary: "The probe's diagnostics bundles, newest first",
    access: 'viewer',
    returns: { '200': z.array(diagnosticsEntrySchema) },
    responses: { '200': 'an array of { commandId, probeId, size, sha256, requestedAt, receivedAt }' },
  },
  {
    method: 'GET',
    path: '/api/v1/diagnostics/{commandId}',
    tag: 'diagnostics',
    summary: 'Download a diagnostics bundle (tar.gz)',
    access: 'operator',
    responseHeaders: { '200': { 'X-Sonde-Sha256': 'the bundle sha256', 'Content-Disposition': 'attachment; filename=…' } },
    returns: { '200': 'application/gzip' },
    responses: { '200': 'application/gzip', '404': 'NOT_FOUND' },
  },
  {
    method: 'GET',
    path: '/api/v1/probes/{id}/diagnostics/{commandId}',
    tag: 'diagnostics',
    summary: 'The probe itself: how much of its bundle the server holds (also as HEAD: Upload-Offset, X-Sonde-Complete)',
    access: 'probe-self',
    responseHeaders: { '200': { 'Upload-Offset': 'bytes of the bundle the server holds', 'X-Sonde-Complete': 'true once the whole bundle is held' } },
    returns: { '200': uploadProgressSchema },
    responses: { '200': '{ receivedBytes, complete }', '404': 'NOT_FOUND' },
  },
  {
    method: 'PUT',
    path: '/api/v1/probes/{id}/diagnostics/{commandId}',
    tag: 'diagnostics',
    summary: 'The probe itself: upload (a range of) its bundle, Content-Range and X-Sonde-Sha256 required',
    access: 'probe-self',
    requestHeaders: { 'Content-Range': 'bytes FROM-LAST/TOTAL (required)', 'X-Sonde-Sha256': 'the whole bundle sha256 (required)' },
    responseHeaders: { '200': { 'Upload-Offset': 'bytes held' }, '201': { 'Upload-Offset': 'bytes held' }, '416': { 'Upload-Offset': 'where to resume' } },
    returns: { '200': uploadProgressSchema, '201': uploadProgressSchema },
    responses: {
      '200': '{ receivedBytes, complete: false }',
      '201': '{ receivedBytes, complete: true }',
      '400': 'BODY_INVALID (range, sha256)',
      '404': 'NOT_FOUND (no diagnose command for this probe)',
      '413': 'BODY_TOO_LARGE',
      '416': 'RANGE_NOT_SATISFIABLE (Upload-Offset says where to resume)',
    },
  },
];

export function diagnosticsModule(): ServerModule {
  return {
    name: 'diagnostics',
    routes: DIAGNOSTICS_ROUTES,
    async register(ctx, http) {
      const store = new DiagnosticsStore(join(ctx.paths.root, 'diagnostics'));

      http.post('/api/v1/probes/:id/diagnose', { config: { access: 'operator' } }, async (req, reply) => {
        const { id } = parseWith(probeParam, req.params, 'params');
        parseWith(noBody, req.body ?? {}, 'body');
        await ctx.probes.get(id);
        const c = await ctx.commands.send(id, { type: 'diagnose' });
        req.auditNote = { target: id, detail: { commandId: c.commandId, type: 'diagnose' } };
        return reply.code(202).send(commandView(c));
      });

      http.get('/api/v1/probes/:id/diagnostics', { config: { access: 'viewer' } }, async (req) => {
        const { id } = parseWith(probeParam, req.params, 'params');
        await ctx.probes.get(id);
        return store.list(id);
      });

      http.get('/api/v1/diagnostics/:commandId', { config: { access: 'operator' } }, async (req, reply) => {
        const { commandId } = parseWith(commandParam, req.params, 'params');
        const { record, file } = await store.get(commandId);
        return reply
          .type('application/gzip')
          .header('content-length', record.size)
          .header('content-disposition', `attachment; filename="diagnostics-${record.probeId}-${commandId}.tar.gz"`)
          .header('x-sonde-sha256', record.sha256)
          .header('cache-control', 'no-store')
          .send(createReadStream(file));
      });

      http.get('/api/v1/probes/:id/diagnostics/:commandId', { config: { access: 'probe-self' } }, async (req, reply) => {
        const { id, commandId } = parseWith(uploadParams, req.params, 'params');
        await requested(ctx, id, commandId);
        const held = await store.received(commandId);
        return reply.header('upload-offset', held.bytes).header('x-sonde-complete', String(held.complete)).send({ receivedBytes: held.bytes, complete: held.complete });
      });

      await http.register(async (scope) => {
        scope.removeAllContentTypeParsers();
        scope.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
        scope.put('/api/v1/probes/:id/diagnostics/:commandId', { config: { access: 'probe-self' } }, async (req, reply) => {
          const { id, commandId } = parseWith(uploadParams, req.params, 'params');
          const c = await requested(ctx, id, commandId);
          const held = await store.received(commandId);
          if (held.complete) return reply.code(201).send({ receivedBytes: held.bytes, complete: true });
          const range = parseContentRange(req.headers['content-range']);
          if (!range) throw new ServerError('BODY_INVALID', 'Content-Range must be "bytes FROM-LAST/TOTAL"');
          const sha = sha256Header.safeParse(req.headers['x-sonde-sha256']);
          if (!sha.success) throw new ServerError('BODY_INVALID', 'X-Sonde-Sha256 must be the whole bundle\'s sha256 (64 lower-case hex digits)');
          const max = c.body.type === 'diagnose' ? c.body.upload.maxBytes : 0;
          if (range.total > max) throw new ServerError('BODY_TOO_LARGE', `the bundle is ${range.total} bytes; this request accepts at most ${max}`);
          const body = (req.body as Readable | undefined) ?? req.raw;
          let r;
          try {
            r = await store.append({ commandId, probeId: id, requestedAt: c.createdAt }, range, sha.data, body);
          } catch (e) {
            if ((e as { code?: string }).code === 'RANGE_NOT_SATISFIABLE') reply.header('upload-offset', (await store.received(commandId)).bytes);
            throw e;
          }
          if (r.record === null) return reply.header('upload-offset', r.bytes).send({ receivedBytes: r.bytes, complete: false });
          await ctx.store.commands.finish(commandId, 'succeeded', r.record.receivedAt);
          ctx.log.info({ probeId: id, commandId, bytes: r.bytes }, 'diagnostics bundle received');
          req.auditNote = { target: id, detail: { commandId, bytes: r.bytes } };
          return reply.code(201).header('upload-offset', r.bytes).send({ receivedBytes: r.bytes, complete: true });
        });
      });
    },
  };
}

/** The diagnose command `commandId`, addressed to probe `id` and not given up on; else 404. */
async function requested(ctx: ServerContext, id: string, commandId: string) {
  const c = await ctx.store.commands.get(commandId);
  if (!c || c.probeId !== id || c.type !== 'diagnose' || (TERMINAL_STATUSES.has(c.status) && c.status !== 'succeeded')) {
    throw new ServerError('NOT_FOUND', `no diagnostics request ${commandId.slice(0, 80)} for this probe`);
  }
  return c;
}
