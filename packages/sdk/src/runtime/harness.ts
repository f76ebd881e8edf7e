/**
 * Standalone harness for plugin authors: runs a plugin module in-process (no daemon, no worker) through the same
 * dispatcher the daemon uses, with `standaloneConfig`.
 *
 *   const h = await createTestHarness(await import("../src/index.js"), { settings: { x: 1 } });
 *   const r = await h.request("POST", "/tasks", { body: { title: "a" } });   // r.status, r.headers, r.body
 *   await h.close();
 *
 * HTTP goes over a real socket on 127.0.0.1 through the daemon's own host side of the protocol (HttpExchanges:
 * reply framing, request-body flow control, handler deadlines, the reply cap), so a plugin answers the same here as
 * in the daemon. `h.listen()` gives that server's URL, for tests that talk HTTP themselves (fetch, a browser):
 *
 *   const { url } = await h.listen();
 *   const res = await fetch(`${url}/tasks`);   // url = http://127.0.0.1:<port>; API paths go right after it
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { realpath } from "node:fs/promises";
import {
  Agent,
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { resetConfig, standaloneConfig } from "../config.js";
import {
  DEFAULT_WS_MAX_PAYLOAD,
  type HttpMethod,
  type PluginConfig,
  type PluginManifest,
  type PluginModule,
} from "../contract.js";
import { pluginPaths } from "../paths.js";
import { DEFAULT_MAX_REPLY_BYTES, type RouteAnnouncement, type WorkerToMain } from "../protocol.js";
import { Dispatcher } from "./dispatcher.js";
import { DEFAULT_HANDLER_TIMEOUT_MS, type DeadlineOptions, HttpExchanges } from "./http-exchanges.js";
import { findRoute, parseQuery } from "./route-path.js";
import { sendFile, sendJsonError } from "./send-file.js";
import { rejectUpgrade, WsConnections } from "./ws-connections.js";
import { wsServersByLimit } from "./ws-servers.js";

// kept importable from here (its tests and older imports use this path)
export { matchPath } from "./route-path.js";

export interface HarnessOptions {
  settings?: Record<string, unknown>;
  /** Overrides of the standalone config (name defaults to the manifest's name). */
  config?: Partial<PluginConfig>;
  /** Handler deadlines, as the daemon's settings: default 30 s for a route without `timeoutMs`, no cap. */
  deadlines?: Partial<DeadlineOptions>;
  /** Largest non-streamed reply body (bytes), default 64 MiB as in the daemon. */
  maxReplyBytes?: number;
}

export interface HarnessResponse {
  status: number;
  headers: Record<string, string | string[]>;
  /** Parsed JSON for JSON responses, a string for text/*, otherwise a Buffer (undefined when empty). */
  body: unknown;
  raw: Buffer;
}

export interface HarnessRequestOptions {
  /** Objects are sent as JSON; strings and bytes as-is. */
  body?: unknown;
  headers?: Record<string, string>;
}

/** A WebSocket connection to the plugin, without sockets. */
export interface HarnessWs {
  /** Everything the plugin sent so far. */
  messages: (string | Uint8Array)[];
  /** Resolves with the next message the plugin sends. */
  next(): Promise<string | Uint8Array>;
  send(data: string | Uint8Array): void;
  /** Client-side close (the plugin's onClose runs). */
  close(code?: number, reason?: string): void;
  /** Resolves when the plugin closes the connection. */
  closed: Promise<{ code: number; reason: string }>;
}

/** A line the plugin logged, or a warning of the host side about one of its replies. */
export interface HarnessLogLine {
  level: string;
  msg: string;
  fields?: Record<string, unknown>;
}

export interface TestHarness {
  config: PluginConfig;
  /** Every line logged so far (the plugin's `log.*` and SDK helpers, and the host's reply warnings). */
  logs: HarnessLogLine[];
  manifest: PluginManifest;
  routes: RouteAnnouncement[];
  request(method: HttpMethod, path: string, options?: HarnessRequestOptions): Promise<HarnessResponse>;
  /** Opens a ws connection to a ws route; rejects with the status when the plugin refuses it. */
  connect(path: string, options?: { headers?: Record<string, string> }): Promise<HarnessWs>;
  /**
   * Serves the plugin's HTTP and WebSocket routes over a real socket on 127.0.0.1 (ephemeral port unless given); `url` is the base
   * the API paths are appended to. Closed by `close()`.
   */
  listen(options?: { port?: number }): Promise<{ url: string; port: number; server: Server }>;
  close(deadlineMs?: number): Promise<void>;
}

interface WsClient {
  opened(err?: Error): void;
  ws: HarnessWs;
  waiters: ((m: string | Uint8Array) => void)[];
  onClosed(c: { code: number; reason: string }): void;
}

export class HarnessLoadError extends Error {
  constructor(
    readonly stage: string,
    message: string,
  ) {
    super(`plugin failed to load at ${stage}: ${message}`);
    this.name = "HarnessLoadError";
  }
}

const tempHomes = new Set<string>();

function makeTempHome(name: string): string {
  if (tempHomes.size === 0)
    process.once("exit", () => {
      for (const dir of tempHomes) rmSync(dir, { recursive: true, force: true });
    });
  const dir = mkdtempSync(join(tmpdir(), `hecate-${name}-`));
  tempHomes.add(dir);
  return dir;
}

export async function createTestHarness(mod: unknown, options: HarnessOptions = {}): Promise<TestHarness> {
  const maxReplyBytes = options.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES;
  const logs: HarnessLogLine[] = [];
  const transport = {
    post(msg: WorkerToMain) {
      // Deliver asynchronously, like a MessagePort would, so re-entrancy matches the daemon.
      queueMicrotask(() => onMessage(msg));
    },
  };
  const dispatcher = new Dispatcher(transport, { maxReplyBytes });
  const m = mod as PluginModule & { default?: PluginModule };
  const manifestFn = typeof m.manifest === "function" ? m.manifest : m.default?.manifest;
  const name = options.config?.pluginName ?? (manifestFn ? manifestFn().name : "standalone");
  // Without given paths the harness makes a temp home, removed when the process exits (tests leave no temp dirs;
  // not at close, since a test may load the plugin again on the same paths, like an upgrade).
  const tempHome = options.config?.paths ? undefined : makeTempHome(name);
  const paths = options.config?.paths ?? pluginPaths(tempHome!, name);
  const config = standaloneConfig(name, { ...options.config, paths, settings: options.settings ?? {} });
  // Like the daemon, hand the plugin an existing data dir.
  mkdirSync(config.dataDir, { recursive: true });
  const loaded = await dispatcher.load(m as PluginModule, config);
  if (loaded.t === "load-failed") throw new HarnessLoadError(loaded.stage, loaded.message);
  const routes = loaded.routes;
  const http = new HttpExchanges({
    plugin: name,
    post: (msg) => dispatcher.handle(msg),
    serveFile: async (req, res, file) =>
      sendFile(req, res, file.path, await realpath(config.paths.root), {
        downloadName: file.downloadName,
        contentType: file.contentType,
      }),
    log: (msg) => logs.push({ level: "warn", msg }),
    maxReplyBytes,
    transfer: false,
  });
  http.setRoutes(routes, {
    handlerTimeoutMs: options.deadlines?.handlerTimeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS,
    maxHandlerTimeoutMs: options.deadlines?.maxHandlerTimeoutMs ?? 0,
  });
  let nextId = 1;
  // WebSockets over the listen() server: the same host side as the daemon's (ids shared with connect()'s).
  const wsServers = wsServersByLimit();
  const wsConns = new WsConnections({
    post: (msg) => dispatcher.handle(msg),
    serverFor: (maxPayload) => wsServers.forLimit(maxPayload ?? DEFAULT_WS_MAX_PAYLOAD),
    transfer: false,
    nextId: () => nextId++,
  });
  const wsClients = new Map<number, WsClient>();
  let server: Promise<Server> | undefined;
  // One keep-alive agent for request(): a test's requests reuse their connections.
  const agent = new Agent({ keepAlive: true });

  function onMessage(msg: WorkerToMain): void {
    if (http.handle(msg) || wsConns.handle(msg)) return;
    if (msg.t === "log") {
      logs.push(
        msg.fields ? { level: msg.level, msg: msg.msg, fields: msg.fields } : { level: msg.level, msg: msg.msg },
      );
      return;
    }
    if (msg.t === "ws-accept" || msg.t === "ws-reject") {
      const c = wsClients.get(msg.connId);
      if (msg.t === "ws-reject") wsClients.delete(msg.connId);
      c?.opened(msg.t === "ws-reject" ? new Error(`ws upgrade refused with status ${msg.status}`) : undefined);
    } else if (msg.t === "ws-send") {
      const c = wsClients.get(msg.connId);
      if (!c) return;
      c.ws.messages.push(msg.data);
      c.waiters.shift()?.(msg.data);
      dispatcher.handle({ t: "ws-sent", connId: msg.connId, seq: msg.seq });
    } else if (msg.t === "ws-close") {
      const c = wsClients.get(msg.connId);
      if (!c) return;
      wsClients.delete(msg.connId);
      dispatcher.handle({ t: "ws-closed", connId: msg.connId, code: msg.code, reason: msg.reason });
      c.onClosed({ code: msg.code, reason: msg.reason });
    }
  }

  function serveHttp(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const method = (req.method ?? "GET") as HttpMethod;
    const m = findRoute(routes, "http", method, url.pathname);
    if (!m) {
      req.resume();
      sendJsonError(res, 404, "not_found", "no such route");
      return;
    }
    http.dispatch(req, res, {
      routeId: m.route.id,
      method,
      path: url.pathname,
      params: m.params,
      query: parseQuery(url.search),
      headers: req.headers,
      remoteAddress: req.socket.remoteAddress,
    });
  }

  function listening(port = 0): Promise<Server> {
    server ??= new Promise<Server>((resolve, reject) => {
      const s = createServer(serveHttp);
      s.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
        const url = new URL(req.url ?? "/", "http://127.0.0.1");
        const found = findRoute(routes, "ws", "GET", url.pathname);
        if (!found) return rejectUpgrade(socket, 404, "Not Found");
        const fields = {
          routeId: found.route.id,
          path: url.pathname,
          params: found.params,
          query: parseQuery(url.search),
        };
        wsConns.open(
          req,
          socket,
          head,
          { ...fields, headers: req.headers, remoteAddress: req.socket.remoteAddress },
          found.route.maxPayload,
        );
      });
      s.once("error", reject);
      s.listen(port, "127.0.0.1", () => resolve(s));
    });
    return server;
  }

  function parsed(status: number, headers: HarnessResponse["headers"], raw: Buffer): HarnessResponse {
    const ct = String(headers["content-type"] ?? "");
    let body: unknown = raw.length ? raw : undefined;
    if (raw.length && /json/.test(ct)) body = JSON.parse(raw.toString("utf8"));
    else if (raw.length && /^text\//.test(ct)) body = raw.toString("utf8");
    return { status, headers, body, raw };
  }

  return {
    config,
    logs,
    manifest: loaded.manifest,
    routes,
    async request(method, path, opts = {}) {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(opts.headers ?? {})) headers[k.toLowerCase()] = v;
      let body: Uint8Array | undefined;
      if (opts.body !== undefined) {
        if (opts.body instanceof Uint8Array) body = opts.body;
        else if (typeof opts.body === "string") body = Buffer.from(opts.body);
        else {
          body = Buffer.from(JSON.stringify(opts.body));
          headers["content-type"] ??= "application/json";
        }
        headers["content-length"] = String(body.byteLength);
      }
      const { port } = (await listening()).address() as AddressInfo;
      return new Promise<HarnessResponse>((resolve, reject) => {
        const req = httpRequest({ host: "127.0.0.1", port, method, path, headers, agent }, (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            try {
              resolve(parsed(res.statusCode ?? 0, res.headers as HarnessResponse["headers"], Buffer.concat(chunks)));
            } catch (err) {
              reject(err as Error);
            }
          });
        });
        req.on("error", reject);
        req.end(body);
      });
    },
    connect(path, opts = {}) {
      const q = path.indexOf("?");
      const pathname = q < 0 ? path : path.slice(0, q);
      const match = findRoute(routes, "ws", "GET", pathname);
      if (!match) return Promise.reject(new Error(`ws upgrade refused with status 404`));
      const connId = nextId++;
      return new Promise<HarnessWs>((resolve, reject) => {
        let onClosed: (c: { code: number; reason: string }) => void = () => {};
        const closed = new Promise<{ code: number; reason: string }>((r) => {
          onClosed = r;
        });
        const client: WsClient = {
          waiters: [],
          onClosed: (c) => onClosed(c),
          opened: (err) => (err ? reject(err) : resolve(client.ws)),
          ws: {
            messages: [],
            closed,
            next: () => new Promise((r) => client.waiters.push(r)),
            send: (data) => dispatcher.handle({ t: "ws-msg", connId, data }),
            close: (code = 1000, reason = "") => {
              if (!wsClients.delete(connId)) return;
              dispatcher.handle({ t: "ws-closed", connId, code, reason });
              onClosed({ code, reason });
            },
          },
        };
        wsClients.set(connId, client);
        dispatcher.handle({
          t: "ws-open",
          connId,
          routeId: match!.route.id,
          path: pathname,
          params: match!.params,
          query: Object.fromEntries(new URLSearchParams(q < 0 ? "" : path.slice(q + 1))),
          headers: Object.fromEntries(Object.entries(opts.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v])),
          remoteAddress: "127.0.0.1",
        });
      });
    },
    async listen(opts = {}) {
      const s = await listening(opts.port);
      const port = (s.address() as AddressInfo).port;
      return { url: `http://127.0.0.1:${port}`, port, server: s };
    },
    async close(deadlineMs = 5000) {
      await dispatcher.terminate(deadlineMs);
      http.close();
      wsConns.closeAll(1001, "plugin unloading");
      wsServers.close();
      agent.destroy();
      const s = await server?.catch(() => undefined);
      server = undefined;
      if (s) {
        s.closeAllConnections();
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
      resetConfig();
    },
  };
}
