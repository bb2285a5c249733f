import type { FastifyInstance } from 'fastify';
import type { Readable } from 'node:stream';
import type { RouteDoc, ServerContext } from '../../context.js';
import { ServerError } from '../../errors.js';
import { isPackId } from '../../packs/pack-store.js';
import { parseWith } from '../replies.js';
import { gcBody, sha256Param } from '../schemas.js';
import { packView } from '../views.js';
import { z } from 'zod';
import { packUploadSchema, packViewSchema, packDetailSchema, gcResultSchema } from '../response-schemas.js';

/** Packs: upload (verified at the door), list, show, delete, garbage-collect. */
export const PACK_ROUTES: readonly RouteDoc[] = [
  {
    method: 'POST',
    path: '/api/v1/packs',
    tag: 'packs',
    summary: 'Upload a pack: the raw .spk as the body (any content type), streamed to disk and verified against the server keyring',
    access: 'operator',
    returns: { '201': packUploadSchema },
    responses: {
      '201': 'stored (or already stored: `created` false): the sha256 and the manifest summary',
      '401': 'AUTH_REQUIRED',
      '403': 'FORBIDDEN',
      '409': 'KEYRING_EMPTY',
      '413': 'BODY_TOO_LARGE',
      '422': 'the pack code: PACK_FORMAT, SIGNATURE_INVALID, CHAIN_UNTRUSTED, CERT_REVOKED, PAYLOAD_HASH_MISMATCH, …',
    },
  },
  { method: 'GET', path: '/api/v1/packs', tag: 'packs', summary: 'List packs, newest upload first', access: 'viewer', returns: { '200': z.array(packViewSchema) }, responses: { '200': 'an array of pack summaries' } },
  {
    method: 'GET',
    path: '/api/v1/packs/{sha256}',
    tag: 'packs',
    summary: 'A pack: summary, full manifest and release notes',
    access: 'viewer',
    returns: { '200': packDetailSchema },
    responses: { '200': 'the pack', '400': 'PACK_ID_INVALID', '404': 'PACK_NOT_FOUND' },
  },
  {
    method: 'DELETE',
    path: '/api/v1/packs/{sha256}',
    tag: 'packs',
    summary: 'Delete a pack nothing holds (no unfinished command, no rollout pin)',
    access: 'operator',
    responses: { '204': 'deleted', '400': 'PACK_ID_INVALID', '404': 'PACK_NOT_FOUND', '409': 'PACK_IN_USE' },
  },
  {
    method: 'POST',
    path: '/api/v1/packs/gc',
    tag: 'packs',
    summary: 'Garbage-collect unreferenced packs uploaded more than olderThanSeconds ago',
    access: 'admin',
    body: gcBody,
    returns: { '200': gcResultSchema },
    responses: { '200': '{ deleted: [sha256], orphans: [sha256], dryRun }' },
  },
];

export async function registerPackRoutes(app: FastifyInstance, ctx: ServerContext): Promise<void> {
  // The upload takes the raw body as a stream, whatever its content type (curl --data-binary
  // says application/x-www-form-urlencoded): its own scope, with one catch-all parser.
  await app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
    scope.post('/api/v1/packs', { config: { access: 'operator' } }, async (req, reply) => {
      const declared = Number(req.headers['content-length']);
      if (Number.isFinite(declared) && declared > ctx.packs.maxBytes) {
        throw new ServerError('BODY_TOO_LARGE', `the pack is ${declared} bytes; this server accepts at most ${ctx.packs.maxBytes}`);
      }
      const body = (req.body as Readable | undefined) ?? req.raw;
      const by = req.principal?.kind === 'staff' ? req.principal.name : 'unknown';
      let result;
      try {
        result = await ctx.packs.upload(body, by);
        ctx.metrics.uploads.inc({ result: 'stored' });
      } catch (e) {
        ctx.metrics.uploads.inc({ result: (e as { code?: string }).code ?? 'error' });
        req.auditNote = { detail: { refused: (e as { code?: string }).code ?? 'error' } };
        throw e;
      }
      const { pack, created } = result;
      req.auditNote = { target: pack.sha256, detail: { product: pack.summary.product, version: pack.summary.version, kind: pack.summary.kind, created } };
      if (created) ctx.changes.publish({ kind: 'packs' });
      return reply.code(201).send({ ...packView(pack), created });
    });
  });

  app.get('/api/v1/packs', { config: { access: 'viewer' } }, async () => (await ctx.packs.list()).map(packView));

  app.get('/api/v1/packs/:sha256', { config: { access: 'viewer' } }, async (req) => {
    const { sha256 } = parseWith(sha256Param, req.params, 'params');
    const pack = await ctx.packs.get(sha256);
    return { ...packView(pack), manifest: pack.manifest, releaseNotes: pack.releaseNotes, signerChain: await ctx.packs.signerChain(sha256) };
  });

  app.delete('/api/v1/packs/:sha256', { config: { access: 'operator' } }, async (req, reply) => {
    const { sha256 } = parseWith(sha256Param, req.params, 'params');
    if (!isPackId(sha256)) throw new ServerError('PACK_ID_INVALID', 'a pack id is a sha256: 64 lower-case hex characters');
    await ctx.packs.remove(sha256);
    ctx.changes.publish({ kind: 'packs' });
    return reply.code(204).send();
  });

  app.post('/api/v1/packs/gc', { config: { access: 'admin' } }, async (req) => {
    const body = parseWith(gcBody, req.body ?? {}, 'body');
    const r = await ctx.packs.gc({ olderThanMs: body.olderThanSeconds * 1000, dryRun: body.dryRun });
    if (r.deleted.length > 0) ctx.changes.publish({ kind: 'packs' });
    req.auditNote = { detail: { deleted: r.deleted.length, orphans: r.orphans.length, dryRun: body.dryRun } };
    return { ...r, dryRun: body.dryRun };
  });
}
