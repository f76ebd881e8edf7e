/**
 * Route prefixing helpers (the original's hecate_plugin_cowboy): declare routes relative to the plugin's API prefix,
 * group them under sub-prefixes, and build links to the plugin's own URLs.
 *
 *   routes: () => [
 *     routes.get("/health", () => ({ ok: true })),
 *     ...routes.group("/boards/:board", [routes.get("/tasks", list), routes.post("/tasks", create)]),
 *   ]
 *   routes.url("/boards/:board/tasks", { board: "team a" })   // "/plugin/taskboard/api/boards/team%20a/tasks"
 *   routes.staticUrl("/js/app.js")                            // "/plugin/taskboard/js/app.js"
 *
 * Every path is checked: no `..`/`.` segments, no `//`, no scheme or host, no `?#%\`: a route or a link can never
 * point outside the plugin's prefix. Param values are percent-encoded, and `.`/`..` values are refused (a browser
 * would resolve them out of the prefix).
 */
import { getConfig } from "./config.js";
import type { Handler, HttpMethod, HttpRouteDefinition, RouteDefinition, RouteRequestOptions } from "./contract.js";
import { validateRoutePath } from "./runtime/route-path.js";

export class RoutePathError extends Error {
  readonly code = "invalid_route_path";
  constructor(
    message: string,
    readonly field: string,
    readonly value: unknown,
  ) {
    super(message);
    this.name = "RoutePathError";
  }
}

function checkPath(path: unknown, field = "path"): string {
  const bad = validateRoutePath(path);
  if (bad) throw new RoutePathError(`${field} ${JSON.stringify(path)} ${bad}`, field, path);
  return path as string;
}

/** Joins path pieces into one prefix-relative path (`/a` + `/b/:id` -> `/a/b/:id`; `/a` + `/` -> `/a`). */
export function join(...parts: string[]): string {
  let out = "";
  for (const p of parts) {
    const checked = checkPath(p);
    if (checked !== "/") out += checked.endsWith("/") ? checked.slice(0, -1) : checked;
  }
  return out === "" ? "/" : out;
}

/** `options`: the route's request rules (`cors`, `multipart`; see RouteRequestOptions). */
export function route(
  method: HttpMethod | HttpMethod[],
  path: string,
  handler: Handler,
  options: RouteRequestOptions = {},
): HttpRouteDefinition {
  return { ...options, kind: "http", method, path: checkPath(path), handler };
}

type Shorthand = (path: string, handler: Handler, options?: RouteRequestOptions) => HttpRouteDefinition;
export const get: Shorthand = (path, handler, options) => route("GET", path, handler, options);
export const post: Shorthand = (path, handler, options) => route("POST", path, handler, options);
export const put: Shorthand = (path, handler, options) => route("PUT", path, handler, options);
export const patch: Shorthand = (path, handler, options) => route("PATCH", path, handler, options);
export const del: Shorthand = (path, handler, options) => route("DELETE", path, handler, options);

/** The routes (HTTP and ws) with `prefix` put in front of their paths; groups nest. */
export function group(prefix: string, routes: RouteDefinition[]): RouteDefinition[] {
  checkPath(prefix, "prefix");
  return routes.map((r) => ({ ...r, path: join(prefix, r.path) }));
}

export type UrlParams = Record<string, string | number>;
export type UrlQuery = Record<string, string | number | boolean | (string | number)[] | undefined>;

/** Fills `:name` and `*` in a prefix-relative pattern with encoded values. */
export function fill(pattern: string, params: UrlParams = {}): string {
  checkPath(pattern);
  const used = new Set<string>();
  const segments = pattern.split("/").map((seg, i, all) => {
    if (seg === "*") {
      if (i !== all.length - 1) throw new RoutePathError("* must be the last segment", "path", pattern);
      used.add("*");
      const v = params["*"];
      if (v === undefined) return "";
      return String(v)
        .split("/")
        .map((s) => encodeSegment(s, "*"))
        .join("/");
    }
    if (!seg.startsWith(":")) return seg;
    const name = seg.slice(1);
    const v = params[name];
    if (v === undefined || v === "")
      throw new RoutePathError(`missing value for :${name} in ${pattern}`, `params.${name}`, v);
    used.add(name);
    return encodeSegment(String(v), name);
  });
  const unused = Object.keys(params).filter((k) => !used.has(k));
  if (unused.length)
    throw new RoutePathError(`params not in ${pattern}: ${unused.join(", ")}`, `params.${unused[0]}`, unused);
  return segments.join("/");
}

function encodeSegment(value: string, name: string): string {
  // "." and ".." pass encodeURIComponent unchanged and would be resolved by the client, out of the prefix.
  if (value === "." || value === "..")
    throw new RoutePathError(`value ${JSON.stringify(value)} of ${name} is not allowed`, `params.${name}`, value);
  return encodeURIComponent(value);
}

function withQuery(path: string, query: UrlQuery | undefined): string {
  if (!query) return path;
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v === undefined) continue;
    for (const item of Array.isArray(v) ? v : [v]) q.append(k, String(item));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

/** Absolute path of one of the plugin's API URLs: `url("/tasks/:id", { id })` -> `/plugin/{name}/api/tasks/{id}`. */
export function url(pattern: string, params?: UrlParams, query?: UrlQuery): string {
  const filled = fill(pattern, params);
  return withQuery(getConfig().apiPrefix + (filled === "/" ? "/" : filled), query);
}

/** Absolute path of one of the plugin's static assets: `staticUrl("/js/app.js")` -> `/plugin/{name}/js/app.js`. */
export function staticUrl(pattern: string, params?: UrlParams, query?: UrlQuery): string {
  return withQuery(getConfig().staticPrefix + fill(pattern, params), query);
}

/** The plugin's prefixes (`/plugin/{name}/api` and `/plugin/{name}`). */
export function prefixes(): { api: string; static: string } {
  const c = getConfig();
  return { api: c.apiPrefix, static: c.staticPrefix };
}
