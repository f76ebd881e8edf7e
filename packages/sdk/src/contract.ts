/**
 * The plugin contract: what a plugin's callback module exports and what the host gives it.
 * Shared by the daemon (worker host, container proxy) and plugin authors.
 */
import type { Readable } from "node:stream";
import type { PluginPaths } from "./paths.js";

export type HttpMethod = "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS";

/** The `ui` field of manifest.json. */
export interface PluginUi {
  /** Custom element name (lower-case, with a hyphen), e.g. `taskboard-app`. */
  element: string;
  /** Path of the ES module inside the plugin's static dir, e.g. `ui.js`; its default export is the element class. */
  module: string;
}

/** One plugin as the shell's public endpoint (`GET /api/shell/plugins`, `/api/shell/events`) lists it. */
export interface ShellPlugin {
  name: string;
  /** Empty while the plugin is not loaded. */
  version: string;
  status: "loaded" | "inactive";
  /** Present when the plugin is loaded and declares a UI. */
  ui?: PluginUi & {
    /** URL of the module (served from the plugin's static dir). */
    url: string;
    /** The UI runs in a sandboxed iframe (container plugins: untrusted code). */
    sandboxed: boolean;
  };
  /** `/plugin/{name}/api` */
  apiBase: string;
  icon?: string;
  description?: string;
}

const RESERVED = new Set([
  "annotation-xml",
  "color-profile",
  "font-face",
  "font-face-src",
  "font-face-uri",
  "font-face-format",
  "font-face-name",
  "missing-glyph",
]);

/**
 * True for a valid custom element name (HTML's "valid custom element name", ASCII subset): starts with a-z, contains
 * a hyphen, only a-z 0-9 `-` `.` `_`, at most 100 characters, not one of the names the HTML spec reserves.
 */
export function isValidElementName(name: unknown): name is string {
  return (
    typeof name === "string" &&
    name.length <= 100 &&
    /^[a-z][a-z0-9._-]*-[a-z0-9._-]*$/.test(name) &&
    !RESERVED.has(name)
  );
}

/** `manifest.json` / `manifest()`; validated at install against `manifest.schema.json`. */
export interface PluginManifest {
  name: string;
  version: string;
  description?: string;
  /** `in_process` (worker thread, default) or `container` (Podman). */
  plugin_type?: "in_process" | "container";
  /**
   * In-process plugins: `worker` (default: a worker thread of its own) or `shared` (direct function calls on the
   * plugin host's main thread: fastest, but a crash or a stuck loop takes the whole host down, and an unload or
   * upgrade leaves the old code in memory until the host is recycled). The operator may refuse `shared`.
   */
  isolation?: "worker" | "shared";
  /** Path of the callback module inside the package, default `dist/index.js`. */
  callback_module?: string;
  /** semver range of hecate versions this plugin runs on, checked at install. */
  engines?: { hecate?: string };
  /** Static dir inside the package, default `priv/static`. */
  static?: string;
  /** JSON Schema of the plugin's settings (`config.settings`). */
  settings?: Record<string, unknown>;
  icon?: string;
  group_name?: string;
  group_icon?: string;
  /** The plugin's web UI in the daemon's app shell (see `@hecate/sdk/ui`). */
  ui?: PluginUi;
  /** Container plugins only. */
  container?: {
    /** OCI archive inside the package (for `podman load`), or absent to run on hecate's own Node base image. */
    image_archive?: string;
    image?: string;
    /** Command run inside the container (base image mode), e.g. ["node", "/plugin/dist/index.js"]. */
    command?: string[];
    memory_mb?: number;
    cpus?: number;
    pids?: number;
    health_path?: string;
    /** Mount the plugin's data dir (`plugins/{name}/data`, kept across upgrades) writable at /data. Default: none. */
    writable_data?: boolean;
    /**
     * Request rules the daemon applies before proxying (it does not know a container's routes): `cors` opens every
     * API route of the plugin to the listed origins, `multipart_paths` (route patterns relative to
     * `/plugin/{name}/api`, e.g. `/files/:id`) accept `multipart/form-data` bodies. See `RouteRequestOptions`.
     */
    http?: { cors?: CorsPolicy; multipart_paths?: string[] };
    /** Disk quota of the data dir in MiB (an ext4 image per plugin), default 256, capped by the operator. */
    data_quota_mb?: number;
    /** Ask for an executable /tmp (noexec by default); loads only when the operator's policy allows it. */
    exec_tmp?: boolean;
  };
}

/** What `storeConfig()` returns when the plugin wants its own event store. */
export interface StoreConfig {
  /** Store id, default the plugin name. */
  storeId?: string;
  /** SQLite `synchronous` mode for this store, default "FULL". */
  durability?: "FULL" | "NORMAL";
}

/** Given to `init(config)` and returned by `getConfig()` from any module of the plugin. */
export interface PluginConfig {
  pluginName: string;
  pluginVersion: string;
  /** Null when the plugin has no store. */
  storeId: string | null;
  /** The plugin's own data dir (`paths.data`). */
  dataDir: string;
  paths: PluginPaths;
  /** URL prefix of the plugin's API: `/plugin/{name}/api` */
  apiPrefix: string;
  /** URL prefix of the plugin's static assets: `/plugin/{name}` */
  staticPrefix: string;
  /** Operator-supplied settings, validated against `manifest.settings`. */
  settings: Record<string, unknown>;
  /** True when run outside the daemon (standalone tests). */
  standalone: boolean;
  /**
   * Cluster mode (daemons sharing one `HECATE_STORE_URL`, in-process plugins only): this node's id and where the
   * plugin's store lives. Absent on a single daemon, in containers and standalone.
   */
  cluster?: PluginClusterConfig;
}

/** `PluginConfig.cluster`: set by the daemon; the plugin's store and `singleton` jobs use it. */
export interface PluginClusterConfig {
  /** This daemon's node id (`HECATE_NODE_ID`). */
  nodeId: string;
  /**
   * The PostgreSQL URL of the plugin's store. The host hands it over with its password; `setConfig` keeps that
   * inside the SDK, so `getConfig()` and `init(config)` show it without the password (safe to log).
   */
  storeUrl: string;
}

export interface PluginRequest {
  method: HttpMethod;
  /** Path relative to the API prefix, e.g. `/tasks/42`. */
  path: string;
  /** Route params from the matched pattern, e.g. `{ id: "42" }`. */
  params: Record<string, string>;
  query: Record<string, string | string[]>;
  /** Lower-cased header names. */
  headers: Record<string, string | string[] | undefined>;
  remoteAddress?: string;
  /**
   * Aborted when the client goes away, the route's deadline passes (see RouteRequestOptions.timeoutMs) or the plugin
   * is unloading past its deadline.
   */
  signal: AbortSignal;
  /** Body as a stream (never buffered by the host). */
  stream(): Readable;
  /** Whole body, refused past `limit` bytes (default 1 MiB) with a 413 HttpError. */
  bytes(limit?: number): Promise<Uint8Array>;
  text(limit?: number): Promise<string>;
  /** Parsed JSON body; invalid JSON -> 400 HttpError. */
  json<T = unknown>(limit?: number): Promise<T>;
}

/** What a handler returns. A plain object/array/string/Uint8Array is shorthand for `{ status: 200, body }`. */
export interface Reply {
  status?: number;
  headers?: Record<string, string | string[]>;
  /** Objects and arrays are sent as JSON; strings as text/plain (unless content-type is set); bytes as-is. */
  body?: unknown;
  /** Stream a body (chunks are sent as they come). */
  stream?: Readable | AsyncIterable<Uint8Array>;
  /**
   * Serve a file by absolute path (must lie inside the plugin's root dir); the host streams it with
   * ETag / If-None-Match / Range / content type. `downloadName` sets Content-Disposition: attachment.
   */
  file?: { path: string; downloadName?: string; contentType?: string };
}

/**
 * What a handler returns: a `Reply`, or a body sent as JSON (any object or array: interface types included), a string
 * (text/plain) or bytes, or nothing (204).
 */
// `object`, not `Record<string, unknown>`: an interface has no index signature, so it was not assignable to a Record.
export type HandlerResult = Reply | object | string | Uint8Array | null | undefined;
export type Handler = (req: PluginRequest) => HandlerResult | Promise<HandlerResult>;

/**
 * Cross-origin use of a route. Without it the daemon refuses (403) every state-changing request (not GET, HEAD or
 * OPTIONS) whose `Origin` is not the host the request was sent to. With it, the listed origins may call the route:
 * the daemon answers the preflight `OPTIONS` itself and sets the `Access-Control-*` reply headers.
 */
export interface CorsPolicy {
  /** Exact origins (`https://app.example:8443`) or "*" for any (then `credentials` must stay off). */
  origins: string[] | "*";
  /** Let the browser send cookies / HTTP auth (`Access-Control-Allow-Credentials: true`). Default false. */
  credentials?: boolean;
  /** Methods allowed cross-origin; default the route's own. */
  methods?: HttpMethod[];
  /** Request headers allowed cross-origin besides `content-type`. */
  headers?: string[];
}

/** Request rules of an HTTP route, enforced by the daemon (before the plugin sees the request, and its deadline). */
export interface RouteRequestOptions {
  /** Open the route to other origins (see CorsPolicy). */
  cors?: CorsPolicy;
  /**
   * Accept `multipart/form-data` bodies (file uploads). Otherwise a state-changing request with a body must be JSON
   * (`application/json` or `application/*+json`): anything else is refused with 415.
   */
  multipart?: boolean;
  /**
   * Handler deadline (ms) from the request's dispatch to the reply head, default 30 000; `0` = none. The operator's
   * cap (`HECATE_MAX_HANDLER_TIMEOUT_MS`) bounds it, `0` included. Past it the client gets 504 `handler_timeout` and
   * `req.signal` aborts (reason: a `TimeoutError` DOMException). A streamed reply is not cut once its head went out.
   */
  timeoutMs?: number;
}

/** An HTTP route, path relative to `/plugin/{name}/api` (find-my-way syntax: `/tasks/:id`, `/files/*`). */
export interface HttpRouteDefinition extends RouteRequestOptions {
  kind?: "http";
  method: HttpMethod | HttpMethod[];
  path: string;
  handler: Handler;
}

export interface WsConnection {
  readonly id: string;
  readonly path: string;
  readonly params: Record<string, string>;
  readonly query: Record<string, string | string[]>;
  /** Resolves once the host has handed the frame to the socket (backpressure: await it). */
  send(data: string | Uint8Array): Promise<void>;
  close(code?: number, reason?: string): void;
  /** Free-form per-connection state. */
  state: Record<string, unknown>;
}

export interface WsHandlers {
  /** Return false (or throw) to refuse the upgrade with 403. */
  onOpen?(
    conn: WsConnection,
    req: Omit<PluginRequest, "stream" | "bytes" | "text" | "json">,
  ): void | boolean | Promise<void | boolean>;
  onMessage?(conn: WsConnection, data: string | Uint8Array): void | Promise<void>;
  onClose?(conn: WsConnection, code: number, reason: string): void | Promise<void>;
}

/** A WebSocket endpoint, path relative to `/plugin/{name}/api`. */
export interface WsRouteDefinition {
  kind: "ws";
  path: string;
  handlers: WsHandlers;
  /**
   * Origins (`https://host:port`) allowed besides the daemon's own host, or "*" for any. By default the main thread
   * refuses (403) a browser upgrade whose Origin differs from the Host it was sent to.
   */
  allowedOrigins?: string[] | "*";
  /**
   * Largest message (bytes, after reassembly of fragments) accepted from a client on this route; a bigger one closes
   * the connection with 1009. Default `DEFAULT_WS_MAX_PAYLOAD` (1 MiB). A container plugin's connections also pass the
   * daemon's proxy, whose own limit (the operator's, default 1 MiB too) caps this.
   */
  maxPayload?: number;
}

/** Default `WsRouteDefinition.maxPayload`: 1 MiB. */
export const DEFAULT_WS_MAX_PAYLOAD = 1024 * 1024;

export type RouteDefinition = HttpRouteDefinition | WsRouteDefinition;

/** A plugin's callback module (its `callback_module`, default `dist/index.js`). */
export interface PluginModule {
  manifest(): PluginManifest;
  storeConfig?(): StoreConfig | null | undefined;
  init(config: PluginConfig): void | Promise<void>;
  /** Routes, collected after `init`. */
  routes?(): RouteDefinition[] | Promise<RouteDefinition[]>;
  /** Called at unload, with a deadline (the host terminates the worker after it). */
  terminate?(): void | Promise<void>;
  /**
   * The operator changed the plugin's settings (`PUT /admin/api/plugins/{name}/settings`, `hecate plugin config`):
   * the new settings, validated, defaults applied, secrets decrypted. `getConfig().settings` already returns them.
   * Without this callback (or when it throws) the daemon swaps the plugin instead: a fresh instance gets them in
   * `init(config)`, with zero downtime.
   */
  onSettingsChanged?(settings: Record<string, unknown>): void | Promise<void>;
  /**
   * Optional: the plugin's own view of its health, listed by the daemon's `GET /health` (asked at each call, answered
   * within 1 s or the plugin is reported `down`). Without it a running plugin is `ok`.
   */
  health?(): PluginHealth | Promise<PluginHealth>;
}

/** What `health()` answers, and what `GET /health` lists per plugin. */
export interface PluginHealth {
  status: "ok" | "degraded" | "down";
  detail?: string;
}

/** Throw from a handler to answer with a status and a JSON body `{ error: { code, message, details } }`. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.name = "HttpError";
  }
}
