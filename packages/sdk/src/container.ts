/**
 * `@hecate/sdk/container`: runs a plugin module inside its container, serving HTTP on a Unix socket that the daemon
 * proxies `/plugin/{name}/api/*` to. Requests go through the same worker-side dispatcher as in-process plugins
 * (`runtime/dispatcher.ts`), so handlers see the same `PluginRequest` and may return the same `Reply` shapes; this
 * module only translates node:http (and `ws` upgrades) to and from the dispatcher's messages.
 *
 *   import { serveContainerPlugin } from "@hecate/sdk/container";
 *   import * as plugin from "./plugin.js";
 *   await serveContainerPlugin(plugin);
 *
 * The daemon passes the plugin's config as JSON in `HECATE_PLUGIN_CONFIG`, and its handler deadline and reply cap
 * in `HECATE_HANDLER_TIMEOUT_MS`, `HECATE_MAX_HANDLER_TIMEOUT_MS` and `HECATE_MAX_REPLY_BYTES` (the same settings, and
 * the same HttpExchanges, as for in-process plugins); `GET /__health` answers 200 once loaded.
 */
import { unlinkSync } from "node:fs";
import { realpath } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { standaloneConfig } from "./config.js";
import { DEFAULT_WS_MAX_PAYLOAD, type HttpMethod, type PluginConfig, type PluginModule } from "./contract.js";
import { forwardedClientAddress } from "./forwarded.js";
import { DEFAULT_MAX_REPLY_BYTES, type RouteAnnouncement, type WorkerToMain } from "./protocol.js";
import { Dispatcher } from "./runtime/dispatcher.js";
import { DEFAULT_HANDLER_TIMEOUT_MS, type DeadlineOptions, HttpExchanges } from "./runtime/http-exchanges.js";
import { findRoute, parseQuery } from "./runtime/route-path.js";
import { isInside, sendFile, sendJsonError } from "./runtime/send-file.js";
import { rejectUpgrade, WsConnections } from "./runtime/ws-connections.js";
import { wsServersByLimit } from "./runtime/ws-servers.js";

export const DEFAULT_CONTAINER_SOCKET = "/run/plugin/plugin.sock";
export const HEALTH_PATH = "/__health";

export interface ServeContainerOptions {
  socketPath?: string;
  /** Config given to `init`; default: `HECATE_PLUGIN_CONFIG` (JSON) or a standalone config. */
  config?: PluginConfig;
  /** Run `terminate()` on SIGTERM/SIGINT and exit (default true). */
  handleSignals?: boolean;
  /** Deadline of the plugin's `terminate()` at shutdown, default 5000 ms. */
  terminateDeadlineMs?: number;
  /** Handler deadlines; default: `HECATE_HANDLER_TIMEOUT_MS` / `HECATE_MAX_HANDLER_TIMEOUT_MS`, else 30 s / no cap. */
  deadlines?: DeadlineOptions;
  /** Largest non-streamed reply body (bytes); default: `HECATE_MAX_REPLY_BYTES`, else 64 MiB. */
  maxReplyBytes?: number;
}

export interface ContainerPluginServer {
  server: Server;
  routes: RouteAnnouncement[];
  close(): Promise<void>;
}

export class ContainerLoadError extends Error {
  constructor(
    readonly stage: string,
    message: string,
  ) {
    super(`plugin failed to load at ${stage}: ${message}`);
    this.name = "ContainerLoadError";
  }
}

const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

function configFromEnv(mod: PluginModule): PluginConfig {
  const raw = process.env.HECATE_PLUGIN_CONFIG;
  if (raw) return JSON.parse(raw) as PluginConfig;
  const m = mod as PluginModule & { default?: PluginModule };
  const name = (typeof m.manifest === "function" ? m.manifest() : m.default?.manifest())?.name ?? "standalone";
  return standaloneConfig(name);
}

/** A non-negative integer setting from the environment the daemon gave the container; `fallback` when unset. */
function envInt(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const v = Number(raw);
  if (!Number.isSafeInteger(v) || v < 0)
    throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return v;
}

export async function serveContainerPlugin(
  pluginModule: unknown,
  options: ServeContainerOptions = {},
): Promise<ContainerPluginServer> {
  const socketPath = options.socketPath ?? DEFAULT_CONTAINER_SOCKET;
  const mod = pluginModule as PluginModule;
  const wsServers = wsServersByLimit();

  const maxReplyBytes = options.maxReplyBytes ?? envInt("HECATE_MAX_REPLY_BYTES", DEFAULT_MAX_REPLY_BYTES);
  const deadlines = options.deadlines ?? {
    handlerTimeoutMs: envInt("HECATE_HANDLER_TIMEOUT_MS", DEFAULT_HANDLER_TIMEOUT_MS),
    maxHandlerTimeoutMs: envInt("HECATE_MAX_HANDLER_TIMEOUT_MS", 0),
  };
  const dispatcher: Dispatcher = new Dispatcher({ post: (msg) => onMessage(msg) }, { maxReplyBytes });
  const config = options.config ?? configFromEnv(mod);
  const root = config.paths?.root ?? "/plugin";
  const http = new HttpExchanges({
    plugin: config.pluginName,
    post: (msg) => dispatcher.handle(msg),
    serveFile: (req, res, file) => sendPluginFile(req, res, file, [root, config.paths?.data]),
    log: (msg) => console.error(JSON.stringify({ level: "warn", msg })),
    maxReplyBytes,
    transfer: false,
  });
  const ws = new WsConnections({
    post: (msg) => dispatcher.handle(msg),
    serverFor: (maxPayload) => wsServers.forLimit(maxPayload ?? DEFAULT_WS_MAX_PAYLOAD),
    transfer: false,
  });
  const loaded = await dispatcher.load(mod, config);
  if (loaded.t === "load-failed") throw new ContainerLoadError(loaded.stage, loaded.message);
  const routes = loaded.routes;
  http.setRoutes(routes, deadlines);

  function onMessage(msg: WorkerToMain): void {
    if (http.handle(msg) || ws.handle(msg)) return;
    switch (msg.t) {
      case "log": {
        const line = JSON.stringify({ level: msg.level, msg: msg.msg, ...msg.fields });
        if (msg.level === "error" || msg.level === "fatal" || msg.level === "warn") console.error(line);
        else console.log(line);
        return;
      }
      default:
        return;
    }
  }

  /** Path and query of a request target (relative to the API prefix, which the daemon's proxy strips). */
  function split(url: string | undefined) {
    const u = url ?? "/";
    const q = u.indexOf("?");
    return { path: q < 0 ? u : u.slice(0, q), query: parseQuery(q < 0 ? "" : u.slice(q + 1)) };
  }

  const server = createServer((req, res) => {
    const { path, query } = split(req.url);
    const method = req.method ?? "GET";
    if (path === HEALTH_PATH && (method === "GET" || method === "HEAD")) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ status: "ok", plugin: config.pluginName }));
      return;
    }
    const found = METHODS.has(method) ? findRoute(routes, "http", method, path) : undefined;
    if (!found) {
      sendJsonError(res, 404, "not_found", `no route for ${method} ${path}`);
      return;
    }
    http.dispatch(req, res, {
      routeId: found.route.id,
      method: method as HttpMethod,
      path,
      params: found.params,
      query,
      headers: req.headers,
      remoteAddress: clientAddress(req),
    });
  });
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const { path, query } = split(req.url);
    const found = findRoute(routes, "ws", "GET", path);
    if (!found) {
      rejectUpgrade(socket, 404, "Not Found");
      return;
    }
    ws.open(
      req,
      socket,
      head,
      {
        routeId: found.route.id,
        path,
        params: found.params,
        query,
        headers: req.headers,
        remoteAddress: clientAddress(req),
      },
      found.route.maxPayload,
    );
  });
  // Keep-alive from the daemon's proxy pool: longer than undici's default keepAliveTimeout (4 s).
  server.keepAliveTimeout = 65_000;

  try {
    unlinkSync(socketPath); // stale socket from a previous run of this container
  } catch {}
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(socketPath, () => {
      server.off("error", reject);
      resolve();
    });
  });

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      await dispatcher.terminate(options.terminateDeadlineMs ?? 5000);
      http.close();
      ws.closeAll(1001, "plugin stopping");
      wsServers.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    })();
    return closing;
  };
  if (options.handleSignals !== false) {
    const onSignal = () => {
      void close().finally(() => process.exit(0));
    };
    process.once("SIGTERM", onSignal);
    process.once("SIGINT", onSignal);
  }
  return { server, routes, close };
}

/** The hop the daemon's proxy appended (rightmost), never a client's own claim; the socket peer when unproxied. */
function clientAddress(req: IncomingMessage): string | undefined {
  return forwardedClientAddress(req.headers) ?? req.socket.remoteAddress;
}

/**
 * Serves a `Reply.file` like the daemon does (shared `sendFile`: ETag, Range, Content-Disposition). In a container the
 * package (/plugin) and the writable data dir (/data, where uploads go) are separate mounts: a file may lie in either.
 */
async function sendPluginFile(
  req: IncomingMessage,
  res: ServerResponse,
  file: { path: string; downloadName?: string; contentType?: string },
  roots: (string | undefined)[],
): Promise<void> {
  const realRoots = (await Promise.all(roots.map((r) => (r ? realpath(r).catch(() => undefined) : undefined)))).filter(
    (r): r is string => r !== undefined,
  );
  const real = await realpath(file.path).catch(() => undefined);
  const root = (real && realRoots.find((r) => isInside(r, real))) ?? realRoots[0];
  if (!root) return sendJsonError(res, 404, "not_found", "not found");
  await sendFile(req, res, file.path, root, { downloadName: file.downloadName, contentType: file.contentType });
}
