import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registeredRoutes } from '../../server/src/http/access.js';
import { readFile } from 'node:fs/promises';
import { serverSamples, SimProbe, startTestServer, type TestServer } from './harness.js';
import { CORE_ROUTES } from '../../server/src/http/app.js';
import { DEFAULT_MODULES } from '../../server/src/modules.js';

const ALL_ROUTES = [...CORE_ROUTES, ...DEFAULT_MODULES.flatMap((m) => m.routes ?? [])];

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

  it('describes the body of every 2xx answer: a JSON schema generated from the zod schema the view is typed by, or its media type', async () => {
    const doc = (await s.api<{ paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema?: unknown }> }> }>> }>('GET', '/api/v1/openapi.json', { token: null })).body;
    const missing: string[] = [];
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const [status, r] of Object.entries(op.responses)) {
          if (!/^2/.test(status) || status === '204') continue;
          const content = Object.values(r.content ?? {});
          if (content.length === 0 || content.some((c) => c.schema === undefined)) missing.push(`${method.toUpperCase()} ${path} ${status}`);
        }
      }
    }
    expect(missing).toEqual([]);
    // A sample: the probe list is an array of objects with the view's fields, none optional.
    const list = doc.paths['/api/v1/probes']!['get']!.responses['200']!.content!['application/json']!.schema as { type: string; items: { required: string[] } };
    expect(list.type).toBe('array');
    expect(list.items.required).toEqual(expect.arrayContaining(['id', 'channel', 'online', 'lastSeen', 'version', 'health', 'lastCommitted']));
  });

  it('answers what it documents: real answers of the read routes parse with their response schemas', async () => {
    const t = await startTestServer({ keyring: (await serverSamples()).keys.rootCert });
    try {
      const samples = await serverSamples();
      const up = await t.api<{ sha256: string }>('POST', '/api/v1/packs', { body: await readFile(samples.packs['1.0.0']) });
      expect(up.status).toBe(201);
      const creds = await t.enroll('doc-1');
      const p = await SimProbe.connect(t.mqttUrl, creds);
      try {
        await p.state({});
        await p.event('drop-received', { message: 'x.spk' });
        await t.settle();
        const r = await t.api<{ id: string }>('POST', '/api/v1/rollouts', { body: { packSha256: up.body.sha256, target: { probeIds: ['doc-1'] }, strategy: { skipCurrent: false }, draft: true } });
        expect(r.status).toBe(201);
        const checks: [string, string, number][] = [
          ['POST', '/api/v1/packs', 201],
          ['GET', '/api/v1/packs', 200],
          ['GET', `/api/v1/packs/${up.body.sha256}`, 200],
          ['GET', '/api/v1/probes', 200],
          ['GET', '/api/v1/probes/doc-1', 200],
          ['GET', '/api/v1/tokens', 200],
          ['GET', '/api/v1/audit', 200],
          ['GET', '/api/v1/settings', 200],
          ['GET', '/api/v1/rollouts', 200],
          ['GET', `/api/v1/rollouts/${r.body.id}`, 200],
          ['GET', `/api/v1/rollouts/${r.body.id}/targets`, 200],
          ['GET', '/api/v1/probes/doc-1/diagnostics', 200],
          ['GET', '/healthz', 200],
        ];
        for (const [method, path, status] of checks) {
          const answer = method === 'POST' ? up : await t.api<unknown>(method as 'GET', path);
          expect(answer.status, path).toBe(status);
          const doc = ALL_ROUTES.find((d) => d.method === method && new RegExp(`^${d.path.replace(/\{[^}]+\}/g, '[^/]+')}$`).test(path));
          const schema = doc?.returns?.[String(status)] as { parse: (x: unknown) => unknown } | undefined;
          expect(schema, `${method} ${path}: no response schema`).toBeDefined();
          expect(() => schema!.parse(answer.body), `${method} ${path}`).not.toThrow();
        }
      } finally {
        await p.close();
      }
    } finally {
      await t.close();
    }
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
