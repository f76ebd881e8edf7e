/**
 * The daemon's router: ONE immutable routing snapshot held in one variable: the system routes' tables and, per
 * mounted plugin, that plugin's own tables (find-my-way trees: HTTP and upgrades), found by the `{name}` segment of
 * `/plugin/{name}/...` in a map. A change builds only what changed (a plugin's mount: its own tables, O(its routes),
 * so mounting N plugins costs O(N) in all, not O(N²)) and swaps the reference to a new snapshot, so a request sees
 * the old or the new table, never a mix, and keep-alive connections are untouched (they only look the table up per
 * request). A lookup is one map get and one small tree: its cost does not grow with the number of plugins.
 *
 * Layout: `/plugin/{name}/api/...` -> the plugin's routes; `/plugin/{name}/...` -> its static dir;
 * `/plugin/{name}` -> 301 to `/plugin/{name}/`; system routes (`/health`, `/ready`, admin API, the app shell's `/`,
 * `/shell/*` and `/api/shell/*`: http/shell/) anywhere else.
 * A path that some route serves with other methods answers 405 with `Allow` (a system catch-all yields there to
 * the specific routes); a URL of a plugin that is installed but
 * not loaded (deactivated, failed, starting: see `setInactive`) answers 503 `plugin_not_active` saying what to do.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import type { HttpMethod, PluginHealth } from "@hecate/sdk";
import { isValidPluginName } from "@hecate/sdk/paths";
import { validateRoutePath } from "@hecate/sdk/runtime/route-path";
import FindMyWay from "find-my-way";
import type { RequestMetrics } from "../observe/request-metrics.js";
import { admit, answerPreflight, compileGuard, type Guard, originAllowed, type RoutePolicy } from "./plugin-guard.js";
import { sendJsonError, serveStatic } from "./static.js";
import { refuseUpgrade, rejectUpgrade } from "./upgrade-reply.js";

export { originAllowed } from "./plugin-guard.js";

export const HTTP_METHODS: HttpMethod[] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

export interface RouteContext {
  /** Full URL path (still percent-encoded), without the query. */
  pathname: string;
  /** Path relative to the mount prefix (`/plugin/{name}/api` for plugin routes, "" for system routes). */
  path: string;
  query: Record<string, string | string[]>;
  /** Plugin owning the route, if any. */
  plugin?: string;
}

export type RouteHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  params: Record<string, string>,
  ctx: RouteContext,
) => unknown;

export type UpgradeHandler = (
  req: IncomingMessage,
  socket: Duplex,
  head: Buffer,
  params: Record<string, string>,
  ctx: RouteContext,
) => unknown;

/** `cors` / `multipart`: plugin routes only, enforced before the handler runs (see plugin-guard.ts). */
export interface MountedRoute extends RoutePolicy {
  /** "*" = every method. */
  method: HttpMethod | HttpMethod[] | "*";
  /** find-my-way syntax; relative to `/plugin/{name}/api` for plugins, absolute for system routes. */
  path: string;
  handler: RouteHandler;
}

export interface MountedWsRoute {
  path: string;
  /** Origins allowed besides the Host the request was sent to; "*" = any. */
  allowedOrigins?: string[] | "*";
  handler: UpgradeHandler;
}

export interface PluginMount {
  /** API routes, relative to `/plugin/{name}/api`. */
  routes?: MountedRoute[];
  /** WebSocket upgrade routes, relative to `/plugin/{name}/api`. */
  ws?: MountedWsRoute[];
  /** Catch-all upgrade handler for `/plugin/{name}/api/*` (container proxy); Origin is still checked. */
  upgrade?: UpgradeHandler;
  upgradeAllowedOrigins?: string[] | "*";
  /** Served at `/plugin/{name}/`. */
  staticDir?: string;
  /**
   * Answered at `GET /plugin/{name}/api/manifest` unless the plugin has a route of that exact pattern (a container's
   * catch-all does not count: its routes are unknown, so the daemon's answer wins there).
   */
  manifest?: unknown;
  /** False: requests are not counted here (a proxy to an isolated host, which counts them itself). */
  observe?: boolean;
}

/** `/health`'s per-plugin answers, gathered by the host (each within `timeoutMs`). */
export type HealthSource = (timeoutMs: number) => Promise<Record<string, PluginHealth>>;

/** Per-plugin timeout of `/health`. */
export const HEALTH_TIMEOUT_MS = 1000;

export class RouteError extends Error {
  constructor(
    readonly plugin: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = "RouteError";
  }
}

interface Store {
  kind: "route" | "static" | "redirect";
  handler?: RouteHandler;
  plugin?: string;
  prefix: string;
  staticDir?: string;
  /** Plugin API routes: the CSRF / CORS rules checked before the handler. */
  guard?: Guard;
  /** Plugin requests: the route pattern they are counted under (metrics); undefined = not counted. */
  route?: string;
}

interface WsStore {
  handler: UpgradeHandler;
  allowedOrigins?: string[] | "*";
  plugin?: string;
  prefix: string;
}

type Tree = FindMyWay.Instance<FindMyWay.HTTPVersion.V1>;

/** One set of routes: the system routes, or one plugin's (all under `/plugin/{name}`). */
interface Tables {
  readonly http: Tree;
  readonly ws: Tree;
}

/** The immutable routing table. */
interface Snapshot {
  readonly version: number;
  readonly system: Tables;
  /** Mounted plugin name -> its tables. */
  readonly plugins: ReadonlyMap<string, Tables>;
}

const PLUGIN_PREFIX = "/plugin/";

/**
 * The tables a path is looked up in: the plugin's for `/plugin/{name}/...` (the raw, still percent-encoded segment:
 * only the canonical spelling of a plugin's prefix is routed to it), else, and when that plugin has no such route,
 * the system routes (never under `/plugin/`, see setSystemRoutes), exactly as one tree holding both answered.
 */
function pluginTables(snap: Snapshot, pathname: string): Tables | undefined {
  if (!pathname.startsWith(PLUGIN_PREFIX)) return undefined;
  const end = pathname.indexOf("/", PLUGIN_PREFIX.length);
  return snap.plugins.get(pathname.slice(PLUGIN_PREFIX.length, end < 0 ? undefined : end));
}

type Found = NonNullable<ReturnType<Tree["find"]>>;

function findHttp(snap: Snapshot, method: FindMyWay.HTTPMethod, pathname: string): Found | null {
  return pluginTables(snap, pathname)?.http.find(method, pathname) ?? snap.system.http.find(method, pathname);
}

function findWs(snap: Snapshot, pathname: string): Found | null {
  return pluginTables(snap, pathname)?.ws.find("GET", pathname) ?? snap.system.ws.find("GET", pathname);
}

/** A copy of `map` with `name` set to `tables` (null: removed): a published snapshot's map never changes. */
function withEntry(map: ReadonlyMap<string, Tables>, name: string, tables: Tables | null): ReadonlyMap<string, Tables> {
  const next = new Map(map);
  if (tables) next.set(name, tables);
  else next.delete(name);
  return next;
}

const newTree = (): Tree => FindMyWay({ ignoreTrailingSlash: false, caseSensitive: true, maxParamLength: 1000 });

/** Tables being built: `on` registers a route (GET ones also answer HEAD), `done` adds those HEADs. */
function tablesBuilder() {
  const t = { http: newTree(), ws: newTree() };
  // find-my-way has no implicit HEAD: GET routes also answer HEAD unless a route registers HEAD explicitly.
  const heads: [string, Store][] = [];
  return {
    t,
    on(m: MountedRoute["method"], path: string, store: Store): void {
      const list = methods(m);
      t.http.on(list, path, noop, store);
      if (list.includes("GET")) heads.push([path, store]);
    },
    done(): Tables {
      for (const [path, store] of heads) if (!t.http.hasRoute("HEAD", path)) t.http.on("HEAD", path, noop, store);
      return t;
    },
  };
}

const noop = () => {};

export class Router {
  private snapshot: Snapshot;
  private readonly plugins = new Map<string, PluginMount>();
  private readonly systemGroups = new Map<string, MountedRoute[]>();
  private version = 0;
  private ready = false;
  /** Installed plugins not loaded here: name -> what to tell a client (from the supervisor, see setInactive). */
  private inactive: ReadonlyMap<string, string> = new Map();
  private readonly started = Date.now();
  private healthSource: HealthSource | undefined;
  /** Called after each change of the mounted or inactive plugins (the app shell follows them: http/shell/). */
  private readonly changeListeners = new Set<() => void>();
  private readonly metrics: RequestMetrics | undefined;

  constructor(options: { metrics?: RequestMetrics } = {}) {
    this.metrics = options.metrics;
    this.systemGroups.set("core", [
      {
        method: "GET",
        path: "/health",
        // Always 200 (the daemon answers): `status` is "degraded" when a plugin is not ok. /ready is what gates traffic.
        handler: async (_req, res) => {
          const plugins = this.healthSource ? await this.healthSource(HEALTH_TIMEOUT_MS) : {};
          json(res, 200, { status: overallHealth(plugins), uptimeMs: Date.now() - this.started, plugins });
        },
      },
      {
        method: "GET",
        path: "/ready",
        handler: (_req, res) => json(res, this.ready ? 200 : 503, { ready: this.ready }),
      },
    ]);
    this.snapshot = this.next(this.buildSystem(), new Map());
  }

  /** Where `/health` gets its per-plugin answers. */
  setHealthSource(source: HealthSource): void {
    this.healthSource = source;
  }

  /** `/ready` answers 200 once the daemon says so (boot finished). */
  setReady(ready: boolean): void {
    this.ready = ready;
  }

  /** Mounts (or replaces, atomically) everything of one plugin. Throws RouteError and keeps the old table. */
  setPlugin(name: string, mount: PluginMount): void {
    if (!isValidPluginName(name)) throw new RouteError(name, `invalid plugin name ${JSON.stringify(name)}`);
    let tables: Tables;
    try {
      tables = buildPlugin(name, mount);
    } catch (err) {
      throw err instanceof RouteError ? err : new RouteError(name, (err as Error).message);
    }
    this.plugins.set(name, mount);
    this.snapshot = this.next(this.snapshot.system, withEntry(this.snapshot.plugins, name, tables));
    this.changed();
  }

  /** Removes a plugin's routes and static files in one swap. */
  removePlugin(name: string): boolean {
    if (!this.plugins.delete(name)) return false;
    this.snapshot = this.next(this.snapshot.system, withEntry(this.snapshot.plugins, name, null));
    this.changed();
    return true;
  }

  /** The mounted plugins (name -> mount), read-only. */
  mounted(): ReadonlyMap<string, Readonly<PluginMount>> {
    return this.plugins;
  }

  /** Installed plugins that are not loaded here (see setInactive). */
  inactiveNames(): string[] {
    return [...this.inactive.keys()];
  }

  /** `fn` runs after every change of the mounted or inactive plugins; returns the unsubscribe. */
  onPluginsChanged(fn: () => void): () => void {
    this.changeListeners.add(fn);
    return () => this.changeListeners.delete(fn);
  }

  private changed(): void {
    for (const fn of this.changeListeners) fn();
  }

  hasPlugin(name: string): boolean {
    return this.plugins.has(name);
  }

  /**
   * The plugins that are installed but not loaded (deactivated, failed, still starting), each with the message a
   * request to its URLs gets (503 `plugin_not_active`) instead of a bare 404. Replaces the previous set.
   */
  setInactive(plugins: Record<string, string>): void {
    this.inactive = new Map(Object.entries(plugins));
    this.changed();
  }

  /** Replaces one named group of daemon-level routes (absolute paths, never under `/plugin/`). */
  setSystemRoutes(group: string, routes: MountedRoute[]): void {
    const prev = this.systemGroups.get(group);
    this.systemGroups.set(group, routes);
    let system: Tables;
    try {
      system = this.buildSystem();
    } catch (err) {
      if (prev) this.systemGroups.set(group, prev);
      else this.systemGroups.delete(group);
      throw err instanceof RouteError ? err : new RouteError(undefined, (err as Error).message);
    }
    this.snapshot = this.next(system, this.snapshot.plugins);
  }

  /** Bumped on every swap (tests and metrics). */
  get tableVersion(): number {
    return this.snapshot.version;
  }

  /** The system routes' tables (absolute paths outside `/plugin/`). */
  private buildSystem(): Tables {
    const b = tablesBuilder();
    for (const [group, routes] of this.systemGroups) {
      for (const r of routes) {
        if (
          typeof r.path !== "string" ||
          !r.path.startsWith("/") ||
          r.path.startsWith(PLUGIN_PREFIX) ||
          r.path === "/plugin"
        )
          throw new RouteError(
            undefined,
            `system route ${r.path} (group ${group}) must be absolute and outside /plugin/`,
          );
        b.on(r.method, r.path, { kind: "route", handler: r.handler, prefix: "" });
      }
    }
    return b.done();
  }

  /** The next snapshot (published by assigning it to `snapshot`). */
  private next(system: Tables, plugins: ReadonlyMap<string, Tables>): Snapshot {
    return { version: ++this.version, system, plugins };
  }

  /** The `request` listener of the HTTP server. */
  handle(req: IncomingMessage, res: ServerResponse): void {
    const snap = this.snapshot; // one read: this request uses this table to the end
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const pathname = q < 0 ? url : url.slice(0, q);
    if (req.method === "OPTIONS" && req.headers["access-control-request-method"] && preflight(snap, req, res, pathname))
      return;
    const found = findHttp(snap, (req.method ?? "GET") as FindMyWay.HTTPMethod, pathname);
    if (!found || yieldsToSpecific(snap, found, pathname)) {
      this.noRoute(snap, req, res, pathname);
      return;
    }
    const store = found.store as Store;
    // find-my-way percent-decodes before matching, so `/plugin/a%62/api/x` finds plugin `ab`'s route while the raw
    // pathname does not start with its prefix (the plugin got a garbled relative path). Only the canonical
    // spelling of a plugin prefix is routed.
    if (!pathname.startsWith(store.prefix)) {
      sendJsonError(res, 404, "not_found", `no route for ${req.method} ${pathname}`);
      return;
    }
    const ctx: RouteContext = {
      pathname,
      path: pathname.slice(store.prefix.length),
      query: parseQuery(q < 0 ? "" : url.slice(q + 1)),
      plugin: store.plugin,
    };
    if (this.metrics && store.route !== undefined)
      this.metrics.track(res, store.plugin!, store.route, req.method ?? "GET");
    try {
      if (store.kind === "redirect") {
        res.writeHead(301, { location: `${pathname}/${q < 0 ? "" : url.slice(q)}`, "content-length": 0 });
        res.end();
        return;
      }
      if (store.kind === "static") {
        // `api/...` that matched no API route is a 404, not a file lookup.
        if (!store.staticDir || ctx.path === "api" || ctx.path.startsWith("api/")) {
          this.noRoute(snap, req, res, pathname);
          return;
        }
        serveStatic(req, res, store.staticDir, ctx.path).catch(() => sendJsonError(res, 500, "static_failed", "error"));
        return;
      }
      if (store.guard && !admit(req, res, store.guard, ctx.path)) return;
      const r = store.handler!(req, res, found.params as Record<string, string>, ctx);
      if (r && typeof (r as Promise<unknown>).then === "function")
        (r as Promise<unknown>).catch((err) => internalError(res, err));
    } catch (err) {
      internalError(res, err);
    }
  }

  /** No route for this method: 503 for an inactive plugin's URL, 405 when other methods are served there, else 404. */
  private noRoute(snap: Snapshot, req: IncomingMessage, res: ServerResponse, pathname: string): void {
    const inactive = this.inactiveMessage(pathname);
    if (inactive) {
      sendJsonError(res, 503, "plugin_not_active", inactive);
      return;
    }
    const allow = allowedMethods(snap, pathname);
    if (allow.length > 0) {
      res.setHeader("allow", allow.join(", "));
      sendJsonError(res, 405, "method_not_allowed", `${req.method} is not allowed here; use ${allow.join(", ")}`);
      return;
    }
    sendJsonError(res, 404, "not_found", `no route for ${req.method} ${pathname}`);
  }

  /** The message for a URL under `/plugin/{name}` of a plugin that is installed but not mounted here. */
  private inactiveMessage(pathname: string): string | undefined {
    if (this.inactive.size === 0 || !pathname.startsWith("/plugin/")) return undefined;
    const end = pathname.indexOf("/", 8);
    const name = end < 0 ? pathname.slice(8) : pathname.slice(8, end);
    return this.plugins.has(name) ? undefined : this.inactive.get(name);
  }

  /** The `upgrade` listener of the HTTP server: Origin check, then the route's upgrade handler. */
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const snap = this.snapshot;
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const pathname = q < 0 ? url : url.slice(0, q);
    const found = req.method === "GET" ? findWs(snap, pathname) : null;
    if (!found) {
      const inactive = this.inactiveMessage(pathname);
      if (inactive) refuseUpgrade(socket, 503, "Service Unavailable", "plugin_not_active", inactive);
      else rejectUpgrade(socket, 404, "Not Found");
      return;
    }
    const store = found.store as WsStore;
    if (!pathname.startsWith(store.prefix)) {
      rejectUpgrade(socket, 404, "Not Found"); // non-canonical spelling of the prefix, see handle()
      return;
    }
    if (!originAllowed(req, store.allowedOrigins)) {
      rejectUpgrade(socket, 403, "Forbidden");
      return;
    }
    const ctx: RouteContext = {
      pathname,
      path: pathname.slice(store.prefix.length),
      query: parseQuery(q < 0 ? "" : url.slice(q + 1)),
      plugin: store.plugin,
    };
    try {
      const r = store.handler(req, socket, head, found.params as Record<string, string>, ctx);
      if (r && typeof (r as Promise<unknown>).then === "function")
        (r as Promise<unknown>).catch(() => rejectUpgrade(socket, 500, "Internal Server Error"));
    } catch {
      rejectUpgrade(socket, 500, "Internal Server Error");
    }
  }
}

/** One plugin's tables: its API and ws routes under `/plugin/{name}/api`, its static files and the redirect. */
function buildPlugin(name: string, mount: PluginMount): Tables {
  const b = tablesBuilder();
  const base = `/plugin/${name}`;
  const api = `${base}/api`;
  for (const r of mount.routes ?? []) {
    const bad = validateRoutePath(r.path);
    if (bad) throw new RouteError(name, `route ${JSON.stringify(r.path)} ${bad}`);
    let guard: Guard;
    try {
      guard = compileGuard(r, methods(r.method));
    } catch (err) {
      throw new RouteError(name, `route ${JSON.stringify(r.path)}: ${(err as Error).message}`);
    }
    const route = mount.observe === false ? undefined : r.path;
    b.on(r.method, api + r.path, { kind: "route", handler: r.handler, plugin: name, prefix: api, guard, route });
  }
  if (mount.manifest !== undefined && !b.t.http.hasRoute("GET", `${api}/manifest`)) {
    const body = JSON.stringify(mount.manifest);
    const handler: RouteHandler = (_req, res) => jsonText(res, 200, body);
    b.on("GET", `${api}/manifest`, { kind: "route", handler, plugin: name, prefix: api, route: "/manifest" });
  }
  for (const r of mount.ws ?? []) {
    const bad = validateRoutePath(r.path);
    if (bad) throw new RouteError(name, `ws route ${JSON.stringify(r.path)} ${bad}`);
    const store: WsStore = { handler: r.handler, allowedOrigins: r.allowedOrigins, plugin: name, prefix: api };
    b.t.ws.on("GET", api + r.path, noop, store);
  }
  if (mount.upgrade) {
    const store: WsStore = {
      handler: mount.upgrade,
      allowedOrigins: mount.upgradeAllowedOrigins,
      plugin: name,
      prefix: api,
    };
    b.t.ws.on("GET", `${api}/*`, noop, store);
  }
  // Static files: the wildcard loses against every API route (find-my-way prefers static/param nodes).
  const st: Store = {
    kind: "static",
    plugin: name,
    prefix: `${base}/`,
    staticDir: mount.staticDir,
    route: mount.observe === false ? undefined : "(static)",
  };
  b.on("GET", `${base}/*`, st);
  b.on("GET", base, { kind: "redirect", plugin: name, prefix: base });
  return b.done();
}

function methods(m: MountedRoute["method"]): FindMyWay.HTTPMethod[] {
  const out = m === "*" ? HTTP_METHODS : Array.isArray(m) ? m : [m];
  for (const x of out)
    if (!HTTP_METHODS.includes(x)) throw new RouteError(undefined, `unsupported method ${JSON.stringify(x)}`);
  return out as FindMyWay.HTTPMethod[];
}

export function parseQuery(qs: string): Record<string, string | string[]> {
  // No prototype: keys such as `constructor`, `toString` or `__proto__` are plain data. With `{}` they read the
  // inherited member (`?constructor=1` produced [Object, "1"], which the worker message cannot clone -> 500) or
  // replaced the object's prototype (`?__proto__=x`).
  const out: Record<string, string | string[]> = Object.create(null);
  if (!qs) return out;
  for (const [k, v] of new URLSearchParams(qs)) {
    const prev = out[k];
    out[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  return out;
}

/**
 * The methods some route answers at `pathname` (for 405 + Allow). A plugin's static catch-all counts when it has a
 * static dir, outside its `api/` (where it never serves).
 */
function allowedMethods(snap: Snapshot, pathname: string): string[] {
  return HTTP_METHODS.filter((m) => {
    const found = findHttp(snap, m, pathname);
    const store = found?.store as Store | undefined;
    if (!store || !pathname.startsWith(store.prefix) || yieldsToSpecific(snap, found!, pathname)) return false;
    if (store.kind !== "static") return true;
    if (!store.staticDir) return false;
    const rel = pathname.slice(store.prefix.length);
    return rel !== "api" && !rel.startsWith("api/");
  });
}

/**
 * A system catch-all (e.g. the admin page's `GET /admin/*`) does not answer at a path that a specific system route
 * serves with other methods: `GET /admin/logout` is a 405 (Allow: POST), not a page lookup.
 */
function yieldsToSpecific(snap: Snapshot, found: Found, pathname: string): boolean {
  const isSystemCatchAll = (f: Found) =>
    !(f.store as Store).plugin && (f.params as Record<string, string>)["*"] !== undefined;
  if (!isSystemCatchAll(found)) return false;
  return HTTP_METHODS.some((m) => {
    const other = findHttp(snap, m, pathname);
    return other !== null && !(other.store as Store).plugin && !isSystemCatchAll(other);
  });
}

/**
 * A CORS preflight for a plugin route whose policy answers it (the route of the method the browser asks about);
 * false for any other OPTIONS request, which is routed as usual.
 */
function preflight(snap: Snapshot, req: IncomingMessage, res: ServerResponse, pathname: string): boolean {
  const want = req.headers["access-control-request-method"] as HttpMethod;
  if (!HTTP_METHODS.includes(want)) return false;
  const target = findHttp(snap, want, pathname);
  const store = target?.store as Store | undefined;
  if (!store?.guard || !pathname.startsWith(store.prefix)) return false;
  return answerPreflight(req, res, store.guard);
}

/** "degraded" when any plugin is not ok (a down one included), else "ok". */
export function overallHealth(plugins: Record<string, PluginHealth>): "ok" | "degraded" {
  return Object.values(plugins).some((p) => p.status !== "ok") ? "degraded" : "ok";
}

function json(res: ServerResponse, status: number, body: unknown): void {
  jsonText(res, status, JSON.stringify(body));
}

function jsonText(res: ServerResponse, status: number, s: string): void {
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": Buffer.byteLength(s) });
  res.end(s);
}

function internalError(res: ServerResponse, _err: unknown): void {
  sendJsonError(res, 500, "internal_error", "internal error");
}
