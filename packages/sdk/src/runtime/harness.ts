/**
 * Standalone harness for plugin authors: runs a plugin module in-process (no daemon, no worker) through the same
 * dispatcher the daemon uses, with `standaloneConfig`.
 *
 *   const h = await createTestHarness(await import("../src/index.js"), { settings: { x: 1 } });
 *   const r = await h.request("POST", "/tasks", { body: { title: "a" } });   // r.status, r.headers, r.body
 *   await h.close();
 *
 * `h.listen()` also serves the plugin over real HTTP on 127.0.0.1 (streamed request bodies with the daemon's flow
 * control, streamed replies, `Reply.file` with ETag / Range / Content-Disposition), for tests that need sockets:
 *
 *   const { url } = await h.listen();
 *   const res = await fetch(`${url}/tasks`);   // url = http://127.0.0.1:<port>; API paths go right after it
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { readFile, realpath } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { resetConfig, standaloneConfig } from "../config.js";
import type { HttpMethod, PluginConfig, PluginManifest, PluginModule } from "../contract.js";
import { pluginPaths } from "../paths.js";
import type { MainToWorker, RouteAnnouncement, WorkerToMain } from "../protocol.js";
import { Dispatcher } from "./dispatcher.js";
import { matchPath } from "./route-path.js";
import { sendFile, sendJsonError } from "./send-file.js";

// kept importable from here (its tests and older imports use this path)
export { matchPath } from "./route-path.js";

/** Unacknowledged request-body bytes past which the HTTP server stops reading the client (as the daemon does). */
const BODY_WINDOW = 1024 * 1024;

export interface HarnessOptions {
  settings?: Record<string, unknown>;
  /** Overrides of the standalone config (name defaults to the manifest's name). */
  config?: Partial<PluginConfig>;
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

export interface TestHarness {
  config: PluginConfig;
  manifest: PluginManifest;
  routes: RouteAnnouncement[];
  request(method: HttpMethod, path: string, options?: HarnessRequestOptions): Promise<HarnessResponse>;
  /** Opens a ws connection to a ws route; rejects with the status when the plugin refuses it. */
  connect(path: string, options?: { headers?: Record<string, string> }): Promise<HarnessWs>;
  /**
   * Serves the plugin's HTTP routes over a real socket on 127.0.0.1 (ephemeral port unless given); `url` is the base
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

interface HttpExchange {
  req: IncomingMessage;
  res: ServerResponse;
  /** Body bytes handed to the plugin and not yet acknowledged. */
  inflight: number;
}

interface Pending {
  resolve(r: HarnessResponse): void;
  reject(e: Error): void;
  status: number;
  headers: Record<string, string | string[]>;
  chunks: Uint8Array[];
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
  const pending = new Map<number, Pending>();
  let dispatcher: Dispatcher;
  const transport = {
    post(msg: WorkerToMain) {
      // Deliver asynchronously, like a MessagePort would, so re-entrancy matches the daemon.
      queueMicrotask(() => void onMessage(msg));
    },
  };
  dispatcher = new Dispatcher(transport);
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
  let nextId = 1;
  const wsClients = new Map<number, WsClient>();
  const httpPending = new Map<number, HttpExchange>();
  let server: Server | undefined;

  async function onMessage(msg: WorkerToMain): Promise<void> {
    if ("id" in msg && httpPending.has(msg.id)) {
      onHttpMessage(msg);
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
    } else if (msg.t === "res") {
      const p = pending.get(msg.id);
      if (!p) return;
      p.status = msg.status;
      p.headers = msg.headers;
      if (msg.file) {
        try {
          const data = await readFile(msg.file.path);
          p.headers["content-type"] ??= msg.file.contentType ?? "application/octet-stream";
          if (msg.file.downloadName)
            p.headers["content-disposition"] =
              `attachment; filename*=UTF-8''${encodeURIComponent(msg.file.downloadName)}`;
          finish(msg.id, data);
        } catch (err) {
          pending.delete(msg.id);
          p.reject(err as Error);
        }
      } else if (!msg.streaming) finish(msg.id, msg.body);
    } else if (msg.t === "res-chunk") {
      const p = pending.get(msg.id);
      if (!p) return;
      p.chunks.push(msg.chunk);
      dispatcher.handle({ t: "res-ack", id: msg.id });
    } else if (msg.t === "res-end") {
      const p = pending.get(msg.id);
      if (!p) return;
      if (msg.error) {
        pending.delete(msg.id);
        p.reject(new Error(`response stream failed: ${msg.error}`));
      } else finish(msg.id, Buffer.concat(p.chunks));
    }
  }

  function match(method: HttpMethod, pathname: string) {
    for (const mm of method === "HEAD" ? ["HEAD", "GET"] : [method]) {
      for (const r of routes) {
        if (r.kind !== "http" || !r.methods.includes(mm as HttpMethod)) continue;
        const params = matchPath(r.path, pathname);
        if (params) return { route: r, params };
      }
    }
    return undefined;
  }

  function parseQuery(search: string): Record<string, string | string[]> {
    // Null prototype, as in the daemon: ?constructor=1 or ?__proto__= are plain keys.
    const query: Record<string, string | string[]> = Object.create(null);
    for (const [k, v] of new URLSearchParams(search)) {
      const prev = query[k];
      query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
    }
    return query;
  }

  function onHttpMessage(msg: WorkerToMain): void {
    const x = httpPending.get((msg as { id: number }).id)!;
    const { req, res } = x;
    if (msg.t === "body-ack") {
      x.inflight -= msg.bytes;
      if (x.inflight <= BODY_WINDOW && req.isPaused()) req.resume();
    } else if (msg.t === "res") {
      if (msg.file) {
        const file = msg.file;
        void realpath(config.paths.root)
          .then((root) =>
            sendFile(req, res, file.path, root, { downloadName: file.downloadName, contentType: file.contentType }),
          )
          .catch(() => sendJsonError(res, 404, "not_found", "not found"))
          .finally(() => httpPending.delete(msg.id));
        return;
      }
      const headers: Record<string, string | string[] | number> = { ...msg.headers };
      if (msg.body) headers["content-length"] = msg.body.byteLength;
      else if (!msg.streaming) headers["content-length"] ??= 0;
      res.writeHead(msg.status, headers);
      if (!msg.streaming) {
        httpPending.delete(msg.id);
        res.end(msg.body);
      }
    } else if (msg.t === "res-chunk") {
      res.write(msg.chunk, () => dispatcher.handle({ t: "res-ack", id: msg.id }));
    } else if (msg.t === "res-end") {
      httpPending.delete(msg.id);
      if (msg.error) res.destroy();
      else res.end();
    }
  }

  function serveHttp(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    const method = (req.method ?? "GET") as HttpMethod;
    const m = match(method, url.pathname);
    if (!m) {
      req.resume();
      sendJsonError(res, 404, "not_found", "no such route");
      return;
    }
    const id = nextId++;
    const x: HttpExchange = { req, res, inflight: 0 };
    httpPending.set(id, x);
    res.on("close", () => {
      if (httpPending.delete(id)) dispatcher.handle({ t: "abort", id });
    });
    dispatcher.handle({
      t: "req",
      id,
      routeId: m.route.id,
      method,
      path: url.pathname,
      params: m.params,
      query: parseQuery(url.search),
      headers: req.headers,
      remoteAddress: req.socket.remoteAddress,
      complete: false,
    });
    req.on("data", (chunk: Buffer) => {
      if (!httpPending.has(id)) return;
      x.inflight += chunk.byteLength;
      dispatcher.handle({ t: "body", id, chunk });
      if (x.inflight > BODY_WINDOW) req.pause();
    });
    req.on("end", () => {
      if (httpPending.has(id)) dispatcher.handle({ t: "end", id });
    });
  }

  function finish(id: number, body: Uint8Array | undefined): void {
    const p = pending.get(id)!;
    pending.delete(id);
    const raw = Buffer.from(body ?? new Uint8Array());
    const ct = String(p.headers["content-type"] ?? "");
    let parsed: unknown = raw.length ? raw : undefined;
    if (raw.length && /json/.test(ct)) parsed = JSON.parse(raw.toString("utf8"));
    else if (raw.length && /^text\//.test(ct)) parsed = raw.toString("utf8");
    p.resolve({ status: p.status, headers: p.headers, body: parsed, raw });
  }

  return {
    config,
    manifest: loaded.manifest,
    routes,
    request(method, path, opts = {}) {
      const q = path.indexOf("?");
      const pathname = q < 0 ? path : path.slice(0, q);
      const query = parseQuery(q < 0 ? "" : path.slice(q + 1));
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
      const found = match(method, pathname);
      if (!found) {
        const raw = Buffer.from(JSON.stringify({ error: { code: "not_found", message: "no such route" } }));
        return Promise.resolve({
          status: 404,
          headers: { "content-type": "application/json" },
          body: JSON.parse(raw.toString()),
          raw,
        });
      }
      const id = nextId++;
      return new Promise<HarnessResponse>((resolve, reject) => {
        pending.set(id, { resolve, reject, status: 0, headers: {}, chunks: [] });
        const req: MainToWorker = {
          t: "req",
          id,
          routeId: found.route.id,
          method,
          path: pathname,
          params: found.params,
          query,
          headers,
          remoteAddress: "127.0.0.1",
          body,
          complete: true,
        };
        dispatcher.handle(req);
      });
    },
    connect(path, opts = {}) {
      const q = path.indexOf("?");
      const pathname = q < 0 ? path : path.slice(0, q);
      let match: { route: RouteAnnouncement; params: Record<string, string> } | undefined;
      for (const r of routes) {
        const params = r.kind === "ws" ? matchPath(r.path, pathname) : null;
        if (params) {
          match = { route: r, params };
          break;
        }
      }
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
      if (!server) {
        const s = createServer(serveHttp);
        await new Promise<void>((resolve, reject) => {
          s.once("error", reject);
          s.listen(opts.port ?? 0, "127.0.0.1", () => resolve());
        });
        server = s;
      }
      const port = (server.address() as AddressInfo).port;
      return { url: `http://127.0.0.1:${port}`, port, server };
    },
    async close(deadlineMs = 5000) {
      await dispatcher.terminate(deadlineMs);
      if (server) {
        const s = server;
        server = undefined;
        s.closeAllConnections();
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
      resetConfig();
    },
  };
}
