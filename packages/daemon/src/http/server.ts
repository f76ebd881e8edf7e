/**
 * The daemon's HTTP servers: node:http wired to a router (requests and ws upgrades), with the listener's own guards
 * run before the router: the Host allow-list (DNS rebinding), connection and WebSocket caps, and headers set on every
 * response (the admin listeners' anti-framing headers).
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { ConnectionGate, type ConnectionLimits } from "./conn-limits.js";
import type { HostAllowList } from "./host-allow.js";
import type { Router } from "./router.js";
import { sendJsonError } from "./static.js";
import { refuseUpgrade } from "./upgrade-reply.js";

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
  server.on("clientError", (_err, socket) => {
    if (socket.writable) socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    else socket.destroy();
  });
  return server;
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
