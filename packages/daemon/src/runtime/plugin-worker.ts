/**
 * Main-thread side of one plugin worker: starts the worker host, relays HTTP requests and ws connections over the
 * protocol of `@hecate/sdk/protocol`, serves `file` replies, runs the heartbeat watchdog and fails every in-flight
 * request (502) / connection (1011) the moment the worker dies, so nothing ever hangs on a dead plugin.
 */
import { EventEmitter } from "node:events";
import { realpathSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Duplex } from "node:stream";
import { type ResourceLimits, Worker } from "node:worker_threads";
import type { HttpMethod, PluginConfig, PluginManifest, StoreConfig } from "@hecate/sdk";
import type { MainToWorker, RouteAnnouncement, WorkerBoot, WorkerToMain } from "@hecate/sdk/protocol";
import type { WebSocket, WebSocketServer } from "ws";
import { HOP_BY_HOP, withoutDaemonCookies } from "../http/reply-headers.js";
import type { RouteContext } from "../http/router.js";
import { rejectUpgrade } from "../http/router.js";
import { sendFile, sendJsonError } from "../http/static.js";
import { MessageBatcher, unbatch } from "./message-batch.js";

export interface PluginSpec {
  name: string;
  version: string;
  /** The plugin's root dir (`paths.root`): `file` replies must lie inside it. */
  root: string;
  /** Absolute path of the callback module. */
  entry: string;
  /** Served at `/plugin/{name}/`, usually `paths.static`. */
  staticDir?: string;
  config: PluginConfig;
  /** Overrides the runtime's default worker limits. */
  resourceLimits?: ResourceLimits;
  /** Overrides the runtime's load timeout (ms). */
  loadTimeoutMs?: number;
}

export type LoadStage = "import" | "manifest" | "store" | "init" | "routes" | "crash" | "timeout" | "mount";

export class PluginLoadError extends Error {
  constructor(
    readonly plugin: string,
    readonly stage: LoadStage,
    message: string,
    readonly workerStack?: string,
  ) {
    super(`plugin ${plugin} failed to load (${stage}): ${message}`);
    this.name = "PluginLoadError";
  }
}

export interface WorkerOptions {
  resourceLimits: ResourceLimits;
  /** Deadline of a route that sets no `timeoutMs` (ms, 0 = none). */
  handlerTimeoutMs: number;
  /** The operator's cap on every route's deadline, `0` (none) included; 0 = no cap. */
  maxHandlerTimeoutMs: number;
  /** Largest non-streamed reply body (bytes): checked by the worker's dispatcher before encoding, and here. */
  maxReplyBytes: number;
  loadTimeoutMs: number;
  heartbeatIntervalMs: number;
  heartbeatTimeoutMs: number;
  /** The ws server for a route's message limit (`RouteAnnouncement.maxPayload`; undefined: the daemon's default). */
  wssFor: (maxPayload: number | undefined) => WebSocketServer;
}

export type ReadyInfo = Extract<WorkerToMain, { t: "ready" }>;

interface PendingHttp {
  req: IncomingMessage;
  res: ServerResponse;
  /** Streamed body bytes sent to the worker and not yet acknowledged by `body-ack`. */
  inflight: number;
  /** Streamed reply with a declared Content-Length: bytes still owed; -1 = not counted (chunked, or no body). */
  owed: number;
  /** Date.now() past which the reply head is late (504); 0 = no deadline, or the head went out. */
  deadline: number;
  /** The route's deadline (ms), for the 504 and the worker's abort reason. */
  timeoutMs: number;
}

interface PendingWs {
  req: IncomingMessage;
  socket: Duplex;
  head: Buffer;
  maxPayload: number | undefined;
  ws?: WebSocket;
  /** Inbound message bytes sent to the worker and not yet acknowledged by `ws-ack`. */
  inflight: number;
}

/** Bodies up to this size (with a Content-Length) travel inside the `req` message itself. */
const INLINE_BODY_MAX = 64 * 1024;
/** Streamed request bodies: stop reading the client past this many unacknowledged bytes. */
const BODY_WINDOW = 1024 * 1024;
/** Inbound ws messages: stop reading the client past this many unacknowledged bytes (per connection). */
const WS_WINDOW = 1024 * 1024;
/** Replies up to this size are written together with their head (see onResponse). */
const SINGLE_WRITE_MAX = 16 * 1024;
/** Reply header names the daemon decides on (framing, connection, daemon cookies): one lookup per plugin header. */
const DAEMON_DECIDES = new Set([...HOP_BY_HOP, "content-length", "set-cookie"]);
/** A Content-Length value: digits only (no sign, no spaces, no list), at most 2^53. */
const LENGTH = /^\d{1,15}$/;
const WORKER_HOST = new URL("./worker-host.js", import.meta.url);

/** Events: `dead` (reason: string, expected: boolean), `log` (entry). */
export class PluginWorker extends EventEmitter {
  readonly worker: Worker;
  state: "starting" | "ready" | "stopping" | "dead" = "starting";
  manifest?: PluginManifest;
  storeConfig: StoreConfig | null = null;
  routes: RouteAnnouncement[] = [];
  /** Each route's effective handler deadline (ms, 0 = none), by route id. */
  private deadlines: number[] = [];
  /** Sweeps the pending requests for passed deadlines (see startDeadlineSweep). */
  private sweeper: NodeJS.Timeout | undefined;
  readonly startedAt = Date.now();
  loadMs = 0;
  private readonly realRoot: string;
  private nextId = 1;
  private readonly reqs = new Map<number, PendingHttp>();
  private readonly conns = new Map<number, PendingWs>();
  deathReason: string | undefined;
  private expectedExit = false;
  private watchdog: NodeJS.Timeout | undefined;
  private pingN = 0;
  private pingSentAt = 0;
  /** Kills the worker when the current ping is not answered within heartbeatTimeoutMs. */
  private pingDeadline: NodeJS.Timeout | undefined;
  private drainWaiters: (() => void)[] = [];
  private terminatedWaiter: (() => void) | undefined;
  /** Sees every message while start() waits for `ready` / `load-failed`. */
  private loadWaiter: ((m: WorkerToMain) => void) | undefined;
  private readonly batch = new MessageBatcher<MainToWorker>((msgs, transfer) => {
    if (this.state !== "dead") this.worker.postMessage(msgs, transfer);
  });

  constructor(
    readonly spec: PluginSpec,
    private readonly opts: WorkerOptions,
  ) {
    super();
    this.realRoot = realpathSync(spec.root);
    const boot: WorkerBoot = {
      pluginName: spec.name,
      entry: spec.entry,
      config: spec.config,
      maxReplyBytes: opts.maxReplyBytes,
    };
    this.worker = new Worker(WORKER_HOST, {
      workerData: boot,
      resourceLimits: spec.resourceLimits ?? opts.resourceLimits,
      execArgv: [],
      name: `plugin:${spec.name}`,
    });
    const onMessage = (m: WorkerToMain) => this.onMessage(m);
    this.worker.on("message", (data: WorkerToMain | WorkerToMain[]) => unbatch(data, onMessage));
    this.worker.on("error", (err) => {
      this.deathReason ??= `worker error: ${err.message}`;
    });
    this.worker.on("exit", (code) => this.onExit(code));
  }

  /** Resolves once the plugin is `ready`; rejects with PluginLoadError (load-failed, crash, timeout). */
  start(): Promise<ReadyInfo> {
    return new Promise<ReadyInfo>((resolve, reject) => {
      const timer = setTimeout(() => {
        cleanup();
        this.kill("load timeout");
        reject(new PluginLoadError(this.spec.name, "timeout", `not ready within ${this.opts.loadTimeoutMs} ms`));
      }, this.opts.loadTimeoutMs);
      const onMsg = (m: WorkerToMain) => {
        if (m.t === "ready") {
          cleanup();
          this.manifest = m.manifest;
          this.storeConfig = m.storeConfig;
          this.routes = m.routes;
          this.state = "ready";
          this.loadMs = Date.now() - this.startedAt;
          this.startWatchdog();
          this.startDeadlineSweep();
          resolve(m);
        } else if (m.t === "load-failed") {
          cleanup();
          this.kill(`load failed: ${m.message}`);
          reject(new PluginLoadError(this.spec.name, m.stage, m.message, m.stack));
        }
      };
      const onDead = (reason: string) => {
        cleanup();
        reject(new PluginLoadError(this.spec.name, "crash", reason));
      };
      const cleanup = () => {
        clearTimeout(timer);
        this.loadWaiter = undefined;
        this.off("dead", onDead);
      };
      this.loadWaiter = onMsg;
      this.on("dead", onDead);
    });
  }

  get inFlight(): number {
    return this.reqs.size;
  }

  get wsCount(): number {
    return this.conns.size;
  }

  get threadId(): number {
    return this.worker.threadId;
  }

  private post(msg: MainToWorker, transfer?: ArrayBuffer[]): void {
    if (this.state === "dead") return;
    this.batch.post(msg, transfer);
  }

  // ---- HTTP ----

  dispatch(
    route: RouteAnnouncement,
    req: IncomingMessage,
    res: ServerResponse,
    params: Record<string, string>,
    ctx: RouteContext,
  ): void {
    if (this.state !== "ready" && this.state !== "stopping") {
      res.setHeader("retry-after", "1");
      sendJsonError(res, 503, "plugin_unavailable", `plugin ${this.spec.name} is not running`);
      return;
    }
    const id = this.nextId++;
    const timeoutMs = this.deadlines[route.id] ?? 0;
    const deadline = timeoutMs > 0 ? Date.now() + timeoutMs : 0;
    const pending: PendingHttp = { req, res, inflight: 0, owed: -1, deadline, timeoutMs };
    this.reqs.set(id, pending);
    res.on("close", () => {
      // Closed before we finished it: the client went away.
      if (this.reqs.delete(id)) {
        this.post({ t: "abort", id });
        this.checkDrained();
      }
    });
    const base: Extract<MainToWorker, { t: "req" }> = {
      t: "req",
      id,
      routeId: route.id,
      method: req.method as HttpMethod,
      path: ctx.path,
      params,
      query: ctx.query,
      headers: req.headers,
      remoteAddress: req.socket.remoteAddress,
      complete: true,
    };
    const len = req.headers["content-length"];
    const chunked = req.headers["transfer-encoding"] !== undefined;
    if (!chunked && (len === undefined || len === "0")) {
      this.post(base);
      req.resume();
      return;
    }
    if (!chunked && Number(len) <= INLINE_BODY_MAX) {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        if (!this.reqs.has(id)) return;
        const body = transferable(Buffer.concat(chunks));
        this.post({ ...base, body }, [body.buffer as ArrayBuffer]);
      });
      return;
    }
    this.post({ ...base, complete: false });
    req.on("data", (c: Buffer) => {
      if (!this.reqs.has(id)) return;
      const chunk = transferable(c);
      pending.inflight += chunk.byteLength;
      this.post({ t: "body", id, chunk }, [chunk.buffer as ArrayBuffer]);
      if (pending.inflight > BODY_WINDOW) req.pause();
    });
    req.on("end", () => {
      if (this.reqs.has(id)) this.post({ t: "end", id });
    });
  }

  /**
   * The reply head. The daemon owns the framing, whatever the plugin's headers say: the real body length wins over
   * a plugin's Content-Length (a streamed reply may declare one, which is then held to the byte, see res-chunk /
   * res-end), Transfer-Encoding and the other hop-by-hop headers are node:http's, a status outside 200-599 (1xx
   * would be read as an interim reply, and the next reply on the connection as this one's) and header names or
   * values node:http refuses are a 502, and the plugin cannot set the daemon's cookies.
   */
  private onResponse(m: Extract<WorkerToMain, { t: "res" }>): void {
    const p = this.reqs.get(m.id);
    if (!p) return;
    p.deadline = 0; // the head is here: a streamed or file body is not cut by the deadline
    const { req, res } = p;
    if (res.headersSent) {
      this.breakReply(m.id, p, "sent a second reply head");
      return;
    }
    if (m.file) {
      const id = m.id;
      sendFile(req, res, m.file.path, this.realRoot, {
        downloadName: m.file.downloadName,
        contentType: m.file.contentType,
      }).finally(() => this.finish(id));
      return;
    }
    const status = m.status;
    if (!Number.isInteger(status) || status < 200 || status > 599) {
      this.badReply(m.id, p, `invalid status ${JSON.stringify(status)}`);
      return;
    }
    // HEAD, 204 and 304 replies have no body (node:http drops what is written): a declared length is only a hint.
    const bodiless = status === 204 || status === 304 || req.method === "HEAD";
    const headers: Record<string, string | string[] | number> = {};
    let declared: unknown;
    // for-in, not Object.entries: no [k, v] arrays per header per request (the headers come out of a clone: own keys).
    for (const k in m.headers) {
      const name = k.toLowerCase();
      if (!DAEMON_DECIDES.has(name)) headers[name] = m.headers[k];
      else if (name === "content-length") declared = m.headers[k];
      else if (name === "set-cookie") {
        const kept = withoutDaemonCookies(m.headers[k]);
        if (kept !== undefined) headers[name] = kept;
        if (kept === undefined || kept.length !== m.headers[k].length) this.replyLog(req, "dropped a daemon cookie");
      }
    }
    const length = declared === undefined ? undefined : parseLength(declared);
    if (status === 204) {
      // never a body, never a length (RFC 9110 8.6)
    } else if (m.body) headers["content-length"] = m.body.byteLength;
    else if (m.streaming) {
      if (length === null) {
        this.badReply(m.id, p, `invalid content-length ${JSON.stringify(declared)}`);
        return;
      }
      if (length !== undefined) {
        headers["content-length"] = length;
        if (!bodiless) p.owed = length;
      }
    } else if (bodiless) {
      if (length != null) headers["content-length"] = length; // HEAD / 304: the length the GET body would have
    } else headers["content-length"] = 0;
    if (m.body && m.body.byteLength > this.opts.maxReplyBytes) {
      // The SDK's dispatcher refuses these before encoding; this catches a worker that posts around it.
      this.badReply(m.id, p, `body of ${m.body.byteLength} bytes above the ${this.opts.maxReplyBytes}-byte cap`);
      return;
    }
    try {
      res.writeHead(status, headers);
    } catch (err) {
      this.badReply(m.id, p, `header refused: ${(err as Error).message}`);
      return;
    }
    if (m.streaming) return;
    const body = m.body;
    // A Buffer body makes node:http writev([head, body]); a latin1 string (lossless for bytes) is appended to the
    // head and sent in ONE write, which measured ~2x cheaper for small replies.
    if (body && body.byteLength <= SINGLE_WRITE_MAX)
      res.end(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("latin1"), "latin1");
    else res.end(body);
    this.finish(m.id);
  }

  /** A streamed reply chunk, held to the declared length: one byte more and the connection is closed. */
  private onChunk(m: Extract<WorkerToMain, { t: "res-chunk" }>): void {
    const p = this.reqs.get(m.id);
    if (!p) return;
    if (!p.res.headersSent) {
      this.badReply(m.id, p, "sent a body chunk before the reply head");
      return;
    }
    if (p.owed >= 0) {
      if (m.chunk.byteLength > p.owed) {
        this.breakReply(m.id, p, `streamed more than its content-length ${p.res.getHeader("content-length")}`);
        return;
      }
      p.owed -= m.chunk.byteLength;
    }
    const id = m.id;
    p.res.write(m.chunk, () => this.post({ t: "res-ack", id }));
  }

  private onEnd(m: Extract<WorkerToMain, { t: "res-end" }>): void {
    const p = this.reqs.get(m.id);
    if (!p) return;
    if (m.error) {
      if (!p.res.headersSent) sendJsonError(p.res, 500, "stream_failed", "response stream failed");
      else p.res.destroy(); // truncated: the client must not take it for a whole body
    } else if (!p.res.headersSent) {
      this.badReply(m.id, p, "ended a reply it never started");
      return;
    } else if (p.owed > 0) {
      this.breakReply(m.id, p, `ended its body ${p.owed} bytes short of its content-length`);
      return;
    } else p.res.end();
    this.finish(m.id);
  }

  /** A reply the client must not get: 502 `bad_reply` instead, and a line in the plugin's log. */
  private badReply(id: number, p: PendingHttp, why: string): void {
    this.replyLog(p.req, `refused (502): ${why}`);
    // Headers the router set for this reply (CORS) or a half-applied writeHead: the error goes out on its own.
    for (const name of p.res.getHeaderNames()) p.res.removeHeader(name);
    sendJsonError(p.res, 502, "bad_reply", `plugin ${this.spec.name} sent an invalid reply: ${why}`);
    this.post({ t: "abort", id }); // a streamed reply's producer stops (it would wait for acks forever)
    this.finish(id);
  }

  /**
   * A reply that broke its framing after its head went out: the connection is closed (the client sees a truncated
   * reply, and nothing more on this connection: a pipelined reply after it can never be taken for this one's body),
   * the worker is told to stop, and the plugin's log says why.
   */
  private breakReply(id: number, p: PendingHttp, why: string): void {
    this.replyLog(p.req, `connection closed: ${why}`);
    this.reqs.delete(id);
    this.post({ t: "abort", id });
    p.res.destroy();
    this.checkDrained();
  }

  private replyLog(req: IncomingMessage, what: string): void {
    const path = (req.url ?? "").split("?", 1)[0];
    this.emit("log", { plugin: this.spec.name, level: "warn", msg: `reply to ${req.method} ${path}: ${what}` });
  }

  private finish(id: number): void {
    if (this.reqs.delete(id)) this.checkDrained();
  }

  private checkDrained(): void {
    if (this.reqs.size === 0 && this.drainWaiters.length) {
      const ws = this.drainWaiters;
      this.drainWaiters = [];
      for (const w of ws) w();
    }
  }

  // ---- WebSocket ----

  upgrade(
    route: RouteAnnouncement,
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    params: Record<string, string>,
    ctx: RouteContext,
  ): void {
    if (this.state !== "ready") {
      rejectUpgrade(socket, 503, "Service Unavailable");
      return;
    }
    const connId = this.nextId++;
    this.conns.set(connId, { req, socket, head, maxPayload: route.maxPayload, inflight: 0 });
    socket.on("close", () => {
      const c = this.conns.get(connId);
      if (c && !c.ws) {
        this.conns.delete(connId);
        this.post({ t: "ws-closed", connId, code: 1006, reason: "" });
      }
    });
    this.post({
      t: "ws-open",
      connId,
      routeId: route.id,
      path: ctx.path,
      params,
      query: ctx.query,
      headers: req.headers,
      remoteAddress: req.socket.remoteAddress,
    });
  }

  private onWsAccept(connId: number): void {
    const c = this.conns.get(connId);
    if (!c) return;
    this.opts.wssFor(c.maxPayload).handleUpgrade(c.req, c.socket, c.head, (ws) => {
      c.ws = ws;
      if (this.state === "dead") {
        ws.close(1011, "plugin crashed");
        return;
      }
      ws.on("message", (data, isBinary) => {
        const buf = toBuffer(data);
        c.inflight += buf.byteLength;
        if (c.inflight > WS_WINDOW && !ws.isPaused) ws.pause();
        const payload = isBinary ? transferable(buf) : buf.toString("utf8");
        if (typeof payload === "string") this.post({ t: "ws-msg", connId, data: payload });
        else this.post({ t: "ws-msg", connId, data: payload }, [payload.buffer as ArrayBuffer]);
      });
      ws.on("close", (code, reason) => {
        if (this.conns.delete(connId)) this.post({ t: "ws-closed", connId, code, reason: reason.toString("utf8") });
      });
      ws.on("error", () => {});
    });
  }

  // ---- messages, watchdog, lifecycle ----

  private onMessage(m: WorkerToMain): void {
    this.loadWaiter?.(m);
    switch (m.t) {
      case "res":
        this.onResponse(m);
        return;
      case "body-ack": {
        const p = this.reqs.get(m.id);
        if (!p) return;
        p.inflight -= m.bytes;
        if (p.req.isPaused() && p.inflight <= BODY_WINDOW / 2) p.req.resume();
        return;
      }
      case "res-chunk":
        this.onChunk(m);
        return;
      case "res-end":
        this.onEnd(m);
        return;
      case "ws-ack": {
        const c = this.conns.get(m.connId);
        if (!c) return;
        c.inflight -= m.bytes;
        if (c.ws?.isPaused && c.inflight <= WS_WINDOW / 2) c.ws.resume();
        return;
      }
      case "ws-accept":
        this.onWsAccept(m.connId);
        return;
      case "ws-reject": {
        const c = this.conns.get(m.connId);
        if (c) {
          this.conns.delete(m.connId);
          rejectUpgrade(c.socket, m.status, m.status === 404 ? "Not Found" : "Forbidden");
        }
        return;
      }
      case "ws-send": {
        const ws = this.conns.get(m.connId)?.ws;
        if (!ws) return;
        const { connId, seq } = m;
        ws.send(m.data, (err) => {
          if (!err) this.post({ t: "ws-sent", connId, seq });
        });
        return;
      }
      case "ws-close": {
        const c = this.conns.get(m.connId);
        if (!c) return;
        if (c.ws) safeClose(c.ws, m.code, m.reason);
        else {
          this.conns.delete(m.connId);
          rejectUpgrade(c.socket, 403, "Forbidden");
        }
        return;
      }
      case "pong":
        if (m.n === this.pingN) {
          this.pingSentAt = 0;
          clearTimeout(this.pingDeadline);
        }
        return;
      case "log":
        this.emit("log", { plugin: this.spec.name, level: m.level, msg: m.msg, fields: m.fields });
        return;
      case "terminated":
        this.terminatedWaiter?.();
        return;
      default:
        return;
    }
  }

  /**
   * Handler deadlines, enforced here on the main thread so a wedged worker cannot dodge them: ONE interval per
   * worker sweeps the pending requests, so a dispatch costs one Date.now() (~0.1 us here) instead of a
   * setTimeout + clearTimeout pair (~0.6-1.3 us, plus a Timeout object per request). Its period is a tenth of the
   * shortest route deadline (10-250 ms), so a 504 comes at most ~10% (250 ms) late. The deadline runs from the
   * dispatch to the reply head: a streamed or file reply is not cut once its head went out.
   */
  private startDeadlineSweep(): void {
    const { handlerTimeoutMs, maxHandlerTimeoutMs } = this.opts;
    this.deadlines = [];
    for (const r of this.routes) this.deadlines[r.id] = routeDeadline(r, handlerTimeoutMs, maxHandlerTimeoutMs);
    const shortest = Math.min(...this.deadlines.filter((ms) => ms > 0));
    if (!Number.isFinite(shortest)) return;
    this.sweeper = setInterval(() => this.sweepDeadlines(), Math.min(250, Math.max(10, shortest / 10)));
    this.sweeper.unref();
  }

  private sweepDeadlines(): void {
    if (this.reqs.size === 0) return;
    const now = Date.now();
    for (const [id, p] of this.reqs) if (p.deadline !== 0 && p.deadline <= now) this.timeOut(id, p);
  }

  /** Past its deadline with no reply head: 504 to the client, the handler's `req.signal` aborts, a log line. */
  private timeOut(id: number, p: PendingHttp): void {
    this.reqs.delete(id);
    this.post({ t: "abort", id, timeoutMs: p.timeoutMs });
    this.replyLog(p.req, `no reply within ${p.timeoutMs} ms: 504`);
    if (!p.res.headersSent)
      sendJsonError(p.res, 504, "handler_timeout", `plugin ${this.spec.name} did not answer within ${p.timeoutMs} ms`);
    else p.res.destroy();
    this.checkDrained();
  }

  private startWatchdog(): void {
    const { heartbeatIntervalMs, heartbeatTimeoutMs } = this.opts;
    // The deadline is a timer of its own armed with each ping: checking it on the next interval tick instead let a
    // stuck worker live up to timeout + interval (a 3 s busy loop outlived the default 2 s timeout).
    this.watchdog = setInterval(() => {
      if (this.state === "dead" || this.pingSentAt) return;
      this.pingN++;
      this.pingSentAt = Date.now();
      this.post({ t: "ping", n: this.pingN });
      this.pingDeadline = setTimeout(() => {
        if (this.pingSentAt && this.state !== "dead")
          this.kill(`watchdog: no heartbeat for ${heartbeatTimeoutMs} ms (stuck event loop?)`);
      }, heartbeatTimeoutMs);
      this.pingDeadline.unref();
    }, heartbeatIntervalMs);
    this.watchdog.unref();
  }

  /** Waits until no HTTP request is in flight (true) or the deadline passes (false). */
  drain(deadlineMs: number): Promise<boolean> {
    if (this.reqs.size === 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), deadlineMs);
      this.drainWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  /**
   * Graceful stop: drain in-flight requests, run the plugin's `terminate()` (it closes ws connections), then
   * `worker.terminate()`, which frees the plugin's code and heap. The whole thing stays within ~deadlineMs.
   */
  async stop(deadlineMs: number): Promise<void> {
    if (this.state === "dead") return;
    this.expectedExit = true;
    this.state = "stopping";
    const until = Date.now() + deadlineMs;
    await this.drain(deadlineMs);
    const left = Math.max(50, until - Date.now());
    if ((this.state as string) !== "dead") {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.terminatedWaiter = () => {
          clearTimeout(t);
          resolve();
        };
        this.post({ t: "terminate", deadlineMs: left });
      });
    }
    await this.kill("unloaded");
  }

  /** Hard stop (crash handling, watchdog). */
  async kill(reason: string): Promise<void> {
    this.deathReason ??= reason;
    if (this.state === "dead") return;
    await this.worker.terminate();
  }

  private onExit(code: number): void {
    if (this.state === "dead") return;
    const wasStarting = this.state === "starting";
    this.state = "dead";
    clearInterval(this.watchdog);
    clearInterval(this.sweeper);
    clearTimeout(this.pingDeadline);
    const reason = this.deathReason ?? `worker exited with code ${code}`;
    for (const [id, p] of this.reqs) {
      this.reqs.delete(id);
      if (!p.res.headersSent) sendJsonError(p.res, 502, "plugin_crashed", `plugin ${this.spec.name}: ${reason}`);
      else p.res.destroy();
    }
    this.checkDrained();
    for (const [connId, c] of this.conns) {
      this.conns.delete(connId);
      if (c.ws)
        safeClose(c.ws, this.expectedExit ? 1001 : 1011, this.expectedExit ? "plugin unloaded" : "plugin crashed");
      else rejectUpgrade(c.socket, 503, "Service Unavailable");
    }
    this.terminatedWaiter?.();
    this.emit("dead", reason, this.expectedExit && !wasStarting);
  }
}

/**
 * A route's handler deadline (ms, 0 = none): its own `timeoutMs`, else the default; the operator's cap (when > 0)
 * bounds both, `0` included. ws routes have none (a connection lives as long as it likes).
 */
export function routeDeadline(route: RouteAnnouncement, defaultMs: number, capMs: number): number {
  if (route.kind !== "http") return 0;
  const own = route.timeoutMs ?? defaultMs;
  if (capMs > 0) return own === 0 ? capMs : Math.min(own, capMs);
  return own;
}

/** A plugin's Content-Length as a number; null when it is not one (a list, a sign, spaces, a fraction...). */
function parseLength(v: unknown): number | null {
  if (typeof v === "number") return Number.isSafeInteger(v) && v >= 0 ? v : null;
  return typeof v === "string" && LENGTH.test(v) ? Number(v) : null;
}

function safeClose(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason.slice(0, 120));
  } catch {
    ws.terminate(); // invalid close code from the plugin
  }
}

function toBuffer(data: Buffer | ArrayBuffer | Buffer[]): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

/**
 * A view that owns its whole ArrayBuffer, so it can be transferred (moved, not copied) to the worker. Socket chunks
 * usually own theirs; slices of a shared buffer (Buffer pool, parser slices) are copied once instead.
 */
export function transferable(b: Uint8Array): Uint8Array {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer) return b;
  return new Uint8Array(b);
}
