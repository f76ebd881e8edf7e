import type { HttpMethod } from "../contract.js";
import type { RouteAnnouncement } from "../protocol.js";

/** Route paths are relative to the API prefix: no way out of it (`..`, `//`, encoded chars, query). */
export function validateRoutePath(path: unknown): string | null {
  if (typeof path !== "string" || !path.startsWith("/")) return "must be a string starting with /";
  if (/[?#%\\\s\0]/.test(path)) return "must not contain ? # % \\, whitespace or NUL";
  if (path.includes("//")) return "must not contain //";
  if (path.split("/").some((s) => s === ".." || s === ".")) return "must not contain . or .. segments";
  return null;
}

/**
 * Matches the subset of find-my-way's syntax plugins use (`/a/:id`, `/files/*`). The SDK has no router dependency:
 * the test harness and container plugins (`@hecate/sdk/container`) match with this; the daemon's in-process routes
 * use find-my-way.
 */
export function matchPath(pattern: string, path: string): Record<string, string> | null {
  const ps = pattern.split("/");
  const xs = path.split("/");
  const params: Record<string, string> = {};
  for (let i = 0; i < ps.length; i++) {
    const p = ps[i];
    if (p === "*") {
      params["*"] = decodeURIComponent(xs.slice(i).join("/"));
      return params;
    }
    if (i >= xs.length) return null;
    if (p.startsWith(":")) {
      if (xs[i] === "") return null;
      params[p.slice(1)] = decodeURIComponent(xs[i]);
    } else if (p !== xs[i]) return null;
  }
  return ps.length === xs.length ? params : null;
}

/** A matched route and its path parameters. */
export interface RouteMatch {
  route: RouteAnnouncement;
  params: Record<string, string>;
}

/**
 * The first announced route of `kind` that answers `method` on `path` (HEAD falls back to GET; ws routes announce
 * GET): the lookup of the harness and of container plugins, which serve announced routes without the daemon's router.
 */
export function findRoute(
  routes: RouteAnnouncement[],
  kind: "http" | "ws",
  method: string,
  path: string,
): RouteMatch | undefined {
  for (const m of method === "HEAD" ? ["HEAD", "GET"] : [method]) {
    for (const r of routes) {
      if (r.kind !== kind || !r.methods.includes(m as HttpMethod)) continue;
      const params = matchPath(r.path, path);
      if (params) return { route: r, params };
    }
  }
  return undefined;
}

/** A query string as the daemon gives it to handlers: repeated keys become arrays; null prototype (`?__proto__=`). */
export function parseQuery(search: string): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = Object.create(null);
  for (const [k, v] of new URLSearchParams(search)) {
    const prev = query[k];
    query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return query;
}
