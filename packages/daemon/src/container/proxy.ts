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

export interface ContainerProxyOptions {
  plugin: string;
  socketPath: string;
  /** Max parallel connections to the container, default 32. */
  connections?: number;
  /** No response headers within this time -> 504, default 60 s. */
  headersTimeoutMs?: number;
}

function stripHopByHop(headers: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const named = new Set<string>();
  const conn = headers.connection;
  for (const v of Array.isArray(conn) ? conn : conn ? [conn] : [])
    for (const n of v.split(",")) named.add(n.trim().toLowerCase());
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v === undefined || HOP_BY_HOP.has(k) || named.has(k)) continue;
    out[k] = v;
  }
  return out;
}

function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, {
    "content-type": "application/json; charset=utf-8",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

export class ContainerProxy {
  readonly plugin: string;
  readonly socketPath: string;
  private readonly pool: Pool;
  private inflight = 0;
  private readonly idleWaiters: (() => void)[] = [];
  private readonly tunnels = new Set<Duplex>();
  private closed = false;

  constructor(opts: ContainerProxyOptions) {
    this.plugin = opts.plugin;
    this.socketPath = opts.socketPath;
    this.pool = new Pool("http://plugin", {
      socketPath: opts.socketPath,
      connections: opts.connections ?? 32,
      headersTimeout: opts.headersTimeoutMs ?? 60_000,
      bodyTimeout: 0,
      keepAliveTimeout: 30_000,
      pipelining: 1,
    });
  }

  get inFlight(): number {
    return this.inflight;
  }

  private done(): void {
    this.inflight--;
    if (this.inflight === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private forwardedHeaders(req: IncomingMessage): Record<string, string> {
    const prior = req.headers["x-forwarded-for"];
    const addr = req.socket.remoteAddress ?? "";
    return {
      "x-forwarded-for": prior ? `${prior}, ${addr}` : addr,
      "x-forwarded-proto": (req.socket as { encrypted?: boolean }).encrypted ? "https" : "http",
      "x-forwarded-prefix": `/plugin/${this.plugin}/api`,
      ...(req.headers.host ? { "x-forwarded-host": req.headers.host } : {}),
    };
  }

  /** Router handler for `/plugin/{name}/api/*`. */
  readonly handle = async (
    req: IncomingMessage,
    res: ServerResponse,
    _p: unknown,
    ctx: RouteContext,
  ): Promise<void> => {
    if (this.closed) return sendError(res, 503, "plugin_unloading", `plugin ${this.plugin} is unloading`);
    this.inflight++;
    const ac = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) ac.abort();
    };
    res.once("close", onClose);
    try {
      const url = req.url ?? "/";
      const q = url.indexOf("?");
      const path = (ctx.path || "/") + (q < 0 ? "" : url.slice(q));
      const headers = { ...stripHopByHop(req.headers), ...this.forwardedHeaders(req) };
      const method = req.method ?? "GET";
      const hasBody =
        req.headers["transfer-encoding"] !== undefined ||
        (req.headers["content-length"] !== undefined && req.headers["content-length"] !== "0");
      // `stream()` writes the upstream body straight into `res` (with backpressure): no intermediate Readable.
      try {
        await this.pool.stream(
          { path, method: method as "GET", headers, body: hasBody ? req : undefined, signal: ac.signal },
          ({ statusCode, headers: upHeaders }) => {
            res.writeHead(statusCode, stripHopByHop(upHeaders as Record<string, string | string[] | undefined>));
            return res;
          },
        );
      } catch (err) {
        if (ac.signal.aborted) return;
        const e = err as Error & { code?: string };
        if (res.headersSent) {
          res.destroy(); // plugin died mid-body: the client must see a truncated response, not a clean end
          return;
        }
        if (e.code === "UND_ERR_HEADERS_TIMEOUT")
          return sendError(res, 504, "plugin_timeout", `plugin ${this.plugin} did not answer in time`);
        return sendError(
          res,
          502,
          "plugin_unavailable",
          `plugin ${this.plugin} is unavailable: ${e.code ?? e.message}`,
        );
      }
    } finally {
      res.off("close", onClose);
      this.done();
    }
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
      // Keep the upgrade's own Connection/Upgrade headers; drop other hop-by-hop ones.
      const lines = [`${req.method} ${path} HTTP/1.1`];
      const raw = req.rawHeaders;
      for (let i = 0; i < raw.length; i += 2) {
        const k = raw[i].toLowerCase();
        if (HOP_BY_HOP.has(k) && k !== "connection" && k !== "upgrade") continue;
        lines.push(`${raw[i]}: ${raw[i + 1]}`);
      }
      for (const [k, v] of Object.entries(this.forwardedHeaders(req))) lines.push(`${k}: ${v}`);
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
