/**
 * Reverse proxy from the daemon's router to a container plugin's Unix socket. The plugin is untrusted: whatever it
 * writes on its socket, the client connection stays correctly framed.
 * - HTTP: undici Pool on the socket; request and response bodies are streamed (never buffered), status and
 *   end-to-end headers preserved, hop-by-hop headers and daemon-named cookies (`@hecate/sdk/runtime/reply-headers`) removed,
 *   `x-forwarded-*` and `Forwarded` set (the client address appended on the right).
 * - Reply framing is the daemon's: Content-Length is re-set from the plugin's (checked) value, Transfer-Encoding is
 *   Node's own; a body shorter or longer than its Content-Length, or bytes after the end of a response, close the
 *   client connection (never a clean response) and log a line for the plugin; a 1xx is never final; a status
 *   outside 200..599 is a 502. undici already refuses a 100 (as a final answer), a 101 to a non-upgrade, a
 *   Content-Length that disagrees with the body received, and unsolicited bytes (it destroys the upstream socket).
 * - WebSocket: terminated here and relayed message by message (`ws-relay.ts`, which says why).
 * - Drain: in-flight requests are counted so unload can wait for them.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { DEFAULT_WS_MAX_PAYLOAD } from "@hecate/sdk/contract";
import { formatForwardedElement, forwardedNode, parseForwarded } from "@hecate/sdk/forwarded";
import { HOP_BY_HOP, isDaemonCookie } from "@hecate/sdk/runtime/reply-headers";
import { buildConnector, errors, Pool } from "undici";
import type { RouteContext } from "../http/router.js";
import { sendJsonError } from "../http/static.js";
import { rejectUpgrade } from "../http/upgrade-reply.js";
import { WsRelay } from "./ws-relay.js";

/** Set by the proxy only (a client's own values would be trusted by the plugin otherwise); x-forwarded-for and
 *  forwarded are appended to. */
const FORWARDED = new Set([
  "x-forwarded-for",
  "x-forwarded-host",
  "x-forwarded-proto",
  "x-forwarded-prefix",
  "forwarded",
]);

export interface ContainerProxyOptions {
  plugin: string;
  socketPath: string;
  /** Max parallel connections to the container, default 64. */
  connections?: number;
  /** No response headers within this time -> 504, default 60 s, 0 = no limit (also the WebSocket handshake deadline). */
  headersTimeoutMs?: number;
  /** The upstream is the daemon's own admin API (shared admin port): its `hecate_*` cookies pass. */
  daemonCookies?: boolean;
  /** Largest WebSocket message relayed either way (bytes), default 1 MiB; bigger -> the connection closes with 1009. */
  wsMaxPayload?: number;
  /** The plugin broke HTTP or WebSocket framing (the client connection was closed or answered 502): a log line. */
  onProtocolError?: (message: string) => void;
}

/** Names the response path looks at (hop-by-hop, framing, cookies); other names skip the lower-casing. */
const RESPONSE_SPECIAL = new Set([...HOP_BY_HOP, "content-length", "set-cookie"]);
const RESPONSE_LENGTHS = new Set([...RESPONSE_SPECIAL].map((n) => n.length));
/** Lengths of the hop-by-hop and forwarding names: other request header names skip the lower-casing and lookups. */
const SPECIAL_LENGTHS = new Set([...HOP_BY_HOP, ...FORWARDED].map((n) => n.length));

/** Names listed in a Connection header besides the standard tokens (they are hop-by-hop too). */
function connectionNamed(value: string | undefined): Set<string> | undefined {
  if (!value) return undefined;
  let named: Set<string> | undefined;
  for (const token of value.split(",")) {
    const n = token.trim().toLowerCase();
    if (!n || n === "close" || n === "keep-alive" || n === "upgrade") continue;
    named ??= new Set();
    named.add(n);
  }
  return named;
}

function dropNamed(flat: string[], named: Set<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i < flat.length; i += 2) if (!named.has(flat[i].toLowerCase())) out.push(flat[i], flat[i + 1]);
  return out;
}

/** A protocol error that ends the upstream exchange (recognised in onError so it is logged once). */
class PluginProtocolError extends Error {
  readonly code = "HECATE_PLUGIN_PROTOCOL";
}

/** undici's verdicts on bytes the plugin wrote that are not valid HTTP here (it destroys the socket with them). */
function isFramingError(err: (Error & { code?: string }) | null | undefined): boolean {
  if (!err) return false;
  // HTTPParserError is matched by class: its `code` is not always set (undici 7 maps the llhttp number to no name).
  if (err instanceof errors.HTTPParserError || err instanceof errors.ResponseContentLengthMismatchError) return true;
  return err.code === "UND_ERR_SOCKET" && (err.message === "bad response" || err.message === "bad upgrade");
}

function framingMessage(err: Error & { code?: string }): string {
  if (err.code === "UND_ERR_SOCKET" && err.message === "bad response")
    return "an unexpected response (bytes after the end of a response, e.g. a body longer than its content-length; or a 100)";
  if (err instanceof errors.ResponseContentLengthMismatchError) return "a body shorter than its content-length";
  return `invalid HTTP: ${err.message}`;
}

const DIGITS = /^\d{1,15}$/;

/**
 * One proxied request, as an undici dispatch handler: the response head and body are written straight into the
 * client's response (no intermediate stream, promise or AbortController: this is the hot path, see bench/container.ts).
 */
class Exchange {
  private abortUpstream: ((err: Error) => void) | undefined;
  private resumeUpstream: (() => void) | undefined;
  private clientGone = false;
  private finished = false;
  /** Body bytes the reply must have (the plugin's checked Content-Length), -1 when it is not length-delimited. */
  private expected = -1;
  private written = 0;
  /** The body's last chunk, held back until the exchange is known to be clean. */
  private tail: Buffer | undefined;
  /** The plugin connection this response is read from. */
  private upstream: Socket | undefined;

  constructor(
    private readonly proxy: ContainerProxy,
    private readonly res: ServerResponse,
    private readonly isHead: boolean,
  ) {
    res.once("close", this.onClientClose);
  }

  private readonly onClientClose = (): void => {
    if (this.finished || this.res.writableFinished) return;
    this.clientGone = true;
    this.abortUpstream?.(new Error("client closed the connection"));
  };

  private readonly onDrain = (): void => this.resumeUpstream?.();

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.res.off("close", this.onClientClose);
    this.proxy.requestDone();
  }

  /** The plugin broke framing: logged once, then the exchange ends through onError (502, or the client cut off). */
  private protocolError(message: string): false {
    this.proxy.protocolError(message);
    this.abortUpstream?.(new PluginProtocolError(message));
    return false;
  }

  onConnect(abort: (err: Error) => void): void {
    this.abortUpstream = abort;
    if (this.clientGone) abort(new Error("client closed the connection"));
  }

  onHeaders(statusCode: number, raw: Buffer[], resume: () => void): boolean {
    if (statusCode < 100 || statusCode > 599) return this.protocolError(`invalid status ${statusCode}`);
    if (statusCode < 200) return true; // informational answers stay between us and the plugin: never final
    this.resumeUpstream = resume;
    this.upstream = this.proxy.reading;
    let out: string[] = [];
    let connection: string | undefined;
    let length: string | undefined;
    let chunked = false;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i].toString("latin1");
      const value = raw[i + 1].toString("latin1");
      if (RESPONSE_LENGTHS.has(name.length)) {
        const lower = name.toLowerCase();
        if (lower === "set-cookie") {
          // Only the daemon sets its (admin session) cookies.
          if (!this.proxy.daemonCookies && isDaemonCookie(value)) continue;
        } else if (RESPONSE_SPECIAL.has(lower)) {
          // Framing is ours: Content-Length is re-set below once checked, Transfer-Encoding is Node's own.
          if (lower === "connection") connection = value;
          else if (lower === "transfer-encoding") chunked = true;
          else if (lower === "content-length") {
            if (length !== undefined && length !== value.trim())
              return this.protocolError("conflicting content-length headers");
            length = value.trim();
          }
          continue;
        }
      }
      out.push(name, value);
    }
    const named = connectionNamed(connection);
    if (named) out = dropNamed(out, named);
    if (length !== undefined && !chunked) {
      if (!DIGITS.test(length)) return this.protocolError(`invalid content-length ${JSON.stringify(length)}`);
      if (statusCode !== 204) out.push("content-length", String(Number(length)));
      if (!this.isHead && statusCode !== 204 && statusCode !== 304) this.expected = Number(length);
    }
    try {
      this.res.writeHead(statusCode, out);
    } catch (err) {
      return this.protocolError(`invalid response head: ${(err as Error).message}`);
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.written += chunk.length;
    if (this.expected >= 0 && this.written >= this.expected) {
      if (this.written > this.expected)
        return this.protocolError(`a body longer than its content-length ${this.expected}`); // undici never sends it
      // The last chunk waits for onComplete's verdict: a client must never hold a complete response that was followed
      // by bytes the plugin had no business sending. The whole chunk, not only its last byte: a reply that arrived in
      // one read (most do) then leaves in ONE write with its head (a held-back byte cost a second write, and a second
      // read on the client, per request). Bounded by one read of the plugin's socket.
      this.tail = chunk;
      return true;
    }
    if (this.res.write(chunk)) return true;
    this.res.once("drain", this.onDrain); // backpressure: undici pauses reading the plugin's socket until drain
    return false;
  }

  onComplete(): void {
    if (this.expected >= 0 && this.written !== this.expected) {
      this.proxy.protocolError(`a body of ${this.written} bytes for a content-length of ${this.expected}`);
      this.finish();
      this.res.destroy();
      return;
    }
    // undici goes on parsing what followed this response in the same read before this microtask runs: bytes after
    // the end of a response (a body longer than announced, an injected response) destroy the upstream socket with a
    // framing error, and then the client must not see a complete response (its last byte or the chunked terminator
    // is never sent). Bytes the plugin writes later are dropped with the socket, or become the answer to the next
    // request on it: never extra bytes to this client.
    queueMicrotask(() => {
      this.finish();
      if (isFramingError(this.upstream?.errored)) this.res.destroy();
      else this.res.end(this.tail);
    });
  }

  onError(err: Error & { code?: string }): void {
    const { res, proxy } = this;
    this.finish();
    if (this.clientGone) return;
    const logged = err instanceof PluginProtocolError || isFramingError(err);
    if (res.headersSent) {
      if (!logged) proxy.protocolError(`reply cut short after ${this.written} body bytes: ${err.code ?? err.message}`);
      res.destroy(); // the client must see a truncated response, not a clean end
      return;
    }
    if (err.code === "UND_ERR_HEADERS_TIMEOUT")
      sendJsonError(res, 504, "handler_timeout", `plugin ${proxy.plugin} did not answer in time`);
    else if (logged) sendJsonError(res, 502, "plugin_bad_response", `plugin ${proxy.plugin} sent an invalid response`);
    else
      sendJsonError(
        res,
        502,
        "plugin_unavailable",
        `plugin ${proxy.plugin} is unavailable: ${err.code ?? err.message}`,
      );
  }

  onUpgrade(): void {} // upgrades go through ContainerProxy.upgrade, never through the pool
}

export class ContainerProxy {
  readonly plugin: string;
  readonly socketPath: string;
  /** @internal the upstream socket undici is reading from right now (set before each of its reads). */
  reading: Socket | undefined;
  private readonly pool: Pool;
  private readonly ws: WsRelay;
  private readonly prefix: string;
  private readonly onProtocolError: ((message: string) => void) | undefined;
  /** @internal the upstream is the daemon's own admin API (shared admin port): its cookies pass. */
  readonly daemonCookies: boolean;
  private inflight = 0;
  private readonly idleWaiters: (() => void)[] = [];
  private closed = false;

  constructor(opts: ContainerProxyOptions) {
    this.plugin = opts.plugin;
    this.socketPath = opts.socketPath;
    this.prefix = `/plugin/${opts.plugin}/api`;
    this.onProtocolError = opts.onProtocolError;
    this.daemonCookies = opts.daemonCookies === true;
    const dial = buildConnector({ socketPath: opts.socketPath });
    // Keep-alive connections, one request at a time on each: pipelining would put a slow request in front of
    // fast ones (head-of-line blocking), and a Unix-socket connection costs the container almost nothing.
    this.pool = new Pool("http://plugin", {
      connect: (o, cb) =>
        dial(o, (...args) => {
          const socket = args[1] as Socket | null;
          if (socket) {
            // Registered before undici's own listeners (it parses on "readable", and on "end" for a response that
            // ends with the connection): tells an exchange which socket its response came from.
            const mark = () => {
              this.reading = socket;
            };
            socket.prependListener("readable", mark);
            socket.prependListener("end", mark);
            socket.on("error", (err: Error & { code?: string }) => {
              if (isFramingError(err)) this.protocolError(framingMessage(err));
            });
          }
          cb(...args);
        }),
      connections: opts.connections ?? 64,
      headersTimeout: opts.headersTimeoutMs ?? 60_000,
      bodyTimeout: 0,
      keepAliveTimeout: 30_000,
      pipelining: 1,
    });
    this.ws = new WsRelay({
      plugin: opts.plugin,
      socketPath: opts.socketPath,
      maxPayload: opts.wsMaxPayload ?? DEFAULT_WS_MAX_PAYLOAD,
      handshakeTimeoutMs: opts.headersTimeoutMs || 60_000,
      onProtocolError: (m) => this.protocolError(m),
    });
  }

  get inFlight(): number {
    return this.inflight;
  }

  /** Open WebSocket connections (both sides) and handshakes in progress. */
  get wsConnections(): number {
    return this.ws.size;
  }

  /** @internal called once per proxied request when it ends (any way). */
  requestDone(): void {
    this.inflight--;
    if (this.inflight === 0 && this.idleWaiters.length) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** @internal the plugin broke HTTP or WebSocket framing. */
  protocolError(message: string): void {
    this.onProtocolError?.(`protocol error from plugin ${this.plugin}: ${message}`);
  }

  /**
   * The request head for the plugin as a flat [name, value, ...] list straight from `rawHeaders` (no header object
   * is built): hop-by-hop headers and those named by Connection removed, x-forwarded-* and Forwarded set by us (the
   * client's own `x-forwarded-for` / `forwarded` are kept on the left of our hop when well-formed).
   */
  private upstreamHeaders(req: IncomingMessage): { headers: string[]; hasBody: boolean } {
    const raw = req.rawHeaders;
    let headers: string[] = [];
    let connection: string | undefined;
    let priorFor: string | undefined;
    let priorForwarded: string | undefined;
    let host: string | undefined;
    let hasBody = false;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i];
      const value = raw[i + 1];
      const len = name.length;
      if (len === 4 && (name === "Host" || name === "host")) host = value;
      if (len === 14 || len === 17 || SPECIAL_LENGTHS.has(len)) {
        const lower = name.toLowerCase();
        if (lower === "content-length") hasBody ||= value !== "0";
        else if (lower === "transfer-encoding") hasBody = true;
        if (HOP_BY_HOP.has(lower)) {
          if (lower === "connection") connection = connection ? `${connection}, ${value}` : value;
          continue;
        }
        if (FORWARDED.has(lower)) {
          if (lower === "x-forwarded-for") priorFor = priorFor ? `${priorFor}, ${value}` : value;
          else if (lower === "forwarded") priorForwarded = priorForwarded ? `${priorForwarded}, ${value}` : value;
          continue;
        }
      }
      headers.push(name, value);
    }
    const named = connectionNamed(connection);
    if (named) headers = dropNamed(headers, named);
    const addr = req.socket.remoteAddress ?? "";
    const proto = (req.socket as { encrypted?: boolean }).encrypted ? "https" : "http";
    // Our hop goes last: readers take the rightmost entry. A malformed prior Forwarded is dropped so that it cannot
    // swallow ours (an unbalanced quote would otherwise extend over our element).
    const ours = formatForwardedElement({
      for: forwardedNode(addr),
      proto,
      ...(host !== undefined ? { host } : {}),
    });
    if (priorForwarded !== undefined && !parseForwarded(priorForwarded)) priorForwarded = undefined;
    headers.push(
      "x-forwarded-for",
      priorFor ? `${priorFor}, ${addr}` : addr,
      "forwarded",
      priorForwarded ? `${priorForwarded}, ${ours}` : ours,
      "x-forwarded-proto",
      proto,
      "x-forwarded-prefix",
      this.prefix,
    );
    if (host !== undefined) headers.push("x-forwarded-host", host);
    return { headers, hasBody };
  }

  /** The plugin-relative path (+ query) of a request routed to `/plugin/{name}/api/*`. */
  private upstreamPath(req: IncomingMessage, ctx: RouteContext): string {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    return (ctx.path || "/") + (q < 0 ? "" : url.slice(q));
  }

  /** Router handler for `/plugin/{name}/api/*`. */
  readonly handle = (req: IncomingMessage, res: ServerResponse, _p: unknown, ctx: RouteContext): void => {
    if (this.closed) {
      sendJsonError(res, 503, "plugin_unloading", `plugin ${this.plugin} is unloading`);
      return;
    }
    this.inflight++;
    const path = this.upstreamPath(req, ctx);
    const { headers, hasBody } = this.upstreamHeaders(req);
    const method = req.method ?? "GET";
    const exchange = new Exchange(this, res, method === "HEAD");
    this.pool.dispatch({ path, method: method as "GET", headers, body: hasBody ? req : null }, exchange);
  };

  /** Router upgrade handler for `/plugin/{name}/api/*`: WebSocket only, relayed by `WsRelay`. */
  readonly upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer, _p: unknown, ctx: RouteContext): void => {
    if (this.closed) {
      rejectUpgrade(socket, 503, "Service Unavailable");
      return;
    }
    this.ws.relay(req, socket, head, this.upstreamPath(req, ctx), this.upstreamHeaders(req).headers);
  };

  /**
   * Refuses new requests and waits for in-flight ones up to `deadlineMs`; then closes WebSockets and the pool.
   * Returns the number of requests still running at the deadline (they are cut off).
   */
  async drain(deadlineMs = 10_000): Promise<number> {
    this.closed = true;
    if (this.inflight > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((r) => this.idleWaiters.push(r)),
        new Promise<void>((r) => {
          timer = setTimeout(r, deadlineMs);
        }),
      ]);
      clearTimeout(timer);
    }
    const left = this.inflight;
    this.ws.closeAll();
    await this.pool.destroy().catch(() => {});
    return left;
  }
}
