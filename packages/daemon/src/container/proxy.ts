/**
 * Reverse proxy from the daemon's router to a container plugin's Unix socket.
 * - HTTP: undici Pool on the socket; request and response bodies are streamed (never buffered), status and
 *   end-to-end headers preserved, hop-by-hop headers removed, `x-forwarded-*` added.
 * - WebSocket (any upgrade): the request head is re-serialised onto a fresh Unix socket connection and the two
 *   sockets are piped raw, so whatever the plugin answers (101 or a refusal) reaches the client unchanged.
 *   undici's `upgrade()` would hide a refusal's status and body, hence the hand-written tunnel.
 * - Drain: in-flight requests are counted so unload can wait for them.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { connect } from "node:net";
import type { Duplex } from "node:stream";
import { Pool } from "undici";
import type { RouteContext } from "../http/router.js";
import { sendJsonError } from "../http/static.js";

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
]);
/** Set by the proxy only (a client's own values would be trusted by the plugin otherwise); x-forwarded-for is appended to. */
const FORWARDED = new Set(["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-forwarded-prefix"]);

export interface ContainerProxyOptions {
  plugin: string;
  socketPath: string;
  /** Max parallel connections to the container, default 64. */
  connections?: number;
  /** No response headers within this time -> 504, default 60 s. */
  headersTimeoutMs?: number;
  /** The upstream is the daemon's own admin API (shared admin port): its `hecate_*` cookies pass. */
  daemonCookies?: boolean;
}

/** Lengths of the hop-by-hop and x-forwarded-* names: other names skip the lower-casing and the lookups. */
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

/**
 * One proxied request, as an undici dispatch handler: the response head and body are written straight into the
 * client's response (no intermediate stream, promise or AbortController: this is the hot path, see bench/container.ts).
 */
class Exchange {
  private abortUpstream: ((err: Error) => void) | undefined;
  private resumeUpstream: (() => void) | undefined;
  private clientGone = false;
  private finished = false;

  constructor(
    private readonly proxy: ContainerProxy,
    private readonly res: ServerResponse,
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

  onConnect(abort: (err: Error) => void): void {
    this.abortUpstream = abort;
    if (this.clientGone) abort(new Error("client closed the connection"));
  }

  onHeaders(statusCode: number, raw: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true; // informational answers stay between us and the plugin
    this.resumeUpstream = resume;
    let out: string[] = [];
    let connection: string | undefined;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i].toString("latin1");
      const value = raw[i + 1].toString("latin1");
      if (SPECIAL_LENGTHS.has(name.length)) {
        const lower = name.toLowerCase();
        if (HOP_BY_HOP.has(lower)) {
          if (lower === "connection") connection = value;
          continue;
        }
      }
      out.push(name, value);
    }
    const named = connectionNamed(connection);
    if (named) out = dropNamed(out, named);
    this.res.writeHead(statusCode, out);
    return true;
  }

  onData(chunk: Buffer): boolean {
    if (this.res.write(chunk)) return true;
    this.res.once("drain", this.onDrain); // backpressure: undici pauses reading the plugin's socket until drain
    return false;
  }

  onComplete(): void {
    this.res.end();
    this.finish();
  }

  onError(err: Error & { code?: string }): void {
    const { res, proxy } = this;
    this.finish();
    if (this.clientGone) return;
    if (res.headersSent) {
      res.destroy(); // plugin died mid-body: the client must see a truncated response, not a clean end
      return;
    }
    if (err.code === "UND_ERR_HEADERS_TIMEOUT")
      sendJsonError(res, 504, "plugin_timeout", `plugin ${proxy.plugin} did not answer in time`);
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
  private readonly pool: Pool;
  private readonly prefix: string;
  private inflight = 0;
  private readonly idleWaiters: (() => void)[] = [];
  private readonly tunnels = new Set<Duplex>();
  private closed = false;

  constructor(opts: ContainerProxyOptions) {
    this.plugin = opts.plugin;
    this.socketPath = opts.socketPath;
    this.prefix = `/plugin/${opts.plugin}/api`;
    // Keep-alive connections, one request at a time on each: pipelining would put a slow request in front of
    // fast ones (head-of-line blocking), and a Unix-socket connection costs the container almost nothing.
    this.pool = new Pool("http://plugin", {
      socketPath: opts.socketPath,
      connections: opts.connections ?? 64,
      headersTimeout: opts.headersTimeoutMs ?? 60_000,
      bodyTimeout: 0,
      keepAliveTimeout: 30_000,
      pipelining: 1,
    });
  }

  get inFlight(): number {
    return this.inflight;
  }

  /** @internal called once per proxied request when it ends (any way). */
  requestDone(): void {
    this.inflight--;
    if (this.inflight === 0 && this.idleWaiters.length) for (const w of this.idleWaiters.splice(0)) w();
  }

  /**
   * The request head for the plugin as a flat [name, value, ...] list straight from `rawHeaders` (no header object
   * is built): hop-by-hop headers and those named by Connection removed, x-forwarded-* set by us.
   */
  private upstreamHeaders(req: IncomingMessage, upgrade = false): { headers: string[]; hasBody: boolean } {
    const raw = req.rawHeaders;
    let headers: string[] = [];
    let connection: string | undefined;
    let priorFor: string | undefined;
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
        if (HOP_BY_HOP.has(lower) && !(upgrade && (lower === "connection" || lower === "upgrade"))) {
          if (lower === "connection") connection = connection ? `${connection}, ${value}` : value;
          continue;
        }
        if (FORWARDED.has(lower)) {
          if (lower === "x-forwarded-for") priorFor = priorFor ? `${priorFor}, ${value}` : value;
          continue;
        }
      }
      headers.push(name, value);
    }
    const named = connectionNamed(connection);
    if (named) headers = dropNamed(headers, named);
    const addr = req.socket.remoteAddress ?? "";
    headers.push(
      "x-forwarded-for",
      priorFor ? `${priorFor}, ${addr}` : addr,
      "x-forwarded-proto",
      (req.socket as { encrypted?: boolean }).encrypted ? "https" : "http",
      "x-forwarded-prefix",
      this.prefix,
    );
    if (host !== undefined) headers.push("x-forwarded-host", host);
    return { headers, hasBody };
  }

  /** Router handler for `/plugin/{name}/api/*`. */
  readonly handle = (req: IncomingMessage, res: ServerResponse, _p: unknown, ctx: RouteContext): void => {
    if (this.closed) {
      sendJsonError(res, 503, "plugin_unloading", `plugin ${this.plugin} is unloading`);
      return;
    }
    this.inflight++;
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = (ctx.path || "/") + (q < 0 ? "" : url.slice(q));
    const { headers, hasBody } = this.upstreamHeaders(req);
    const exchange = new Exchange(this, res);
    this.pool.dispatch({ path, method: (req.method ?? "GET") as "GET", headers, body: hasBody ? req : null }, exchange);
  };

  /** Router upgrade handler for `/plugin/{name}/api/*`. */
  readonly upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer, _p: unknown, ctx: RouteContext): void => {
    if (this.closed) {
      socket.end("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    const path = (ctx.path || "/") + (q < 0 ? "" : url.slice(q));
    const upstream = connect(this.socketPath);
    this.tunnels.add(socket);
    const cleanup = () => {
      this.tunnels.delete(socket);
      upstream.destroy();
      socket.destroy();
    };
    upstream.once("error", () => {
      if (!upstream.bytesRead) socket.end("HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      cleanup();
    });
    socket.once("error", cleanup);
    socket.once("close", cleanup);
    upstream.once("close", cleanup);
    upstream.once("connect", () => {
      // The upgrade's own Connection/Upgrade headers are kept; other hop-by-hop ones dropped.
      const { headers } = this.upstreamHeaders(req, true);
      const lines = [`${req.method} ${path} HTTP/1.1`];
      for (let i = 0; i < headers.length; i += 2) lines.push(`${headers[i]}: ${headers[i + 1]}`);
      upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
      if (head.length) upstream.write(head);
      socket.pipe(upstream);
      upstream.pipe(socket);
    });
  };

  /**
   * Refuses new requests and waits for in-flight ones up to `deadlineMs`; then closes tunnels and the pool.
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
    for (const t of this.tunnels) t.destroy();
    this.tunnels.clear();
    await this.pool.destroy().catch(() => {});
    return left;
  }
}
