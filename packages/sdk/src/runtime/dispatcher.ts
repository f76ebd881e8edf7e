/**
 * The worker-side dispatcher: turns main->worker protocol messages into `PluginRequest`s, calls the plugin's
 * route handlers, and turns what they return (a `Reply` or a shorthand) into worker->main messages.
 * Shared by the daemon's worker host, the standalone test harness and the container SDK entry, so a plugin
 * behaves the same everywhere.
 */
import { Readable } from "node:stream";
import { replaceSettings, setConfig } from "../config.js";
import type {
  HandlerResult,
  HttpMethod,
  HttpRouteDefinition,
  PluginConfig,
  PluginHealth,
  PluginModule,
  PluginRequest,
  Reply,
  RouteDefinition,
  StoreConfig,
  WsConnection,
  WsRouteDefinition,
} from "../contract.js";
import { HttpError } from "../contract.js";
import { pluginMetrics } from "../metrics.js";
import { DEFAULT_MAX_REPLY_BYTES, type MainToWorker, type RouteAnnouncement, type WorkerToMain } from "../protocol.js";
import { requestOptionsProblem } from "../request-policy.js";
import { stopAll as stopSupervisors } from "../supervisor.js";
import { runTerminateHooks, setLogSink } from "./hooks.js";
import { validateRoutePath } from "./route-path.js";

export { validateRoutePath } from "./route-path.js";

/** How the dispatcher talks back to its host (a worker's parentPort, a test harness, a socket). */
export interface DispatcherTransport {
  post(msg: WorkerToMain, transfer?: ArrayBuffer[]): void;
}

export type LoadResult = Extract<WorkerToMain, { t: "ready" } | { t: "load-failed" }>;

export interface DispatcherOptions {
  /**
   * Largest non-streamed reply body in bytes (default DEFAULT_MAX_REPLY_BYTES): a larger `body` is answered 502
   * `reply_too_large` (and logged) instead of being encoded; larger answers must stream.
   */
  maxReplyBytes?: number;
}

const HEALTH_STATUSES: PluginHealth["status"][] = ["ok", "degraded", "down"];
const ALL_METHODS: HttpMethod[] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
const DEFAULT_BODY_LIMIT = 1024 * 1024;
/** Response chunks in flight before the plugin waits for `res-ack`s (backpressure from a slow client). */
const RES_WINDOW = 8;
const REPLY_KEYS = new Set(["status", "headers", "body", "stream", "file"]);
const encoder = new TextEncoder();

/**
 * One request in the worker. The AbortController and the body Readable are created only when the handler asks
 * (most handlers never read `signal` or stream a body; both cost more than the rest of a small request).
 */
class ActiveRequest {
  /** Response chunks that may still be sent before waiting for a `res-ack`. */
  acks = RES_WINDOW;
  ackWaiters: (() => void)[] = [];
  private ctrl: AbortController | undefined;
  private reason: Error | undefined;
  private readable: Readable | undefined;
  /** Body chunks received before anyone asked for the stream (most requests have none: no array then). */
  private queued: Uint8Array[] | undefined;
  /** The body's end arrived before anyone asked for the stream. */
  private ended = false;
  /** Bytes handed to the Readable but not yet acknowledged (acked when the consumer asks for more). */
  private unacked = 0;

  constructor(
    private readonly transport: DispatcherTransport,
    private readonly id: number,
  ) {}

  get signal(): AbortSignal {
    if (!this.ctrl) {
      this.ctrl = new AbortController();
      if (this.reason) this.ctrl.abort(this.reason);
    }
    return this.ctrl.signal;
  }

  get aborted(): boolean {
    return this.reason !== undefined;
  }

  abort(reason: Error): void {
    this.reason ??= reason;
    this.ctrl?.abort(reason);
    this.readable?.destroy();
  }

  push(chunk: Uint8Array | null): void {
    if (this.readable) this.feed(chunk);
    else if (chunk === null) this.ended = true;
    else if (this.queued) this.queued.push(chunk);
    else this.queued = [chunk];
  }

  private feed(chunk: Uint8Array | null): void {
    const more = this.readable!.push(chunk);
    if (!chunk) return;
    this.unacked += chunk.byteLength;
    if (more) this.flushAck();
  }

  private flushAck(): void {
    if (this.unacked > 0 && !this.reason) {
      const bytes = this.unacked;
      this.unacked = 0;
      this.transport.post({ t: "body-ack", id: this.id, bytes });
    }
  }

  /** The whole body when it is already complete and nobody streamed it (no Readable needed). */
  completeBody(): Uint8Array[] | undefined {
    if (this.readable || !this.ended) return undefined;
    const chunks = this.queued ?? [];
    this.queued = undefined;
    return chunks;
  }

  stream(): Readable {
    if (!this.readable) {
      // read() = the consumer wants more: acknowledge what it got, so the host sends the next window.
      this.readable = new Readable({ highWaterMark: 256 * 1024, read: () => this.flushAck() });
      const queued = this.queued ?? [];
      this.queued = undefined;
      for (const c of queued) this.feed(c);
      if (this.ended) this.feed(null);
      if (this.reason) this.readable.destroy();
    }
    return this.readable;
  }

  destroy(): void {
    this.readable?.destroy();
    this.queued = undefined;
  }
}

interface ActiveConn {
  conn: WsConnection;
  route: WsRouteDefinition;
  sendWaiters: Map<number, { resolve: () => void; reject: (e: Error) => void }>;
  seq: number;
  closed: boolean;
  /** Frames sent from onOpen, before the host accepted the upgrade: posted right after `ws-accept`. */
  beforeAccept: Extract<WorkerToMain, { t: "ws-send" }>[] | null;
}

export class Dispatcher {
  private mod: PluginModule | undefined;
  private routes: RouteDefinition[] = [];
  private readonly requests = new Map<number, ActiveRequest>();
  private readonly conns = new Map<number, ActiveConn>();
  private terminating = false;
  private readonly maxReplyBytes: number;

  constructor(
    private readonly transport: DispatcherTransport,
    options: DispatcherOptions = {},
  ) {
    this.maxReplyBytes = options.maxReplyBytes ?? DEFAULT_MAX_REPLY_BYTES;
    // SDK helpers (scheduler...) log into this plugin's log.
    setLogSink((level, msg, fields) => this.log(level, msg, fields));
  }

  /** Routes as announced to the host (index in the plugin's list is the route id). */
  announcements(): RouteAnnouncement[] {
    return this.routes.map((r, id) => announce(r, id));
  }

  /**
   * Imports (or takes) the module, reads manifest/storeConfig, sets the config (so `getConfig()` works from any
   * module of the plugin), calls `init`, collects routes. Never throws: failures come back as `load-failed`.
   */
  async load(source: PluginModule | (() => Promise<unknown>), config: PluginConfig): Promise<LoadResult> {
    let stage: Extract<LoadResult, { t: "load-failed" }>["stage"] = "import";
    try {
      const mod = (typeof source === "function" ? await source() : source) as Partial<PluginModule> & {
        default?: Partial<PluginModule>;
      };
      // Accept `export default { manifest, init, ... }` as well as named exports.
      const m = (typeof mod.manifest !== "function" && mod.default ? mod.default : mod) as Partial<PluginModule>;
      stage = "manifest";
      if (typeof m.manifest !== "function") throw new Error("the callback module does not export manifest()");
      if (typeof m.init !== "function") throw new Error("the callback module does not export init(config)");
      const manifest = m.manifest();
      if (!manifest || typeof manifest.name !== "string" || typeof manifest.version !== "string")
        throw new Error("manifest() must return an object with string name and version");
      stage = "store";
      const storeConfig: StoreConfig | null = (m.storeConfig ? m.storeConfig() : null) ?? null;
      // The store id is fixed here, before init, so getConfig().storeId is what the plugin's store was opened with.
      config = { ...config, storeId: storeConfig ? (storeConfig.storeId ?? config.pluginName) : null };
      config = setConfig(config); // what init sees: the cluster store URL without its password
      // Imported only when wanted: plugins without a store never load SQLite.
      if (storeConfig) (await import("../store.js")).open({ durability: storeConfig.durability });
      stage = "init";
      await m.init(config);
      stage = "routes";
      const routes = m.routes ? await m.routes() : [];
      if (!Array.isArray(routes)) throw new Error("routes() must return an array");
      for (const r of routes) validateRoute(r);
      this.mod = m as PluginModule;
      this.routes = routes;
      return { t: "ready", manifest, storeConfig, routes: this.announcements() };
    } catch (err) {
      const e = err instanceof Error ? err : new Error(String(err));
      // A failed load leaves nothing open behind (the harness keeps its process; a worker may be reused in tests).
      await stopSupervisors().catch(() => {});
      await runTerminateHooks();
      return { t: "load-failed", stage, message: e.message, stack: e.stack };
    }
  }

  /** Feed one message from the host. */
  handle(msg: MainToWorker): void {
    switch (msg.t) {
      case "req":
        this.onRequest(msg);
        return;
      case "body": {
        this.requests.get(msg.id)?.push(msg.chunk);
        return;
      }
      case "end":
        this.requests.get(msg.id)?.push(null);
        return;
      case "abort": {
        const r = this.requests.get(msg.id);
        if (r) {
          // A deadline aborts like AbortSignal.timeout() does: a TimeoutError DOMException.
          r.abort(
            msg.timeoutMs === undefined
              ? new Error("client went away")
              : new DOMException(`handler deadline of ${msg.timeoutMs} ms passed`, "TimeoutError"),
          );
          this.wakeAcks(r, Number.POSITIVE_INFINITY);
          this.requests.delete(msg.id);
        }
        return;
      }
      case "res-ack": {
        const r = this.requests.get(msg.id);
        if (r) this.wakeAcks(r, 1);
        return;
      }
      case "ping":
        this.transport.post({ t: "pong", n: msg.n });
        return;
      case "health":
        void this.health().then((h) => this.transport.post({ t: "health", n: msg.n, ...h }));
        return;
      case "metrics": {
        // The heap figures of process.memoryUsage() in a worker thread are its own isolate's (as v8's heap
        // statistics; `node:v8` is not imported for them: it costs every worker ~0.3 MiB of RSS).
        const { heapUsed, heapTotal } = process.memoryUsage();
        const metrics = pluginMetrics();
        this.transport.post({ t: "metrics", n: msg.n, metrics, heap: { used: heapUsed, total: heapTotal } });
        return;
      }
      case "ws-open":
        void this.onWsOpen(msg);
        return;
      case "ws-msg": {
        const c = this.conns.get(msg.connId);
        const { connId, data } = msg;
        const bytes = typeof data === "string" ? Buffer.byteLength(data) : data.byteLength;
        const ack = () => this.transport.post({ t: "ws-ack", connId, bytes });
        if (c?.route.handlers.onMessage)
          this.guard(`ws onMessage ${c.route.path}`, () => c.route.handlers.onMessage!(c.conn, data), ack);
        else ack();
        return;
      }
      case "ws-closed":
        this.onWsClosed(msg.connId, msg.code, msg.reason);
        return;
      case "ws-sent": {
        const c = this.conns.get(msg.connId);
        const w = c?.sendWaiters.get(msg.seq);
        if (w) {
          c!.sendWaiters.delete(msg.seq);
          w.resolve();
        }
        return;
      }
      case "terminate":
        void this.terminate(msg.deadlineMs).then(() => this.transport.post({ t: "terminated" }));
        return;
      case "settings":
        void this.applySettings(msg.settings).then((r) =>
          this.transport.post({ t: "settings-applied", id: msg.id, ...r }),
        );
        return;
    }
  }

  /**
   * New settings: handed to the plugin's `onSettingsChanged` (after `getConfig().settings` is updated). Without the
   * callback nothing changes here and the host swaps the plugin; a callback that throws is reported (and logged
   * without the settings' values: they may hold secrets).
   */
  async applySettings(settings: Record<string, unknown>): Promise<{ supported: boolean; error?: string }> {
    const cb = this.mod?.onSettingsChanged;
    if (typeof cb !== "function" || this.terminating) return { supported: false };
    replaceSettings(settings);
    try {
      await cb.call(this.mod, settings);
      return { supported: true };
    } catch (err) {
      this.log("error", `onSettingsChanged() failed: ${errMessage(err)}`);
      return { supported: true, error: errMessage(err) };
    }
  }

  /** Runs the plugin's `terminate()` within the deadline, aborts requests and closes ws connections. */
  async terminate(deadlineMs: number): Promise<void> {
    if (this.terminating) return;
    this.terminating = true;
    let timer: NodeJS.Timeout | undefined;
    // The plugin's terminate(), its supervision trees, then the SDK helpers' hooks (scheduler jobs, the store with
    // its projections...), all within the one deadline.
    await Promise.race([
      Promise.resolve()
        .then(() => this.mod?.terminate?.())
        .catch((err) => this.log("error", `terminate() failed: ${errMessage(err)}`))
        .then(() => stopSupervisors())
        .catch((err) => this.log("error", `stopping supervisors failed: ${errMessage(err)}`))
        .then(() => runTerminateHooks()),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, deadlineMs);
      }),
    ]);
    clearTimeout(timer);
    for (const [id, r] of this.requests) {
      r.abort(new Error("plugin unloading"));
      this.requests.delete(id);
    }
    for (const [connId, c] of this.conns) {
      if (!c.closed) this.transport.post({ t: "ws-close", connId, code: 1001, reason: "plugin unloading" });
      this.onWsClosed(connId, 1001, "plugin unloading");
    }
  }

  /** The plugin's `health()` (ok without one); what it throws, or a malformed answer, is `down` with the reason. */
  async health(): Promise<PluginHealth> {
    const fn = this.mod?.health;
    if (!fn) return { status: this.mod ? "ok" : "down", ...(this.mod ? {} : { detail: "not loaded" }) };
    try {
      const h = await fn.call(this.mod);
      if (!h || !HEALTH_STATUSES.includes(h.status))
        return { status: "down", detail: `health() answered ${JSON.stringify(h)?.slice(0, 200)}` };
      return typeof h.detail === "string"
        ? { status: h.status, detail: h.detail.slice(0, 1000) }
        : { status: h.status };
    } catch (err) {
      return { status: "down", detail: `health() failed: ${errMessage(err)}` };
    }
  }

  log(level: "debug" | "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>): void {
    this.transport.post({ t: "log", level, msg, fields });
  }

  // ---- HTTP ----

  /**
   * One request: the handler is called at once and a synchronous result is answered in the same call (no promise,
   * no microtask: a direct-call plugin's reply is written before its dispatch returns); a promise is answered when it
   * settles. A request is kept in `requests` only while messages about it can still come (body chunks, an abort,
   * acks of a streamed reply): one answered during the call never is (V8 reallocates a Map's table each time it
   * empties: ~0.8 µs per request at low concurrency).
   */
  private onRequest(msg: Extract<MainToWorker, { t: "req" }>): void {
    const route = this.routes[msg.routeId];
    const active = new ActiveRequest(this.transport, msg.id);
    if (msg.body) active.push(msg.body);
    if (msg.complete) active.push(null);
    else this.requests.set(msg.id, active);
    let result: HandlerResult | PromiseLike<HandlerResult>;
    try {
      if (!route || route.kind === "ws") throw new HttpError(404, "not_found", "no such route");
      result = (route as HttpRouteDefinition).handler(new HandlerRequest(msg, active));
    } catch (err) {
      result = this.errorReply(err, msg.method, msg.path);
    }
    if (isThenable(result)) {
      this.requests.set(msg.id, active);
      result.then(
        (r) => this.answer(msg, active, r),
        (err) => this.answer(msg, active, this.errorReply(err, msg.method, msg.path)),
      );
    } else this.answer(msg, active, result);
  }

  private answer(msg: Extract<MainToWorker, { t: "req" }>, active: ActiveRequest, result: HandlerResult): void {
    if (active.aborted) return; // nobody to answer
    const failed = (err: unknown) => {
      this.log("error", `sending the reply of ${msg.method} ${msg.path} failed: ${errMessage(err)}`);
      this.transport.post({ t: "res-end", id: msg.id, error: errMessage(err) });
    };
    let streaming: Promise<void> | undefined;
    try {
      streaming = this.sendReply(msg.id, msg.method, msg.path, result, active);
    } catch (err) {
      failed(err);
    }
    if (streaming) {
      this.requests.set(msg.id, active); // its acks and a possible abort come later
      streaming.catch(failed).finally(() => this.forget(msg.id, active));
    } else this.forget(msg.id, active);
  }

  private forget(id: number, active: ActiveRequest): void {
    if (this.requests.get(id) === active) this.requests.delete(id);
    active.destroy();
  }

  private errorReply(err: unknown, method: string, path: string): Reply {
    if (err instanceof HttpError) {
      return {
        status: err.status,
        headers: err.headers,
        body: { error: { code: err.code, message: err.message, details: err.details } },
      };
    }
    // Unknown errors are logged in full but not leaked to the client.
    this.log("error", `handler ${method} ${path} threw: ${errMessage(err)}`, {
      stack: err instanceof Error ? err.stack : undefined,
    });
    return { status: 500, body: { error: { code: "internal_error", message: "internal error" } } };
  }

  /** Posts the reply; a streamed one returns the promise of its end (the rest is posted before returning). */
  private sendReply(
    id: number,
    method: string,
    path: string,
    result: HandlerResult,
    active: ActiveRequest,
  ): Promise<void> | undefined {
    const reply = normalizeReply(result);
    const status = reply.status ?? (reply.body === undefined && !reply.stream && !reply.file ? 204 : 200);
    const headers: Record<string, string | string[]> = {};
    const own = reply.headers;
    if (own) for (const k of Object.keys(own)) headers[k.toLowerCase()] = own[k];
    if (reply.file) {
      this.transport.post({ t: "res", id, status, headers, file: reply.file });
      return;
    }
    if (reply.stream) {
      this.transport.post({ t: "res", id, status, headers, streaming: true });
      return this.streamReply(id, reply.stream as AsyncIterable<Uint8Array | string>, active);
    }
    // Every body is sized BEFORE it is encoded: encoding a huge string (300 MB) aborted the whole process from
    // inside V8 (EncodeUtf8String), past what the worker's heap limit can catch.
    const cap = this.maxReplyBytes;
    let body: Uint8Array | undefined;
    let text: string | undefined;
    let size: number | undefined;
    const b = reply.body;
    if (b === undefined || b === null) body = undefined;
    else if (b instanceof Uint8Array) {
      if (b.byteLength > cap) size = b.byteLength;
      else body = b;
      headers["content-type"] ??= "application/octet-stream";
    } else if (typeof b === "string") {
      size = utf8Above(b, cap);
      if (size === undefined) text = b;
      headers["content-type"] ??= "text/plain; charset=utf-8";
    } else {
      const json = jsonOrTooLong(b, cap);
      size = typeof json === "number" ? json : utf8Above(json, cap);
      if (size === undefined) text = json as string;
      headers["content-type"] ??= "application/json; charset=utf-8";
    }
    if (size !== undefined) {
      this.log(
        "error",
        `reply to ${method} ${path} refused (502): its body (at least ${size} bytes) is above the ${cap}-byte cap of a non-streamed reply; stream it instead`,
      );
      const error = { code: "reply_too_large", message: `the plugin's reply is above ${cap} bytes` };
      this.transport.post({
        t: "res",
        id,
        status: 502,
        headers: { "content-type": "application/json; charset=utf-8" },
        text: JSON.stringify({ error }),
      });
      return;
    }
    if (method === "HEAD" && (body || text !== undefined)) {
      headers["content-length"] = String(body ? body.byteLength : Buffer.byteLength(text!));
      body = undefined;
      text = undefined;
    }
    if (text !== undefined) this.transport.post({ t: "res", id, status, headers, text });
    else this.transport.post({ t: "res", id, status, headers, body });
  }

  private async streamReply(id: number, it: AsyncIterable<Uint8Array | string>, active: ActiveRequest): Promise<void> {
    try {
      for await (const chunk of it) {
        if (active.aborted) break;
        const bytes = typeof chunk === "string" ? encoder.encode(chunk) : chunk;
        if (bytes.byteLength === 0) continue;
        if (active.acks <= 0) await new Promise<void>((resolve) => active.ackWaiters.push(resolve));
        if (active.aborted) break;
        active.acks--;
        // Not transferred: the plugin may keep using its buffer (a cached page...); the clone is one copy.
        this.transport.post({ t: "res-chunk", id, chunk: bytes });
      }
    } catch (err) {
      this.transport.post({ t: "res-end", id, error: errMessage(err) });
      return;
    } finally {
      if (active.aborted && "destroy" in it) (it as Readable).destroy();
    }
    this.transport.post({ t: "res-end", id });
  }

  private wakeAcks(r: ActiveRequest, n: number): void {
    r.acks = Math.min(r.acks + n, RES_WINDOW);
    if (n === Number.POSITIVE_INFINITY) r.acks = RES_WINDOW;
    while (r.ackWaiters.length && (r.acks > 0 || n === Number.POSITIVE_INFINITY)) r.ackWaiters.shift()!();
  }

  // ---- WebSocket ----

  private async onWsOpen(msg: Extract<MainToWorker, { t: "ws-open" }>): Promise<void> {
    const route = this.routes[msg.routeId];
    if (route?.kind !== "ws" || this.terminating) {
      this.transport.post({ t: "ws-reject", connId: msg.connId, status: 404 });
      return;
    }
    const active: ActiveConn = {
      conn: undefined as never,
      route,
      sendWaiters: new Map(),
      seq: 0,
      closed: false,
      beforeAccept: [],
    };
    const connId = msg.connId;
    active.conn = {
      id: String(connId),
      path: msg.path,
      params: msg.params,
      query: msg.query,
      state: {},
      send: (data) => {
        if (active.closed) return Promise.reject(new Error("ws connection closed"));
        const seq = ++active.seq;
        return new Promise<void>((resolve, reject) => {
          active.sendWaiters.set(seq, { resolve, reject });
          const frame = { t: "ws-send" as const, connId, seq, data };
          if (active.beforeAccept) active.beforeAccept.push(frame);
          else this.transport.post(frame);
        });
      },
      close: (code = 1000, reason = "") => {
        if (active.closed) return;
        this.transport.post({ t: "ws-close", connId, code, reason });
      },
    };
    this.conns.set(connId, active);
    let ok: boolean | void = true;
    try {
      const controller = new AbortController();
      ok = await route.handlers.onOpen?.(active.conn, {
        method: "GET",
        path: msg.path,
        params: msg.params,
        query: msg.query,
        headers: msg.headers,
        remoteAddress: msg.remoteAddress,
        signal: controller.signal,
      });
    } catch (err) {
      this.log("warn", `ws onOpen ${route.path} refused: ${errMessage(err)}`);
      ok = false;
    }
    const early = active.beforeAccept ?? [];
    active.beforeAccept = null;
    if (ok === false) {
      this.conns.delete(connId);
      active.closed = true;
      for (const w of active.sendWaiters.values()) w.reject(new Error("ws upgrade refused"));
      active.sendWaiters.clear();
      this.transport.post({ t: "ws-reject", connId, status: 403 });
      return;
    }
    this.transport.post({ t: "ws-accept", connId });
    // The host drops frames of a connection it has not accepted yet, so a greeting sent in onOpen waits until now.
    for (const frame of early) this.transport.post(frame);
  }

  private onWsClosed(connId: number, code: number, reason: string): void {
    const c = this.conns.get(connId);
    if (!c) return;
    this.conns.delete(connId);
    c.closed = true;
    for (const w of c.sendWaiters.values()) w.reject(new Error("ws connection closed"));
    c.sendWaiters.clear();
    if (c.route.handlers.onClose)
      this.guard(`ws onClose ${c.route.path}`, () => c.route.handlers.onClose!(c.conn, code, reason));
  }

  /** Runs a plugin callback, logging what it throws or rejects; `done` runs once it returned or settled. */
  private guard(what: string, fn: () => unknown, done?: () => void): void {
    try {
      const r = fn();
      if (r && typeof (r as Promise<void>).then === "function") {
        (r as Promise<void>).catch((err) => this.log("error", `${what} failed: ${errMessage(err)}`)).finally(done);
        return;
      }
    } catch (err) {
      this.log("error", `${what} failed: ${errMessage(err)}`);
    }
    done?.();
  }
}

/**
 * undefined when `s` encodes to at most `cap` UTF-8 bytes, else its size (or a lower bound) without encoding it:
 * at most 3 bytes per UTF-16 unit, at least 1. Only a string between cap/3 and cap units is measured exactly
 * (Buffer.byteLength flattens it once: the same allocation encoding would make, bounded by the cap).
 */
function utf8Above(s: string, cap: number): number | undefined {
  if (s.length * 3 <= cap) return undefined;
  if (s.length > cap) return s.length;
  const n = Buffer.byteLength(s, "utf8");
  return n > cap ? n : undefined;
}

/**
 * JSON.stringify, or `cap + 1` when the JSON would pass V8's longest string (its RangeError). Not bounded: the
 * stringify itself; JSON outgrowing the worker's heap ends the worker (a plugin crash, measured not fatal to the host).
 */
function jsonOrTooLong(v: unknown, cap: number): string | number {
  try {
    return JSON.stringify(v) ?? ""; // undefined for a function or symbol body: empty, as before
  } catch (err) {
    if (err instanceof RangeError && /string length/i.test(err.message)) return cap + 1;
    throw err;
  }
}

function errMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function announce(r: RouteDefinition, id: number): RouteAnnouncement {
  if (r.kind === "ws") {
    const a: RouteAnnouncement = { id, kind: "ws", methods: ["GET"], path: r.path };
    if (r.allowedOrigins) a.allowedOrigins = r.allowedOrigins;
    if (r.maxPayload !== undefined) a.maxPayload = r.maxPayload;
    return a;
  }
  const methods = Array.isArray(r.method) ? r.method : [r.method];
  const a: RouteAnnouncement = { id, kind: "http", methods, path: r.path };
  if (r.cors) a.cors = r.cors;
  if (r.multipart) a.multipart = true;
  if (r.timeoutMs !== undefined) a.timeoutMs = r.timeoutMs;
  return a;
}

function validateRoute(r: RouteDefinition): void {
  if (!r || typeof r !== "object") throw new Error("a route must be an object");
  const bad = validateRoutePath(r.path);
  if (bad) throw new Error(`route path ${JSON.stringify(r.path)} ${bad}`);
  if (r.kind === "ws") {
    if (!r.handlers || typeof r.handlers !== "object") throw new Error(`ws route ${r.path} has no handlers`);
    if (r.maxPayload !== undefined && !(Number.isSafeInteger(r.maxPayload) && r.maxPayload > 0))
      throw new Error(`ws route ${r.path}: maxPayload must be a positive integer (bytes)`);
    return;
  }
  if (r.kind !== undefined && r.kind !== "http") throw new Error(`route ${r.path}: unknown kind ${String(r.kind)}`);
  const methods = Array.isArray(r.method) ? r.method : [r.method];
  for (const m of methods)
    if (!ALL_METHODS.includes(m)) throw new Error(`route ${r.path}: unsupported method ${JSON.stringify(m)}`);
  if (typeof r.handler !== "function") throw new Error(`route ${r.path}: handler is not a function`);
  if (r.timeoutMs !== undefined && !(Number.isSafeInteger(r.timeoutMs) && r.timeoutMs >= 0))
    throw new Error(`route ${r.path}: timeoutMs must be a non-negative integer (ms, 0 = none)`);
  const problem = requestOptionsProblem(r);
  if (problem) throw new Error(`route ${r.path}: ${problem}`);
}

function isReply(v: object): v is Reply {
  // for-in, not Object.keys(): a plain JSON object body (the common reply) allocates nothing here. Own keys only:
  // a plugin that put enumerable properties on Object.prototype still gets its replies read as replies.
  let keys = 0;
  for (const k in v) {
    if (!Object.hasOwn(v, k)) continue;
    if (!REPLY_KEYS.has(k)) return false;
    keys++;
  }
  if (keys === 0) return false;
  const r = v as Reply;
  if (r.status !== undefined && typeof r.status !== "number") return false;
  return "body" in r || "stream" in r || "file" in r || typeof r.status === "number";
}

/** A handler's result as a `Reply`: plain objects/arrays/strings/bytes are a 200 body. */
export function normalizeReply(result: HandlerResult): Reply {
  if (result === undefined || result === null) return {};
  if (typeof result === "string" || result instanceof Uint8Array || Array.isArray(result)) return { body: result };
  if (typeof result === "object") {
    if (result instanceof Readable) return { stream: result };
    if (isReply(result)) return result;
    return { body: result };
  }
  return { body: result };
}

function isThenable(v: unknown): v is PromiseLike<HandlerResult> {
  return typeof (v as PromiseLike<unknown> | null)?.then === "function";
}

/**
 * The `PluginRequest` handed to a handler: a class, so a request costs one object (its methods live on the
 * prototype) instead of one closure per method.
 */
class HandlerRequest implements PluginRequest {
  readonly method: HttpMethod;
  readonly path: string;
  readonly params: Record<string, string>;
  readonly query: Record<string, string | string[]>;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly remoteAddress: string | undefined;
  private consumed = false;

  constructor(
    msg: Extract<MainToWorker, { t: "req" }>,
    private readonly active: ActiveRequest,
  ) {
    this.method = msg.method;
    this.path = msg.path;
    this.params = msg.params;
    this.query = msg.query;
    this.headers = msg.headers;
    this.remoteAddress = msg.remoteAddress;
  }

  get signal(): AbortSignal {
    return this.active.signal;
  }

  private take(): ActiveRequest {
    if (this.consumed) throw new HttpError(500, "body_consumed", "the request body was already read");
    this.consumed = true;
    return this.active;
  }

  stream(): Readable {
    return this.take().stream();
  }

  async bytes(limit = DEFAULT_BODY_LIMIT): Promise<Uint8Array> {
    const declared = Number(this.headers["content-length"]);
    if (Number.isFinite(declared) && declared > limit)
      throw new HttpError(413, "payload_too_large", `request body exceeds ${limit} bytes`);
    const a = this.take();
    const whole = a.completeBody();
    if (whole) {
      const total = whole.reduce((n, c) => n + c.byteLength, 0);
      if (total > limit) throw new HttpError(413, "payload_too_large", `request body exceeds ${limit} bytes`);
      return whole.length === 1 ? whole[0] : Buffer.concat(whole, total);
    }
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const chunk of a.stream()) {
      total += (chunk as Uint8Array).byteLength;
      if (total > limit) throw new HttpError(413, "payload_too_large", `request body exceeds ${limit} bytes`);
      chunks.push(chunk as Uint8Array);
    }
    return Buffer.concat(chunks, total);
  }

  async text(limit?: number): Promise<string> {
    const b = await this.bytes(limit);
    return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("utf8"); // a view, not a copy
  }

  async json<T>(limit?: number): Promise<T> {
    const s = await this.text(limit);
    try {
      return JSON.parse(s) as T;
    } catch (err) {
      throw new HttpError(400, "invalid_json", `request body is not valid JSON: ${errMessage(err)}`);
    }
  }
}
