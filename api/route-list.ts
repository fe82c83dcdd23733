import type { Router } from 'express';

/** Method and OpenAPI-style path of a route, to hold the OpenAPI document to. */
export interface RouteEntry {
  method: string;
  path: string;
}

/** The routes a router serves, read from Express's own stack so the list cannot drift. */
export function routeList(router: Router): RouteEntry[] {
  return router.stack.flatMap((layer) =>
    layer.route
      ? Object.keys((layer.route as unknown as { methods: Record<string, boolean> }).methods).map(
          (method) => ({
            method,
            path: String(layer.route?.path).replace(/:(\w+)/g, '{$1}'),
          }),
        )
      : [],
  );
}
