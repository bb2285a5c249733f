import type { FastifyInstance } from 'fastify';
import { createReadStream } from 'node:fs';
import type { RouteDoc, ServerContext } from '../../context.js';
import { ServerError } from '../../errors.js';
import { isPackId } from '../../packs/pack-store.js';
import { parseRange } from '../range.js';
import { parseWith, sendError } from '../replies.js';
import { sha256Param } from '../schemas.js';

/**
 * `GET /api/v1/packs/{sha256}/content`: the pack's bytes, with Range (a probe resumes an
 * interrupted download with `bytes=N-`). Staff may fetch any pack; a probe only a pack that a
 * command to that probe names, so one probe cannot fetch what was meant for another (a licence
 * pack, a pack encrypted for one site).
 */
export const PACK_CONTENT_ROUTES: readonly RouteDoc[] = [
  {
    method: 'GET',
    path: '/api/v1/packs/{sha256}/content',
    tag: 'packs',
    summary: 'Download a pack (Range: bytes=…; ETag is the sha256)',
    access: 'probe-or-viewer (a probe: only packs a command to it names)',
    requestHeaders: { Range: 'bytes=N-, bytes=N-M or bytes=-N', 'If-Range': 'the ETag; another validator gets the whole pack', 'If-None-Match': 'the ETag (strong, weak or *): 304' },
    responseHeaders: {
      '200': { ETag: 'the pack sha256, quoted', 'Accept-Ranges': 'bytes' },
      '206': { 'Content-Range': 'bytes START-END/SIZE', ETag: 'the pack sha256, quoted' },
      '304': { ETag: 'the pack sha256, quoted' },
      '416': { 'Content-Range': 'bytes */SIZE' },
    },
    returns: { '200': 'application/octet-stream', '206': 'application/octet-stream' },
    responses: {
      '200': 'the whole pack (application/octet-stream)',
      '304': 'If-None-Match names its ETag: the client has it',
      '206': 'the range asked for, with Content-Range',
      '400': 'PACK_ID_INVALID',
      '403': 'FORBIDDEN',
      '404': 'PACK_NOT_FOUND',
      '416': 'RANGE_NOT_SATISFIABLE, with Content-Range: bytes */size',
    },
  },
];

/** RFC 9110 13.1.2: `*`, or a list of entity tags (weak ones compare weakly). */
function ifNoneMatch(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  return header.split(',').some((t) => {
    const tag = t.trim();
    return tag === '*' || tag === etag || tag === `W/${etag}`;
  });
}

export function registerPackContentRoutes(app: FastifyInstance, ctx: ServerContext): void {
  app.get('/api/v1/packs/:sha256/content', { config: { access: 'probe-or-viewer' } }, async (req, reply) => {
    const { sha256 } = parseWith(sha256Param, req.params, 'params');
    if (!isPackId(sha256)) throw new ServerError('PACK_ID_INVALID', 'a pack id is a sha256: 64 lower-case hex characters');
    const p = req.principal!;
    if (p.kind === 'probe' && !(await ctx.store.commands.probeMayFetch(p.probeId, sha256))) {
      throw new ServerError('FORBIDDEN', 'no command to this probe names that pack');
    }
    const size = (await ctx.store.packs.get(sha256)) ? await ctx.packs.files.size(sha256) : null;
    if (size === null) throw new ServerError('PACK_NOT_FOUND', `no pack ${sha256}`);

    const etag = `"${sha256}"`;
    const ifRange = req.headers['if-range'];
    const range = ifRange !== undefined && ifRange !== etag ? ({ kind: 'full' } as const) : parseRange(req.headers.range, size);
    reply.header('accept-ranges', 'bytes').header('etag', etag);
    // A pack's bytes never change (its id is their sha256): a cache may keep them for good, and
    // a client that has them gets 304. An error answer is never cached as if it were the pack.
    if (ifNoneMatch(req.headers['if-none-match'], etag)) {
      return reply.code(304).header('cache-control', 'private, max-age=31536000, immutable').send();
    }
    if (range.kind === 'unsatisfiable') {
      reply.header('content-range', `bytes */${size}`).header('cache-control', 'no-store');
      return sendError(req, reply, 416, 'RANGE_NOT_SATISFIABLE', `the pack has ${size} bytes`);
    }
    reply.header('cache-control', 'private, max-age=31536000, immutable');
    const path = ctx.packs.files.pathOf(sha256);
    reply.type('application/octet-stream');
    if (range.kind === 'partial') {
      reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${size}`).header('content-length', range.end - range.start + 1);
      return reply.send(createReadStream(path, { start: range.start, end: range.end }));
    }
    reply.header('content-length', size);
    return reply.send(createReadStream(path));
  });
}
