import { z } from 'zod';
import type { RouteDoc } from '../context.js';

/**
 * The OpenAPI 3.1 document at `/api/v1/openapi.json`, built from the route descriptions each
 * route file exports next to its handlers, request schemas included (generated from the same zod
 * schemas the handlers parse with). A test checks that every registered route is described here.
 */
export function openApiDocument(routes: readonly RouteDoc[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const params = [...r.path.matchAll(/\{([A-Za-z0-9]+)\}/g)].map((m) => ({ name: m[1], in: 'path', required: true, schema: { type: 'string' } }));
    const query = r.query ? queryParameters(r.query as z.ZodType) : [];
    const headers = Object.entries(r.requestHeaders ?? {}).map(([name, description]) => ({ name, in: 'header', required: false, description, schema: { type: 'string' } }));
    const op: Record<string, unknown> = {
      operationId: operationId(r.method, r.path),
      summary: r.summary,
      tags: [r.tag],
      'x-sonde-access': r.access,
      ...(r.access === 'public' ? { security: [] } : {}),
      ...(params.length + query.length + headers.length ? { parameters: [...params, ...query, ...headers] } : {}),
      responses: Object.fromEntries(
        Object.entries({ ...r.responses, ...(r.access === 'public' ? {} : { '401': r.responses['401'] ?? 'AUTH_REQUIRED' }) }).map(([status, description]) => [
          status,
          {
            description,
            ...(r.responseHeaders?.[status] ? { headers: Object.fromEntries(Object.entries(r.responseHeaders[status]).map(([h, d]) => [h, { description: d, schema: { type: 'string' } }])) } : {}),
            ...(Number(status) >= 400 ? { content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } } : {}),
            ...(r.returns?.[status] !== undefined ? { content: bodyOf(r.returns[status]) } : {}),
          },
        ]),
      ),
    };
    if (r.body) op['requestBody'] = { required: true, content: { 'application/json': { schema: jsonSchema(r.body as z.ZodType) } } };
    if (r.method === 'POST' && r.path === '/api/v1/packs') {
      op['requestBody'] = { required: true, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } };
    }
    paths[r.path] = { ...(paths[r.path] ?? {}), [r.method.toLowerCase()]: op };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'Sonde fleet server',
      version,
      description: 'Packs, inventory and commands for fleets of network probes. Errors answer { statusCode, code, error, message }; the codes are in docs/errors.md.',
    },
    servers: [{ url: '/', description: 'this server (the document is served by the server it describes)' }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'A staff token (viewer, operator, admin) or a probe token' } },
      schemas: {
        Error: {
          type: 'object',
          required: ['statusCode', 'code', 'error', 'message'],
          properties: {
            statusCode: { type: 'integer' },
            code: { type: 'string', description: 'a stable code, documented in docs/errors.md' },
            error: { type: 'string' },
            message: { type: 'string' },
          },
        },
      },
    },
    security: [{ bearer: [] }],
    paths,
  };
}

/** `GET /api/v1/probes/{id}/diagnostics` → `getProbesIdDiagnostics`: stable, unique per route. */
export function operationId(method: string, path: string): string {
  const words = path
    .replace(/^\/api\/v1\//, '/')
    .split(/[/{}._-]+/)
    .filter(Boolean);
  return `${method.toLowerCase()}${words.map((w) => w[0]!.toUpperCase() + w.slice(1)).join('')}`;
}

function jsonSchema(schema: z.ZodType, io: 'input' | 'output' = 'input'): unknown {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

/** A 2xx body: JSON by its zod schema (as the server writes it), or a media type of bytes or text. */
function bodyOf(returns: unknown): Record<string, unknown> {
  if (typeof returns === 'string') return { [returns]: { schema: returns.startsWith('text/') ? { type: 'string' } : { type: 'string', format: 'binary' } } };
  return { 'application/json': { schema: jsonSchema(returns as z.ZodType, 'output') } };
}

function queryParameters(schema: z.ZodType): unknown[] {
  const s = jsonSchema(schema) as { properties?: Record<string, unknown>; required?: string[] };
  return Object.entries(s.properties ?? {}).map(([name, sch]) => ({ name, in: 'query', required: (s.required ?? []).includes(name), schema: sch }));
}
