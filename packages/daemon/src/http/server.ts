/**
 * The daemon's HTTP servers: node:http wired to a router (requests and ws upgrades), with the listener's own guards
 * run before the router: the Host allow-list (DNS rebinding), connection and WebSocket caps, and headers set on every
 * response (the admin listeners' anti-framing headers).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse, STATUS_CODES } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { ConnectionGate, type ConnectionLimits } from "./conn-limits.js";
import type { HostAllowList } from "./host-allow.js";
import type { Router } from "./router.js";
import { sendJsonError } from "./static.js";
import { refuseUpgrade, writeJsonError } from "./upgrade-reply.js";

export interface HttpServerOptions {
  /** Keep idle keep-alive connections this long (ms), default 65 s (longer than typical proxy timeouts). */
  keepAliveTimeoutMs?: number;
  /** Whole-request timeout (ms), default 5 min; 0 disables. */
  requestTimeoutMs?: number;
  /**
   * Requests and upgrades whose Host is not on this list get 403 `forbidden_host` (JSON), before the router.
   * 403 rather than 421 Misdirected Request: the admin guard answers the same code for the same refusal, and Chromium
   * retries a 421 on a new connection.
   */
  hosts?: HostAllowList;
  /** Connection / WebSocket caps (see conn-limits.ts). */
  limits?: ConnectionLimits;
  /** Set on every response before the router runs (a handler's own headers of the same name win). */
  responseHeaders?: Readonly<Record<string, string>>;
}

export interface HecateServer extends Server {
  /** The caps in force and their counters, when `limits` was given. */
  gate?: ConnectionGate;
}

export function createHttpServer(router: Router, options: HttpServerOptions = {}): HecateServer {
  const { hosts, responseHeaders } = options;
  const server: HecateServer = createServer(
    {
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 65_000,
      requestTimeout: options.requestTimeoutMs ?? 300_000,
    },
    (req, res) => {
      if (responseHeaders) for (const k in responseHeaders) res.setHeader(k, responseHeaders[k]);
      if (hosts && !hosts.allows(req.headers.host)) {
        req.resume(); // unread bodies would stall the keep-alive connection
        sendJsonError(res, 403, "forbidden_host", hostRefusal(req));
        return;
      }
      router.handle(req, res);
    },
  );
  const gate = options.limits ? new ConnectionGate(options.limits) : undefined;
  if (gate) {
    gate.attach(server);
    server.gate = gate;
  }
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (hosts && !hosts.allows(req.headers.host)) {
      refuseUpgrade(socket, 403, "Forbidden", "forbidden_host", hostRefusal(req));
      return;
    }
    if (gate && !gate.admitUpgrade(socket)) return;
    router.handleUpgrade(req, socket, head);
  });
  server.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
    const reply = clientErrorReply(err);
    // Answer unless a response on this connection is being written (an answer in the middle of it would garble it),
    // else just close. `_httpMessage` is node's current response of the socket (its own handler looks at it too); one
    // that has ended is complete on the wire (e.g. a DELETE answered, then its unframed body fails to parse).
    const current = (socket as Duplex & { _httpMessage?: ServerResponse })._httpMessage;
    if (reply && socket.writable && (!current?.headersSent || current.writableEnded))
      writeJsonError(socket, reply[0], STATUS_CODES[reply[0]] ?? "Error", reply[1], reply[2], responseHeaders);
    else socket.destroy();
  });
  return server;
}

/**
 * What a request node:http could not parse gets (status, code, message): 431 for headers over `maxHeaderSize`,
 * 408 for a request not received in time, 400 for the rest (raw non-ASCII bytes in the request line, a bad header...);
 * null when the client is gone.
 */
export function clientErrorReply(err: NodeJS.ErrnoException): [number, string, string] | null {
  switch (err.code) {
    case "ECONNRESET":
    case "EPIPE":
      return null;
    case "HPE_HEADER_OVERFLOW":
      return [
        431,
        "headers_too_large",
        "the request headers are too large (the limit is node's --max-http-header-size)",
      ];
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return [408, "request_timeout", "the request was not received in time"];
    default: {
      const reason = (err as { reason?: string }).reason ?? err.message;
      return [400, "bad_request", `malformed HTTP request: ${reason}`];
    }
  }
}

function hostRefusal(req: IncomingMessage): string {
  return `Host ${JSON.stringify(req.headers.host ?? "")} is not allowed here (HECATE_ALLOWED_HOSTS lists extra names)`;
}

/** Listens and resolves with the bound port (use port 0 in tests). */
export async function listen(server: Server, port = 0, host = "127.0.0.1"): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return (server.address() as AddressInfo).port;
}
