import type { FastifyInstance } from 'fastify';

/**
 * RFC 9110 15.5.6: a request whose path names a resource but whose method it does not serve gets
 * 405 with `Allow`, not 404. Fastify answers 404 for both, so the routes are recorded as they are
 * added (onRoute sees every scope's routes) and the not-found handler asks which methods a path
 * has. Install before any route is added.
 */
export function recordRoutes(app: FastifyInstance): (path: string) => string[] {
  const routes: { pattern: RegExp; methods: string[] }[] = [];
  app.addHook('onRoute', (route) => {
    const methods = (Array.isArray(route.method) ? route.method : [route.method]).map((m) => m.toUpperCase());
    const source = route.url
      .split('/')
      .map((part) => (part.startsWith(':') ? '[^/]+' : part === '*' ? '.*' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
      .join('/');
    routes.push({ pattern: new RegExp(`^${source}/?$`), methods });
  });
  return (path) => {
    const allowed = new Set<string>();
    for (const r of routes) if (r.pattern.test(path)) for (const m of r.methods) allowed.add(m);
    if (allowed.has('GET')) allowed.add('HEAD');
    return [...allowed].sort();
  };
}
