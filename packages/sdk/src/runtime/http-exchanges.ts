/**
 * The host side of the plugin protocol for HTTP, written once: it hands a node:http request to the plugin's
 * dispatcher (`req`, then `body` / `end` with flow control) and writes the dispatcher's reply (`res`, `res-chunk`,
 * `res-end`) to the node:http response. Used by every place a plugin answers HTTP: the daemon's worker threads
 * (`@hecate/daemon` runtime/plugin-worker.ts, messages over a MessagePort), the container entry (`container.ts`) and
 * the test harness (`harness.ts`), both with the dispatcher in the same thread. So a plugin gets the same framing,
 * deadlines and reply cap under test, in a container and in the daemon.
 *
 * The host owns the framing, whatever the plugin's headers say: the real body length wins over a plugin's
 * Content-Length (a streamed reply may declare one, which is then held to the byte), Transfer-Encoding and the other
 * hop-by-hop headers are node:http's, a status outside 200-599 (a 1xx would be read as an interim reply, and the next
 * reply on the connection as this one's) and header names or values node:http refuses are a 502, and the plugin
 * cannot set the daemon's cookies. A reply that breaks its framing after its head went out closes the connection.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { MainToWorker, RouteAnnouncement, WorkerToMain } from "../protocol.js";
import { HOP_BY_HOP, withoutDaemonCookies } from "./reply-headers.js";
import { sendJsonError } from "./send-file.js";

/** The fields of a `req` message the caller knows (route, path, params, headers, client address). */
export type RequestFields = Omit<Extract<MainToWorker, { t: "req" }>, "t" | "id" | "body" | "complete">;
export type FileReply = NonNullable<Extract<WorkerToMain, { t: "res" }>["file"]>;
/** The messages an HttpExchanges consumes (`handle` returns false for every other one). */
type ExchangeMessage = Extract<WorkerToMain, { t: "res" | "res-chunk" | "res-end" | "body-ack" }>;

export interface ExchangeOptions {
  /** Named in error bodies and log lines. */
  plugin: string;
  /** Delivers a message to the plugin's dispatcher; `transfer` lists ArrayBuffers to move (worker threads). */
  post(msg: MainToWorker, transfer?: ArrayBuffer[]): void;
  /** Serves a `Reply.file` (path checks, ETag, Range); resolves once the reply is written. */
  serveFile(req: IncomingMessage, res: ServerResponse, file: FileReply): Promise<void>;
  /** A warning for the plugin's log: a refused or cut reply, a passed deadline. */
  log(msg: string): void;
  /** Largest non-streamed reply body (bytes). The dispatcher refuses bigger ones before encoding; this is the backstop. */
  maxReplyBytes: number;
  /**
   * Request-body chunks are transferred to another thread: each must own its ArrayBuffer (a copy is made when it
   * does not). False when the dispatcher runs in this thread.
   */
  transfer: boolean;
}

interface Exchange {
  req: IncomingMessage;
  res: ServerResponse;
  /** Streamed request-body bytes sent to the plugin and not yet acknowledged by `body-ack`. */
  inflight: number;
  /** Streamed reply with a declared Content-Length: bytes still owed; -1 = not counted (chunked, or no body). */
  owed: number;
  /** Date.now() past which the reply head is late (504); 0 = no deadline, or the head went out. */
  deadline: number;
  /** The route's deadline (ms), for the 504 and the plugin's abort reason. */
  timeoutMs: number;
  /** Ended while it was being dispatched (a direct call's reply): never tracked. */
  finished?: boolean;
}

/** Where an exchange's id rides on its response (see HttpExchanges.onClose). */
const EXCHANGE_ID = Symbol("hecate.exchange");
type ExchangeResponse = ServerResponse & { [EXCHANGE_ID]?: number };

/** Bodies up to this size (with a Content-Length) travel inside the `req` message itself. */
const INLINE_BODY_MAX = 64 * 1024;
/** Streamed request bodies: stop reading the client past this many unacknowledged bytes. */
const BODY_WINDOW = 1024 * 1024;
/** Replies up to this size are written together with their head (see onResponse). */
const SINGLE_WRITE_MAX = 16 * 1024;
/** Reply header names the host decides on (framing, connection, daemon cookies): one lookup per plugin header. */
const HOST_DECIDES = new Set([...HOP_BY_HOP, "content-length", "set-cookie"]);
/** A Content-Length value: digits only (no sign, no spaces, no list), at most 2^53. */
const LENGTH = /^\d{1,15}$/;

/** The deadline settings of one host: a default for routes that set none, and the operator's cap (0 = none). */
export interface DeadlineOptions {
  /** Deadline of a route that sets no `timeoutMs` (ms, 0 = none). */
  handlerTimeoutMs: number;
  /** The operator's cap on every route's deadline, `0` (none) included; 0 = no cap. */
  maxHandlerTimeoutMs: number;
}

/** The daemon's default handler deadline (ms). */
export const DEFAULT_HANDLER_TIMEOUT_MS = 30_000;

/**
 * A route's handler deadline (ms, 0 = none): its own `timeoutMs`, else the default; the operator's cap (when > 0)
 * bounds both, `0` included. ws routes have none (a connection lives as long as it likes).
 */
export function routeDeadline(route: RouteAnnouncement, o: DeadlineOptions): number {
  if (route.kind !== "http") return 0;
  const own = route.timeoutMs ?? o.handlerTimeoutMs;
  if (o.maxHandlerTimeoutMs > 0) return own === 0 ? o.maxHandlerTimeoutMs : Math.min(own, o.maxHandlerTimeoutMs);
  return own;
}

/** The HTTP exchanges in flight between one plugin and the clients of one host. */
export class HttpExchanges {
  private nextId = 1;
  private readonly open = new Map<number, Exchange>();
  /** Each route's effective handler deadline (ms, 0 = none), by route id. */
  private deadlines: number[] = [];
  private sweeper: NodeJS.Timeout | undefined;
  private idleWaiters: (() => void)[] = [];
  /** The exchange being dispatched (see dispatch), and its id. */
  private current: Exchange | undefined;
  private currentId = 0;

  /**
   * A response closed before its exchange finished: the client went away. One listener for every response (node
   * calls it with the response as `this`; the exchange id rides on the response) instead of a closure per request.
   */
  private readonly onClose: (this: ServerResponse) => void;

  constructor(private readonly o: ExchangeOptions) {
    const open = this.open;
    const closed = (id: number) => {
      this.o.post({ t: "abort", id });
      this.checkIdle();
    };
    this.onClose = function (this: ServerResponse) {
      const id = (this as ExchangeResponse)[EXCHANGE_ID];
      if (id !== undefined && open.delete(id)) closed(id);
    };
  }

  get size(): number {
    return this.open.size;
  }

  /**
   * Handler deadlines for these routes, enforced on the host side so a wedged plugin cannot dodge them: ONE interval
   * sweeps the open exchanges, so a dispatch costs one Date.now() (~0.1 us) instead of a setTimeout + clearTimeout
   * pair (~0.6-1.3 us, plus a Timeout object per request). Its period is a tenth of the shortest route deadline
   * (10-250 ms), so a 504 comes at most ~10% (250 ms) late. A deadline runs from the dispatch to the reply head: a
   * streamed or file reply is not cut once its head went out.
   */
  setRoutes(routes: RouteAnnouncement[], o: DeadlineOptions): void {
    clearInterval(this.sweeper);
    this.deadlines = [];
    for (const r of routes) this.deadlines[r.id] = routeDeadline(r, o);
    const shortest = Math.min(...this.deadlines.filter((ms) => ms > 0));
    if (!Number.isFinite(shortest)) return;
    this.sweeper = setInterval(() => this.sweep(), Math.min(250, Math.max(10, shortest / 10)));
    this.sweeper.unref();
  }

  /** Hands `req` to the plugin; its reply is written to `res`. */
  dispatch(req: IncomingMessage, res: ServerResponse, fields: RequestFields): void {
    const id = this.nextId++;
    const timeoutMs = this.deadlines[fields.routeId] ?? 0;
    const x: Exchange = {
      req,
      res,
      inflight: 0,
      owed: -1,
      deadline: timeoutMs > 0 ? Date.now() + timeoutMs : 0,
      timeoutMs,
    };
    const base: Extract<MainToWorker, { t: "req" }> = {
      t: "req",
      id,
      routeId: fields.routeId,
      method: fields.method,
      path: fields.path,
      params: fields.params,
      query: fields.query,
      headers: fields.headers,
      remoteAddress: fields.remoteAddress,
      complete: true,
    };
    const len = req.headers["content-length"];
    const chunked = req.headers["transfer-encoding"] !== undefined;
    if (!chunked && (len === undefined || len === "0")) {
      // A direct-call plugin answers during post(): its reply finds the exchange in `current`, and an exchange
      // finished then is never tracked (no Map entry, no close listener).
      this.current = x;
      this.currentId = id;
      try {
        this.o.post(base);
      } finally {
        this.current = undefined;
      }
      if (!x.finished) this.track(id, x);
      req.resume();
      return;
    }
    this.track(id, x);
    if (!chunked && Number(len) <= INLINE_BODY_MAX) {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        if (!this.open.has(id)) return;
        const body = this.movable(Buffer.concat(chunks));
        this.o.post({ ...base, body }, this.o.transfer ? [body.buffer as ArrayBuffer] : undefined);
      });
      return;
    }
    this.o.post({ ...base, complete: false });
    req.on("data", (c: Buffer) => {
      if (!this.open.has(id)) return;
      const chunk = this.movable(c);
      x.inflight += chunk.byteLength;
      this.o.post({ t: "body", id, chunk }, this.o.transfer ? [chunk.buffer as ArrayBuffer] : undefined);
      if (x.inflight > BODY_WINDOW) req.pause();
    });
    req.on("end", () => {
      if (this.open.has(id)) this.o.post({ t: "end", id });
    });
  }

  private track(id: number, x: Exchange): void {
    this.open.set(id, x);
    (x.res as ExchangeResponse)[EXCHANGE_ID] = id;
    x.res.on("close", this.onClose);
  }

  /** The open exchange `id`: the one being dispatched right now, or a tracked one. */
  private exchange(id: number): Exchange | undefined {
    return this.current !== undefined && id === this.currentId ? this.current : this.open.get(id);
  }

  /** Ends exchange `id`; false when it was not open any more. */
  private forget(id: number): boolean {
    if (this.current !== undefined && id === this.currentId) {
      if (this.current.finished) return false;
      this.current.finished = true;
      return true;
    }
    return this.open.delete(id);
  }

  /** Consumes the plugin's HTTP messages (`res`, `res-chunk`, `res-end`, `body-ack`); false for any other. */
  handle(m: WorkerToMain): boolean {
    switch (m.t) {
      case "res":
        this.onResponse(m);
        return true;
      case "res-chunk":
        this.onChunk(m);
        return true;
      case "res-end":
        this.onEnd(m);
        return true;
      case "body-ack": {
        const x = this.exchange(m.id);
        if (!x) return true;
        x.inflight -= m.bytes;
        if (x.req.isPaused() && x.inflight <= BODY_WINDOW / 2) x.req.resume();
        return true;
      }
      default:
        return false;
    }
  }

  /** The plugin is gone: every open exchange fails (502 when its head is not out yet, else the connection closes). */
  failAll(code: string, message: string): void {
    for (const [id, x] of this.open) {
      this.open.delete(id);
      if (!x.res.headersSent) sendJsonError(x.res, 502, code, message);
      else x.res.destroy();
    }
    this.close();
    this.checkIdle();
  }

  /** Stops the deadline sweep (the plugin is stopping or gone). */
  close(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  /** Waits until no exchange is open (true) or `deadlineMs` passes (false). */
  idle(deadlineMs: number): Promise<boolean> {
    if (this.open.size === 0) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), deadlineMs);
      this.idleWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  private onResponse(m: Extract<ExchangeMessage, { t: "res" }>): void {
    const x = this.exchange(m.id);
    if (!x) return;
    x.deadline = 0; // the head is here: a streamed or file body is not cut by the deadline
    const { req, res } = x;
    if (res.headersSent) {
      this.breakReply(m.id, x, "sent a second reply head");
      return;
    }
    if (m.file) {
      const id = m.id;
      this.o
        .serveFile(req, res, m.file)
        .catch(() => {
          if (!res.headersSent) sendJsonError(res, 404, "not_found", "not found");
        })
        .finally(() => this.finish(id));
      return;
    }
    const status = m.status;
    if (!Number.isInteger(status) || status < 200 || status > 599) {
      this.badReply(m.id, x, `invalid status ${JSON.stringify(status)}`);
      return;
    }
    // HEAD, 204 and 304 replies have no body (node:http drops what is written): a declared length is only a hint.
    const bodiless = status === 204 || status === 304 || req.method === "HEAD";
    const headers: Record<string, string | string[] | number> = {};
    let declared: unknown;
    // for-in, not Object.entries: no [k, v] arrays per header per request. Own keys only: a direct call's headers are
    // the plugin's object, not a clone (enumerable properties on its Object.prototype are not headers).
    for (const k in m.headers) {
      if (!Object.hasOwn(m.headers, k)) continue;
      const name = k.toLowerCase();
      if (!HOST_DECIDES.has(name)) headers[name] = m.headers[k];
      else if (name === "content-length") declared = m.headers[k];
      else if (name === "set-cookie") {
        const kept = withoutDaemonCookies(m.headers[k]);
        if (kept !== undefined) headers[name] = kept;
        if (kept === undefined || kept.length !== m.headers[k].length) this.replyLog(req, "dropped a daemon cookie");
      }
    }
    const length = declared === undefined ? undefined : parseLength(declared);
    const text = m.text;
    const size = text !== undefined ? Buffer.byteLength(text) : m.body?.byteLength;
    if (status === 204) {
      // never a body, never a length (RFC 9110 8.6)
    } else if (size !== undefined) headers["content-length"] = size;
    else if (m.streaming) {
      if (length === null) {
        this.badReply(m.id, x, `invalid content-length ${JSON.stringify(declared)}`);
        return;
      }
      if (length !== undefined) {
        headers["content-length"] = length;
        if (!bodiless) x.owed = length;
      }
    } else if (bodiless) {
      if (length != null) headers["content-length"] = length; // HEAD / 304: the length the GET body would have
    } else headers["content-length"] = 0;
    if (size !== undefined && size > this.o.maxReplyBytes) {
      this.badReply(m.id, x, `body of ${size} bytes above the ${this.o.maxReplyBytes}-byte cap`);
      return;
    }
    try {
      res.writeHead(status, headers);
    } catch (err) {
      this.badReply(m.id, x, `header refused: ${(err as Error).message}`);
      return;
    }
    if (m.streaming) return;
    if (text !== undefined) {
      res.end(text); // a string is appended to the head: one write
      this.finish(m.id);
      return;
    }
    const body = m.body;
    // A Buffer body makes node:http writev([head, body]); a latin1 string (lossless for bytes) is appended to the
    // head and sent in ONE write, which measured ~2x cheaper for small replies.
    if (body && body.byteLength <= SINGLE_WRITE_MAX)
      res.end(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("latin1"), "latin1");
    else res.end(body);
    this.finish(m.id);
  }

  /** A streamed reply chunk, held to the declared length: one byte more and the connection is closed. */
  private onChunk(m: Extract<ExchangeMessage, { t: "res-chunk" }>): void {
    const x = this.exchange(m.id);
    if (!x) return;
    if (!x.res.headersSent) {
      this.badReply(m.id, x, "sent a body chunk before the reply head");
      return;
    }
    if (x.owed >= 0) {
      if (m.chunk.byteLength > x.owed) {
        this.breakReply(m.id, x, `streamed more than its content-length ${x.res.getHeader("content-length")}`);
        return;
      }
      x.owed -= m.chunk.byteLength;
    }
    const id = m.id;
    // Acknowledged once the socket took it: a slow client slows the plugin's stream.
    x.res.write(m.chunk, () => this.o.post({ t: "res-ack", id }));
  }

  private onEnd(m: Extract<ExchangeMessage, { t: "res-end" }>): void {
    const x = this.exchange(m.id);
    if (!x) return;
    if (m.error) {
      if (!x.res.headersSent) sendJsonError(x.res, 500, "stream_failed", "response stream failed");
      else x.res.destroy(); // truncated: the client must not take it for a whole body
    } else if (!x.res.headersSent) {
      this.badReply(m.id, x, "ended a reply it never started");
      return;
    } else if (x.owed > 0) {
      this.breakReply(m.id, x, `ended its body ${x.owed} bytes short of its content-length`);
      return;
    } else x.res.end();
    this.finish(m.id);
  }

  /** A reply the client must not get: 502 `bad_reply` instead, and a line in the plugin's log. */
  private badReply(id: number, x: Exchange, why: string): void {
    this.replyLog(x.req, `refused (502): ${why}`);
    // Headers set for this reply before it (CORS) or a half-applied writeHead: the error goes out on its own.
    for (const name of x.res.getHeaderNames()) x.res.removeHeader(name);
    sendJsonError(x.res, 502, "bad_reply", `plugin ${this.o.plugin} sent an invalid reply: ${why}`);
    this.o.post({ t: "abort", id }); // a streamed reply's producer stops (it would wait for acks forever)
    this.finish(id);
  }

  /**
   * A reply that broke its framing after its head went out: the connection is closed (the client sees a truncated
   * reply, and nothing more on this connection: a pipelined reply after it can never be taken for this one's body),
   * the plugin is told to stop, and its log says why.
   */
  private breakReply(id: number, x: Exchange, why: string): void {
    this.replyLog(x.req, `connection closed: ${why}`);
    this.forget(id);
    this.o.post({ t: "abort", id });
    x.res.destroy();
    this.checkIdle();
  }

  private sweep(): void {
    if (this.open.size === 0) return;
    const now = Date.now();
    for (const [id, x] of this.open) if (x.deadline !== 0 && x.deadline <= now) this.timeOut(id, x);
  }

  /** Past its deadline with no reply head: 504 to the client, the handler's `req.signal` aborts, a log line. */
  private timeOut(id: number, x: Exchange): void {
    this.open.delete(id);
    this.o.post({ t: "abort", id, timeoutMs: x.timeoutMs });
    this.replyLog(x.req, `no reply within ${x.timeoutMs} ms: 504`);
    if (!x.res.headersSent)
      sendJsonError(x.res, 504, "handler_timeout", `plugin ${this.o.plugin} did not answer within ${x.timeoutMs} ms`);
    else x.res.destroy();
    this.checkIdle();
  }

  private replyLog(req: IncomingMessage, what: string): void {
    const path = (req.url ?? "").split("?", 1)[0];
    this.o.log(`reply to ${req.method} ${path}: ${what}`);
  }

  private finish(id: number): void {
    if (this.forget(id)) this.checkIdle();
  }

  private checkIdle(): void {
    if (this.open.size === 0 && this.idleWaiters.length) {
      const ws = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of ws) w();
    }
  }

  private movable(b: Buffer): Uint8Array {
    return this.o.transfer ? transferable(b) : b;
  }
}

/** A plugin's Content-Length as a number; null when it is not one (a list, a sign, spaces, a fraction...). */
function parseLength(v: unknown): number | null {
  if (typeof v === "number") return Number.isSafeInteger(v) && v >= 0 ? v : null;
  return typeof v === "string" && LENGTH.test(v) ? Number(v) : null;
}

/**
 * A view that owns its whole ArrayBuffer, so it can be transferred (moved, not copied) to a worker. Socket chunks
 * usually own theirs; slices of a shared buffer (Buffer pool, parser slices) are copied once instead.
 */
export function transferable(b: Uint8Array): Uint8Array {
  if (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer) return b;
  return new Uint8Array(b);
}
