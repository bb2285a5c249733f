import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registeredRoutes } from '../../server/src/http/access.js';
import { startTestServer, type TestServer } from './harness.js';

/**
 * The OpenAPI document describes every route the server answers, each with its access; a route
 * without a declared access cannot even be registered.
 */
let s: TestServer;
beforeAll(async () => {
  s = await startTestServer();
});
afterAll(() => s.close());

interface Doc {
  paths: Record<string, Record<string, { 'x-sonde-access': string; security?: unknown[]; requestBody?: unknown }>>;
}

describe('/api/v1/openapi.json', () => {
  it('lists exactly the routes the server registered', async () => {
    const doc = (await s.api<Doc>('GET', '/api/v1/openapi.json', { token: null })).body;
    const documented = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`))
      .sort();
    const routes = registeredRoutes(s.server.http).map((r) => r.replace(/:([A-Za-z0-9]+)/g, '{$1}'));
    expect(routes.sort()).toEqual(documented);
  });

  it('marks the public routes and documents request bodies from the zod schemas', async () => {
    const doc = (await s.api<Doc>('GET', '/api/v1/openapi.json', { token: null })).body;
    expect(doc.paths['/api/v1/openapi.json']!['get']!.security).toEqual([]);
    expect(doc.paths['/metrics']!['get']!.security).toEqual([]);
    expect(doc.paths['/api/v1/probes']!['get']!['x-sonde-access']).toBe('viewer');
    expect(JSON.stringify(doc.paths['/api/v1/tokens']!['post']!.requestBody)).toContain('"additionalProperties":false');
  });

  it('passes a maintained OpenAPI validator (swagger-parser) with an operationId for each route, servers, and the headers the API uses', async () => {
    const { default: SwaggerParser } = await import('@apidevtools/swagger-parser');
    const doc = (await s.api<Record<string, unknown>>('GET', '/api/v1/openapi.json', { token: null })).body;
    await expect(SwaggerParser.validate(structuredClone(doc) as never)).resolves.toBeTruthy();
    const ops = Object.values(doc['paths'] as Record<string, Record<string, { operationId?: string; responses: Record<string, { headers?: Record<string, unknown> }>; parameters?: { name: string; in: string }[] }>>).flatMap((p) => Object.values(p));
    const ids = ops.map((o) => o.operationId);
    expect(ids.every((id) => typeof id === 'string' && /^[a-z][A-Za-z0-9]+$/.test(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    expect(doc['servers']).toEqual([{ url: '/', description: expect.any(String) }]);
    const paths = doc['paths'] as Record<string, Record<string, { responses: Record<string, { headers?: Record<string, unknown>; content?: unknown }>; parameters?: { name: string; in: string }[] }>>;
    expect(Object.keys(paths['/api/v1/probes']!['get']!.responses['200']!.headers ?? {})).toContain('X-Total-Count');
    expect(paths['/api/v1/packs/{sha256}/content']!['get']!.parameters!.filter((p) => p.in === 'header').map((p) => p.name)).toEqual(['Range', 'If-Range', 'If-None-Match']);
    expect(JSON.stringify(paths['/api/v1/packs']!['get']!.responses['401']!.content)).toContain('#/components/schemas/Error');
  });

  it('refuses to register a route that declares no access', async () => {
    const { default: Fastify } = await import('fastify');
    const { installAccessControl } = await import('../../server/src/http/access.js');
    const app = Fastify();
    installAccessControl(app, s.server.context.store);
    expect(() => app.get('/open', async () => 'x')).toThrow(/declares no access/);
  });

  it('answers unknown routes with 404 NOT_FOUND', async () => {
    const r = await s.api<{ code: string }>('GET', '/api/v1/nothing-here');
    expect(r.status).toBe(404);
    expect(r.body.code).toBe('NOT_FOUND');
  });
});
