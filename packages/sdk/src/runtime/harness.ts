/**
 * Standalone harness for plugin authors: runs a plugin module in-process (no daemon, no worker) through the same
 * dispatcher the daemon uses, with `standaloneConfig`.
 *
 *   const h = await createTestHarness(await import("../src/index.js"), { settings: { x: 1 } });
 *   const r = await h.request("POST", "/tasks", { body: { title: "a" } });   // r.status, r.headers, r.body
 *   await h.close();
 */
import { mkdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { resetConfig, standaloneConfig } from "../config.js";
import type { HttpMethod, PluginConfig, PluginManifest, PluginModule } from "../contract.js";
import type { MainToWorker, RouteAnnouncement, WorkerToMain } from "../protocol.js";
import { Dispatcher } from "./dispatcher.js";

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

interface Pending {
  resolve(r: HarnessResponse): void;
  reject(e: Error): void;
  status: number;
  headers: Record<string, string | string[]>;
  chunks: Uint8Array[];
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
  const config = standaloneConfig(name, { ...options.config, settings: options.settings ?? {} });
  // Like the daemon, hand the plugin an existing data dir.
  mkdirSync(config.dataDir, { recursive: true });
  const loaded = await dispatcher.load(m as PluginModule, config);
  if (loaded.t === "load-failed") throw new HarnessLoadError(loaded.stage, loaded.message);
  const routes = loaded.routes;
  let nextId = 1;
  const wsClients = new Map<number, WsClient>();

  async function onMessage(msg: WorkerToMain): Promise<void> {
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
      const query: Record<string, string | string[]> = {};
      for (const [k, v] of new URLSearchParams(q < 0 ? "" : path.slice(q + 1))) {
        const prev = query[k];
        query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
      }
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
      const matchMethod = method === "HEAD" ? ["HEAD", "GET"] : [method];
      let match: { route: RouteAnnouncement; params: Record<string, string> } | undefined;
      for (const mm of matchMethod) {
        for (const r of routes) {
          if (r.kind !== "http" || !r.methods.includes(mm as HttpMethod)) continue;
          const params = matchPath(r.path, pathname);
          if (params) {
            match = { route: r, params };
            break;
          }
        }
        if (match) break;
      }
      if (!match) {
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
          routeId: match!.route.id,
          method,
          path: pathname,
          params: match!.params,
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
    async close(deadlineMs = 5000) {
      await dispatcher.terminate(deadlineMs);
      resetConfig();
    },
  };
}

/**
 * Matches the subset of find-my-way's syntax plugins use (`/a/:id`, `/files/*`); the harness lives in the SDK,
 * which has no router dependency, and the daemon does the real matching with find-my-way.
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
